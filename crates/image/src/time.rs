//! Timestamps for image configs and history: RFC 3339 formatting and parsing
//! without reading the clock (callers pass the time in, which keeps builds
//! reproducible under `SOURCE_DATE_EPOCH`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;

/// A UTC instant with nanosecond precision, formatted as Docker formats
/// `created` (`2024-01-02T03:04:05Z`, or with up to nine fraction digits and
/// trailing zeros trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// The instant `secs` seconds after the Unix epoch (`SOURCE_DATE_EPOCH`).
    pub fn from_unix(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    /// Converts a `SystemTime` the caller read from its clock.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d: Duration = e.duration();
                let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { secs, nanos }
            }
        }
    }

    /// This instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs.unsigned_abs(), self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nanos))
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl serde::Serialize for Timestamp {
    /// Serializes as the RFC 3339 string.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Parses RFC 3339 (`2024-01-02T03:04:05.5+01:00`, `...Z`).
    fn from_str(s: &str) -> Result<Timestamp, Error> {
        let bad = || Error::InvalidTimestamp {
            value: s.to_owned(),
        };
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, Error> {
            let part = s.get(r).ok_or_else(bad)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<i64>().map_err(|_| bad())
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
            let digits = &s[start..i.min(start + 9)];
            let padded = format!("{digits:0<9}");
            nanos = padded.parse().map_err(|_| bad())?;
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
                if *sign == b'+' { o } else { -o }
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
        Ok(Timestamp { secs, nanos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_docker() {
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
        let t = Timestamp {
            secs: 951_782_400, // 2000-02-29
            nanos: 120_000_000,
        };
        assert_eq!(t.to_string(), "2000-02-29T00:00:00.12Z");
    }

    #[test]
    fn parses_rfc3339() {
        let t: Timestamp = "2023-11-14T22:13:20Z".parse().unwrap();
        assert_eq!(t, Timestamp::from_unix(1_700_000_000));
        let t: Timestamp = "2023-11-14T23:13:20.123456789123+01:00".parse().unwrap();
        assert_eq!(t.secs, 1_700_000_000);
        assert_eq!(t.nanos, 123_456_789);
        assert!("2023-11-14".parse::<Timestamp>().is_err());
        assert!("2023-13-14T22:13:20Z".parse::<Timestamp>().is_err());
        assert!("2023-11-14T22:13:20".parse::<Timestamp>().is_err());
        assert!("2023-11-14T22:13:20.Z".parse::<Timestamp>().is_err());
    }

    #[test]
    fn round_trips_over_a_range() {
        // Years 0001 to 9999, the range RFC 3339 can write.
        for secs in (-62_000_000_000i64..253_000_000_000).step_by(7_777_777_777) {
            let t = Timestamp { secs, nanos: 5 };
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
    }

    #[test]
    fn system_time_conversion() {
        let t = Timestamp {
            secs: 1_700_000_000,
            nanos: 42,
        };
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        let before = Timestamp {
            secs: -10,
            nanos: 500,
        };
        assert_eq!(Timestamp::from_system_time(before.to_system_time()), before);
    }
}
