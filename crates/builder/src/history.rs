//! The exact strings Docker writes: history `created_by` entries (Go `%q` and
//! `%v` formatting of lists, durations, runes) and RFC 3339 timestamps.

use kiln_model::Healthcheck;

/// Go's `strconv.Quote`: a double-quoted string with Go escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["cat" "/hello.txt"]`.
pub(crate) fn go_q_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", inner.join(" "))
}

/// Go's `%v` of a `[]string`: `[/bin/bash -c]`.
pub(crate) fn go_v_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of an integer: a quoted rune (`'\x03'`, `'a'`).
fn go_q_rune(v: u32) -> String {
    let inner = match v {
        7 => "\\a".to_string(),
        8 => "\\b".to_string(),
        9 => "\\t".to_string(),
        10 => "\\n".to_string(),
        11 => "\\v".to_string(),
        12 => "\\f".to_string(),
        13 => "\\r".to_string(),
        39 => "\\'".to_string(),
        92 => "\\\\".to_string(),
        v if v < 0x20 || v == 0x7f => format!("\\x{v:02x}"),
        v => char::from_u32(v).map_or_else(|| "\\ufffd".to_string(), |c| c.to_string()),
    };
    format!("'{inner}'")
}

/// Go's `time.Duration.String()` of a number of nanoseconds.
pub(crate) fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let s = format!("{rest:0digits$}");
        format!("{whole}.{}", s.trim_end_matches('0'))
    };
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let h = ns / 3_600_000_000_000;
    let m = ns / 60_000_000_000 % 60;
    let s = frac(ns % 60_000_000_000, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The `HEALTHCHECK` history text: Go's `%q` of a `*HealthConfig`.
pub(crate) fn healthcheck_text(h: &Healthcheck) -> String {
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        go_q_list(&h.test),
        go_quote(&go_duration(ns(h.interval))),
        go_quote(&go_duration(ns(h.timeout))),
        go_quote(&go_duration(ns(h.start_period))),
        go_quote(&go_duration(ns(h.start_interval))),
        go_q_rune(u32::try_from(h.retries.unwrap_or(0)).unwrap_or(0)),
    )
}

/// A healthcheck duration as `go_duration` takes it (absent or negative: 0).
fn ns(d: Option<i64>) -> u64 {
    d.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// `<shell> #(nop)  <text>`: the history of a metadata-only step.
pub(crate) fn nop(shell: &[String], text: &str) -> String {
    format!("{} #(nop)  {text}", shell.join(" "))
}

/// `<shell> #(nop) COPY <sum> in <dest> `: the history of COPY/ADD.
pub(crate) fn nop_copy(shell: &[String], cmd: &str, checksum: &str, dest: &str) -> String {
    format!("{} #(nop) {cmd} {checksum} in {dest} ", shell.join(" "))
}

/// RFC 3339 UTC time of a Unix timestamp (`2026-11-29T00:05:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// RFC 3339 with nanoseconds as Go's `RFC3339Nano` prints them (trailing
/// zeros dropped, no fraction when zero): `2026-12-06T10:00:00.1234Z`.
pub(crate) fn rfc3339_nano(secs: i64, nanos: u32) -> String {
    let base = rfc3339(secs);
    let nanos = nanos % 1_000_000_000;
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    format!("{}.{frac}Z", base.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_as_go_prints_them() {
        assert_eq!(rfc3339_nano(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(0, 120_000_000), "1970-01-01T00:00:00.12Z");
        assert_eq!(rfc3339_nano(86_400, 1), "1970-01-02T00:00:00.000000001Z");
    }

    #[test]
    fn docker_strings() {
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        assert_eq!(
            nop(
                &sh,
                &format!("CMD {}", go_q_list(&["cat".into(), "/hello.txt".into()]))
            ),
            r#"/bin/sh -c #(nop)  CMD ["cat" "/hello.txt"]"#
        );
        assert_eq!(
            nop_copy(&sh, "COPY", "file:ab", "/x"),
            "/bin/sh -c #(nop) COPY file:ab in /x "
        );
        assert_eq!(go_v_list(&sh), "[/bin/sh -c]");
        assert_eq!(go_quote("a\"b\\\n"), r#""a\"b\\\n""#);
    }

    #[test]
    fn durations_and_healthcheck() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_000_000_000), "3s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(100_000_000), "100ms");
        let h = Healthcheck {
            test: vec![
                "CMD-SHELL".into(),
                "curl -f http://localhost/ || exit 1".into(),
            ],
            interval: Some(300_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(3),
            ..Default::default()
        };
        assert_eq!(
            healthcheck_text(&h),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" '\x03'}"#
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
