//! The free-space reserve: how much room kiln leaves on the store's
//! filesystem. Blob writes ([`BlobWriter`](crate::BlobWriter)) check it
//! every [`SPACE_CHECK_EVERY`] bytes, and unpackers pass
//! [`Store::check_space`] to kiln-layer's guarded apply, so that an archive
//! or a layer that decompresses to far more than it weighs (a "gzip bomb")
//! stops with an error while the disk still has room, instead of filling it.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use crate::{Error, Result, Store};

/// How often a blob writer checks the free space: every this many bytes.
pub const SPACE_CHECK_EVERY: u64 = 8 << 20;

const GIB: u64 = 1 << 30;

/// How much free space to keep on the store's filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum SpaceReserve {
    /// 1 GiB, or 5 % of the filesystem when that is smaller (so a small
    /// filesystem is not refused outright).
    #[default]
    Default,
    /// This many bytes (0: no reserve).
    Bytes(u64),
    /// This percentage of the filesystem's size.
    Percent(f64),
}

impl SpaceReserve {
    /// The bytes to keep free on a filesystem of `fs_size` bytes.
    pub fn bytes(&self, fs_size: u64) -> u64 {
        match *self {
            SpaceReserve::Default => GIB.min(fs_size / 20),
            SpaceReserve::Bytes(n) => n,
            SpaceReserve::Percent(p) => (fs_size as f64 * p / 100.0) as u64,
        }
    }
}

impl FromStr for SpaceReserve {
    type Err = String;

    /// `default`, a size (`0`, `512M`, `2G`, `1.5GiB`, `100000` bytes; k, M,
    /// G, T are powers of 1024) or a percentage of the filesystem (`5%`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("default") {
            return Ok(SpaceReserve::Default);
        }
        let bad = || {
            format!(
                "invalid free-space reserve {s:?}: expected a size (512M, 2G), a percentage (5%) or default"
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad());
            }
            return Ok(SpaceReserve::Percent(p));
        }
        let lower = t.to_ascii_lowercase();
        let num = lower.trim_end_matches("ib").trim_end_matches('b');
        let (digits, unit) = match num.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((i, _)) => (&num[..i], &num[i..]),
            None => (num, ""),
        };
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(bad()),
        };
        let n: f64 = digits.trim().parse().map_err(|_| bad())?;
        if !(n >= 0.0 && n.is_finite()) {
            return Err(bad());
        }
        Ok(SpaceReserve::Bytes((n * mult as f64) as u64))
    }
}

impl fmt::Display for SpaceReserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpaceReserve::Default => {
                f.write_str("1 GiB or 5 % of the filesystem, whichever is smaller")
            }
            SpaceReserve::Bytes(n) => f.write_str(&human(*n)),
            SpaceReserve::Percent(p) => write!(f, "{p} % of the filesystem"),
        }
    }
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `7 B`.
pub(crate) fn human(n: u64) -> String {
    let units = [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, name) in units {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v >= 10.0 {
                format!("{v:.0} {name}")
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} B")
}

/// (available to unprivileged writers, total) bytes of the filesystem
/// holding `path`.
fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    let block = st.f_frsize.max(1);
    Ok((
        st.f_bavail.saturating_mul(block),
        st.f_blocks.saturating_mul(block),
    ))
}

impl Store {
    /// Sets the free-space reserve this store's writers keep (default:
    /// [`SpaceReserve::Default`]). Shared by clones of this `Store`.
    pub fn set_space_reserve(&self, reserve: SpaceReserve) {
        *self
            .inner()
            .reserve
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reserve;
    }

    /// The free-space reserve in force.
    pub fn space_reserve(&self) -> SpaceReserve {
        *self
            .inner()
            .reserve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Fails with [`Error::StoreFull`] when the filesystem holding `path`
    /// (the store root, a snapshot being unpacked) has less free space than
    /// the reserve. Cheap (one `statvfs`): call it every few MiB written.
    pub fn check_space(&self, path: &Path) -> Result<()> {
        let reserve = self.space_reserve();
        if reserve == SpaceReserve::Bytes(0) {
            return Ok(());
        }
        let (available, total) = fs_space(path).map_err(|source| Error::Io {
            op: "measure free space on",
            path: path.to_owned(),
            source,
        })?;
        let keep = reserve.bytes(total);
        if available < keep {
            return Err(Error::StoreFull {
                path: path.to_owned(),
                available,
                reserve: keep,
            });
        }
        Ok(())
    }

    /// [`Store::check_space`] as an `io::Error` of kind `StorageFull`, for
    /// writers and kiln-layer's guarded apply.
    pub fn check_space_io(&self, path: &Path) -> io::Result<()> {
        self.check_space(path).map_err(|e| match e {
            Error::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::StorageFull, other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_percentages_and_default() {
        let p = |s: &str| s.parse::<SpaceReserve>();
        assert_eq!(p("default").unwrap(), SpaceReserve::Default);
        assert_eq!(p("0").unwrap(), SpaceReserve::Bytes(0));
        assert_eq!(p("512M").unwrap(), SpaceReserve::Bytes(512 << 20));
        assert_eq!(p("2GiB").unwrap(), SpaceReserve::Bytes(2 << 30));
        assert_eq!(p("1.5g").unwrap(), SpaceReserve::Bytes(3 << 29));
        assert_eq!(p("100000").unwrap(), SpaceReserve::Bytes(100_000));
        assert_eq!(p("5%").unwrap(), SpaceReserve::Percent(5.0));
        for bad in ["", "x", "5q", "-1", "101%", "1e999"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_is_1_gib_or_5_percent_whichever_is_smaller() {
        assert_eq!(SpaceReserve::Default.bytes(300 << 20), 15 << 20);
        assert_eq!(SpaceReserve::Default.bytes(100 << 30), 1 << 30);
        assert_eq!(SpaceReserve::Percent(10.0).bytes(1000), 100);
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_writes_and_0_allows_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.check_space(dir.path()).unwrap();
        store.set_space_reserve(SpaceReserve::Percent(100.0));
        let e = store.check_space(dir.path()).unwrap_err();
        assert!(matches!(e, Error::StoreFull { .. }), "{e}");
        assert!(e.to_string().contains("free-space reserve"), "{e}");
        // A blob writer stops at its next check, and leaves nothing in tmp/.
        let mut w = store.blob_writer().unwrap();
        let chunk = vec![7u8; 1 << 20];
        let mut failed = None;
        for _ in 0..(SPACE_CHECK_EVERY >> 20) + 1 {
            if let Err(e) = io::Write::write_all(&mut w, &chunk) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the writer stopped");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
        drop(w);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != ".active")
            .collect();
        assert!(left.is_empty(), "{left:?}");
        store.set_space_reserve(SpaceReserve::Bytes(0));
        store.check_space(dir.path()).unwrap();
    }
}
