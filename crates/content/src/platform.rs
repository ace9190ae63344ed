//! `Platform`: an `os/architecture[/variant]` triple as image indexes and
//! `--platform` flags spell it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A target platform, e.g. `linux/amd64` or `linux/arm64/v8`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture in Go's spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Optional variant, e.g. `v7` or `v8`.
    pub variant: Option<String>,
}

impl Platform {
    /// Builds a platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform this binary was compiled for (`linux/amd64` on x86_64).
    pub fn native() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// Whether an index entry `(os, architecture, variant)` satisfies this
    /// platform. A missing variant on either side matches any variant, except
    /// that `arm64` treats no variant and `v8` as equal.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != architecture {
            return false;
        }
        let norm = |v: Option<&str>| -> Option<String> {
            match (architecture, v) {
                ("arm64", Some("v8")) | ("arm64", None) => None,
                (_, v) => v.map(str::to_string),
            }
        };
        match (norm(self.variant.as_deref()), norm(variant)) {
            (None, _) => true,
            (Some(_), None) => architecture != "arm64",
            (Some(a), Some(b)) => a == b,
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform, Error> {
        let err = |reason: &'static str| Error::InvalidPlatform {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if parts.iter().any(|p| !valid(p)) {
            return Err(err(
                "expected os/arch[/variant] in lowercase letters and digits",
            ));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(err("expected os/arch[/variant]")),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d", ""] {
            assert!(
                bad.parse::<Platform>()
                    .unwrap_err()
                    .to_string()
                    .contains("invalid platform")
            );
        }
    }

    #[test]
    fn matching() {
        let amd = Platform::new("linux", "amd64", None);
        assert!(amd.matches("linux", "amd64", None));
        assert!(!amd.matches("linux", "arm64", None));
        assert!(!amd.matches("windows", "amd64", None));
        let arm64 = Platform::new("linux", "arm64", None);
        assert!(arm64.matches("linux", "arm64", Some("v8")));
        let v8 = Platform::new("linux", "arm64", Some("v8"));
        assert!(v8.matches("linux", "arm64", None));
        let v7 = Platform::new("linux", "arm", Some("v7"));
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!(!v7.matches("linux", "arm", Some("v6")));
    }

    #[test]
    fn native_is_linux() {
        assert_eq!(Platform::native().os, "linux");
    }
}
