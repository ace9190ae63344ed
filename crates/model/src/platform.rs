//! `Platform`: an `os/architecture[/variant]` triple as image indexes,
//! image configs and `--platform` flags spell it; the one parser and the
//! one matching rule kiln uses for all of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A target platform, e.g. `linux/amd64` or `linux/arm/v7`.
///
/// Serializes as the OCI `platform` object of an index entry
/// (`{"architecture":"amd64","os":"linux"}`). [`Platform::parse`] (also
/// `FromStr`) reads the `os/arch[/variant]` flag form and normalises it as
/// Docker does; values read from JSON keep their spelling, and
/// [`Platform::matches`] normalises both sides before comparing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// Architecture in Go's spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required operating system features (Windows images).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant, e.g. `v7` for arm or `v9` for arm64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Operating systems Go knows (`GOOS`), for a one-part `--platform`.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures Go knows (`GOARCH`) and their common aliases, for a
/// one-part `--platform`.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
    "aarch64",
    "x86_64",
    "x86-64",
    "i386",
    "armhf",
    "armel",
];

impl Platform {
    /// A platform from its parts, as given (not normalised).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform this binary was compiled for (`linux/amd64` on x86_64,
    /// `linux/arm/v7` on 32-bit arm): a compile-time fact, not the host's
    /// environment.
    pub fn native() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform::new("linux", arch, None).normalized()
    }

    /// Parses a `--platform` value, `os/arch[/variant]`, normalised as
    /// Docker does ([`Platform::normalized`]): `linux/x86_64` is
    /// `linux/amd64`, `linux/aarch64/v8` is `linux/arm64`, `linux/arm` is
    /// `linux/arm/v7`, and case does not matter. A single known OS
    /// (`linux`) means that OS on this binary's architecture; a single
    /// known architecture (`arm64`) means `linux` on it.
    pub fn parse(s: &str) -> Result<Platform, Error> {
        let err = |reason: &'static str| Error::InvalidPlatform {
            input: s.to_owned(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !parts.iter().all(valid) {
            return Err(err(
                "expected os/arch[/variant] in letters, digits, '_', '-' and '.'",
            ));
        }
        let p = match parts.as_slice() {
            [one] => {
                let one = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&one.as_str()) {
                    let native = Platform::native();
                    Platform { os: one, ..native }
                } else if KNOWN_ARCH.contains(&one.as_str()) {
                    Platform::new("linux", &one, None)
                } else {
                    return Err(err("unknown operating system or architecture"));
                }
            }
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => return Err(err("expected os/arch[/variant]")),
        };
        Ok(p.normalized())
    }

    /// The same platform in Docker's (containerd's) normal form: lowercase;
    /// `macos` is `darwin`; `i386` is `386`; `x86_64`/`x86-64` are `amd64`
    /// (variant `v1` dropped); `aarch64` is `arm64`, whose default variant
    /// `v8` is dropped and whose other variants get their `v` (`9` is
    /// `v9`); `armhf` is `arm/v7`, `armel` is `arm/v6`, and `arm` without
    /// a variant is `arm/v7`.
    pub fn normalized(&self) -> Platform {
        let mut os = self.os.to_ascii_lowercase();
        if os == "macos" {
            os = "darwin".to_owned();
        }
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let with_v = |v: String| {
            if v.starts_with(|c: char| c.is_ascii_digit()) {
                format!("v{v}")
            } else {
                v
            }
        };
        let (architecture, variant) = match arch.as_str() {
            "i386" => ("386".to_owned(), None),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_owned(),
                variant.filter(|v| v != "v1" && v != "1"),
            ),
            "aarch64" | "arm64" => (
                "arm64".to_owned(),
                variant
                    .filter(|v| !matches!(v.as_str(), "8" | "v8" | "8.0" | "v8.0"))
                    .map(|v| match v.as_str() {
                        "9.0" | "v9.0" => "v9".to_owned(),
                        _ => with_v(v),
                    }),
            ),
            "armhf" => ("arm".to_owned(), Some("v7".to_owned())),
            "armel" => ("arm".to_owned(), Some("v6".to_owned())),
            "arm" => (
                "arm".to_owned(),
                Some(variant.map_or_else(|| "v7".to_owned(), with_v)),
            ),
            _ => (arch, variant),
        };
        Platform {
            architecture,
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant,
        }
    }

    /// Whether an image (or index entry) for `candidate` can serve a
    /// request for `self`. Both sides are normalised; the OS and the
    /// architecture must be equal; a request without a variant takes any
    /// variant; a request with one takes that variant, or (except on arm64,
    /// where no variant means `v8`) a candidate that names none.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let (want, have) = (self.normalized(), candidate.normalized());
        if want.os != have.os || want.architecture != have.architecture {
            return false;
        }
        match (want.variant, have.variant) {
            (None, _) => true,
            (Some(_), None) => want.architecture != "arm64",
            (Some(a), Some(b)) => a == b,
        }
    }

    /// Whether `other` is the same platform once both are normalised
    /// (OS, architecture and variant; the OS version is not compared).
    pub fn same_as(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// The manifest-list selection rule: the position of the entry to use
    /// for a request for `self` among `candidates` (an index's entries'
    /// platforms, in order). An entry the same as `self` wins, then the
    /// first entry `self` [`matches`](Platform::matches). Entries without a
    /// platform or with OS `unknown` (attestations) are never picked.
    pub fn select<'a, I>(&self, candidates: I) -> Option<usize>
    where
        I: IntoIterator<Item = Option<&'a Platform>>,
        I::IntoIter: Clone,
    {
        let usable = candidates
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| p.filter(|p| p.os != "unknown").map(|p| (i, p)));
        let exact = usable.clone().find(|(_, p)| self.same_as(p));
        exact
            .or_else(|| usable.clone().find(|(_, p)| self.matches(p)))
            .map(|(i, _)| i)
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// [`Platform::parse`].
    fn from_str(s: &str) -> Result<Platform, Error> {
        Platform::parse(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parsing_normalises_like_docker() {
        let native_arch = Platform::native().architecture;
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm64/v9.0", "linux/arm64/v9"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("linux/riscv64", "linux/riscv64"),
            ("macos/arm64", "darwin/arm64"),
            ("arm64", "linux/arm64"),
            ("aarch64", "linux/arm64"),
        ] {
            assert_eq!(p(input).to_string(), want, "{input}");
        }
        assert_eq!(p("linux").architecture, native_arch);
        assert_eq!(p("windows").os, "windows");
    }

    #[test]
    fn parsing_refuses_malformed() {
        for bad in [
            "",
            "linux/",
            "/amd64",
            "linux//v7",
            "a/b/c/d",
            "linux/amd 64",
            "linux/amd64;rm",
            "nonsense",
        ] {
            let e = Platform::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid platform"), "{bad}: {e}");
        }
    }

    #[test]
    fn native_is_linux_and_normal() {
        let n = Platform::native();
        assert_eq!(n.os, "linux");
        assert_eq!(n, n.normalized());
    }

    #[test]
    fn matching_table() {
        // (request, candidate, matches)
        for (want, have, ok) in [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/arm64", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/amd64", "linux/amd64/v3", true),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/arm64/v9", "linux/arm64", false),
            ("linux/arm64", "linux/aarch64", true),
            ("linux/arm/v7", "linux/arm/v7", true),
            ("linux/arm/v7", "linux/arm/v6", false),
            ("linux/arm", "linux/arm/v7", true),
            ("linux/x86_64", "linux/amd64", true),
        ] {
            assert_eq!(p(want).matches(&p(have)), ok, "{want} ~ {have}");
        }
        // Raw (unparsed, e.g. from an index) spellings are normalised too.
        let raw = Platform::new("linux", "aarch64", Some("v8"));
        assert!(p("linux/arm64").matches(&raw));
        // A request without a variant on a variant-less arch accepts any.
        let raw = Platform::new("linux", "ppc64le", Some("power9"));
        assert!(p("linux/ppc64le").matches(&raw));
        assert!(
            !Platform::new("linux", "ppc64le", Some("power9")).matches(&p("linux/ppc64le/power8"))
        );
    }

    #[test]
    fn selection_prefers_exact_and_skips_attestations() {
        let arm5 = Platform::new("linux", "arm", Some("v5"));
        let arm7 = Platform::new("linux", "arm", Some("v7"));
        let unknown = Platform::new("unknown", "unknown", None);
        let amd = Platform::new("linux", "amd64", None);
        let entries = [Some(&unknown), None, Some(&arm5), Some(&arm7), Some(&amd)];
        assert_eq!(p("linux/arm/v7").select(entries), Some(3));
        assert_eq!(p("linux/amd64").select(entries), Some(4));
        assert_eq!(p("linux/arm64").select(entries), None);
        // No exact entry: the first one the request accepts.
        let v8 = Platform::new("linux", "arm64", Some("v8"));
        let v9 = Platform::new("linux", "arm64", Some("v9"));
        assert_eq!(p("linux/arm64").select([Some(&v9), Some(&v8)]), Some(1));
        assert_eq!(p("linux/arm64/v9").select([Some(&v8), Some(&v9)]), Some(1));
        let amd3 = Platform::new("linux", "amd64", Some("v3"));
        assert_eq!(p("linux/amd64").select([Some(&amd3)]), Some(0));
    }

    #[test]
    fn json_is_the_oci_platform_object() {
        let mut w = Platform::new("windows", "amd64", None);
        w.os_version = Some("10.0.17763.1".into());
        w.os_features = Some(vec!["win32k".into()]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#
        );
        assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), w);
        let arm = p("linux/arm/v7");
        assert_eq!(
            serde_json::to_string(&arm).unwrap(),
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
    }
}
