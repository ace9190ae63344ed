//! Human-readable output as Docker prints it: sizes (`4.26MB`), ages
//! (`2 hours ago`), truncated IDs and aligned tables.

use std::time::SystemTime;

/// Docker's size format (decimal units, 3 significant digits): `4.26MB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{}", UNITS[unit])
}

/// Docker's relative time: `About a minute ago`, `2 hours ago`, `3 weeks ago`.
pub(crate) fn ago(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let human = match secs {
        0 => return "Less than a second ago".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".to_owned(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".to_owned(),
        7200..=172_799 => format!("{} hours", secs / 3600),
        172_800..=1_209_599 => format!("{} days", secs / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks", secs / 604_800),
        5_184_000..=63_071_999 => format!("{} months", secs / 2_592_000),
        _ => format!("{} years", secs / 31_536_000),
    };
    format!("{human} ago")
}

/// Renders rows as Docker does: columns padded to the widest cell plus three spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] + 3 - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Docker's `units.HumanSize` (the build context line, `volume prune`'s
/// report): decimal units, 4 significant digits, trailing zeros dropped.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    #[allow(clippy::cast_precision_loss)]
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // `%.4g`: four significant digits, no trailing zeros.
    let int_digits = if size < 1.0 {
        1
    } else {
        // 1..=3 digits before the point (size < 1000 here, or the last unit).
        format!("{}", size.trunc()).len()
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut text = format!("{size:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// Asks Docker's question on stdout and reads the answer from stdin: only
/// `y` or `Y` goes on (an empty answer or the end of stdin is a no).
pub(crate) fn confirm(message: &str) -> std::io::Result<bool> {
    use std::io::{BufRead as _, Write as _};
    let mut out = std::io::stdout().lock();
    write!(out, "{message} [y/N] ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().eq_ignore_ascii_case("y"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(12_300_000), "12.3MB");
        assert_eq!(size(124_000_000), "124MB");
        assert_eq!(size(1_000_000_000), "1GB");
    }

    #[test]
    fn ages_as_docker_prints_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000_000);
        let at = |s: u64| now - Duration::from_secs(s);
        assert_eq!(ago(at(1), now), "1 second ago");
        assert_eq!(ago(at(5), now), "5 seconds ago");
        assert_eq!(ago(at(90), now), "About a minute ago");
        assert_eq!(ago(at(7300), now), "2 hours ago");
        assert_eq!(ago(at(3 * 86_400), now), "3 days ago");
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A      BB\nxxxx   y\n");
    }
}
