//! `--cache-to` / `--cache-from` values in buildx's syntax: comma-separated
//! `key=value` pairs with a `type`, or (for `--cache-from`) a bare
//! reference.

use std::fmt;
use std::path::PathBuf;

use kiln_content::Reference;
use kiln_layer::Compression;

use crate::CacheError;

/// Which steps an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The steps of the final image only (buildx's default).
    #[default]
    Min,
    /// Every step the build ran or reused, in every stage.
    Max,
}

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An OCI image index under a tag of a registry repository.
    Registry(Reference),
    /// An OCI image layout directory.
    Local(PathBuf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => f.write_str(&r.familiar_tagged()),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One `--cache-from` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    /// `type=registry,ref=...` or `type=local,src=...`.
    Cache(Location),
    /// A bare name: a cache index when the registry has one there, else an
    /// image whose history and layers are a cache source (Docker's classic
    /// `--cache-from IMAGE`).
    Name(String),
}

/// One `--cache-to` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// Where to write.
    pub location: Location,
    /// Which steps.
    pub mode: Mode,
    /// How layers are compressed in the export (gzip by default, as buildx).
    pub compression: Compression,
    /// An export failure only warns (`ignore-error=true`).
    pub ignore_error: bool,
}

/// buildx attributes kiln accepts and has nothing to do for: it always
/// writes an OCI index with OCI media types.
const NO_OP_ATTRS: &[&str] = &[
    "oci-mediatypes",
    "image-manifest",
    "compression-level",
    "force-compression",
];

fn pairs<'a>(flag: &str, value: &'a str) -> Result<Vec<(&'a str, &'a str)>, CacheError> {
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=').ok_or_else(|| CacheError::Spec {
                flag: flag.into(),
                value: value.into(),
                reason: format!("{p:?} is not key=value"),
            })
        })
        .collect()
}

fn bad(flag: &str, value: &str, reason: impl Into<String>) -> CacheError {
    CacheError::Spec {
        flag: flag.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn reference(flag: &str, value: &str, r: &str) -> Result<Reference, CacheError> {
    r.parse::<Reference>()
        .map_err(|e| bad(flag, value, format!("ref {r:?}: {e}")))
}

fn unsupported_type(flag: &str, value: &str, t: &str) -> CacheError {
    bad(
        flag,
        value,
        format!("cache type {t:?} is not supported: use type=registry or type=local"),
    )
}

/// Parses one `--cache-from` value.
pub fn parse_cache_from(value: &str) -> Result<CacheFrom, CacheError> {
    const FLAG: &str = "--cache-from";
    if !value.contains('=') {
        if value.is_empty() {
            return Err(bad(FLAG, value, "empty value"));
        }
        return Ok(CacheFrom::Name(value.to_string()));
    }
    let mut ty = None;
    let (mut r, mut src) = (None, None);
    for (k, v) in pairs(FLAG, value)? {
        match k {
            "type" => ty = Some(v),
            "ref" => r = Some(v),
            "src" => src = Some(v),
            "digest" | "tag" => {}
            _ => return Err(bad(FLAG, value, format!("unknown attribute {k:?}"))),
        }
    }
    match ty.unwrap_or("registry") {
        "registry" => {
            let r = r.ok_or_else(|| bad(FLAG, value, "type=registry needs ref=REFERENCE"))?;
            Ok(CacheFrom::Cache(Location::Registry(reference(
                FLAG, value, r,
            )?)))
        }
        "local" => {
            let src = src.ok_or_else(|| bad(FLAG, value, "type=local needs src=DIRECTORY"))?;
            Ok(CacheFrom::Cache(Location::Local(PathBuf::from(src))))
        }
        t => Err(unsupported_type(FLAG, value, t)),
    }
}

/// Parses one `--cache-to` value.
pub fn parse_cache_to(value: &str) -> Result<CacheTo, CacheError> {
    const FLAG: &str = "--cache-to";
    if !value.contains('=') {
        let r = reference(FLAG, value, value)?;
        return Ok(CacheTo {
            location: Location::Registry(r),
            mode: Mode::Min,
            compression: Compression::Gzip,
            ignore_error: false,
        });
    }
    let (mut ty, mut r, mut dest) = (None, None, None);
    let mut out = CacheTo {
        location: Location::Local(PathBuf::new()),
        mode: Mode::Min,
        compression: Compression::Gzip,
        ignore_error: false,
    };
    for (k, v) in pairs(FLAG, value)? {
        match k {
            "type" => ty = Some(v),
            "ref" => r = Some(v),
            "dest" => dest = Some(v),
            "mode" => {
                out.mode = match v {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    _ => return Err(bad(FLAG, value, format!("mode {v:?}: use min or max"))),
                }
            }
            "compression" => {
                out.compression = match v {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "uncompressed" => Compression::None,
                    _ => {
                        return Err(bad(
                            FLAG,
                            value,
                            format!("compression {v:?}: use gzip, zstd or uncompressed"),
                        ));
                    }
                }
            }
            "ignore-error" => {
                out.ignore_error = match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(
                            FLAG,
                            value,
                            format!("ignore-error {v:?}: use true or false"),
                        ));
                    }
                }
            }
            k if NO_OP_ATTRS.contains(&k) => {}
            _ => return Err(bad(FLAG, value, format!("unknown attribute {k:?}"))),
        }
    }
    out.location = match ty.unwrap_or("registry") {
        "registry" => {
            let r = r.ok_or_else(|| bad(FLAG, value, "type=registry needs ref=REFERENCE"))?;
            Location::Registry(reference(FLAG, value, r)?)
        }
        "local" => {
            let d = dest.ok_or_else(|| bad(FLAG, value, "type=local needs dest=DIRECTORY"))?;
            Location::Local(PathBuf::from(d))
        }
        t => return Err(unsupported_type(FLAG, value, t)),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_forms_parse() {
        let to = parse_cache_to("type=registry,ref=127.0.0.1:5000/app:cache,mode=max,compression=zstd,ignore-error=true")
            .expect("parse");
        assert_eq!(to.mode, Mode::Max);
        assert_eq!(to.compression, Compression::Zstd);
        assert!(to.ignore_error);
        assert!(matches!(&to.location, Location::Registry(r) if r.tag() == Some("cache")));
        let to = parse_cache_to("type=local,dest=/tmp/c").expect("parse");
        assert_eq!(to.location, Location::Local("/tmp/c".into()));
        assert_eq!(to.mode, Mode::Min);
        assert_eq!(to.compression, Compression::Gzip);
        let from = parse_cache_from("type=registry,ref=127.0.0.1:5000/app:cache").expect("parse");
        assert!(matches!(from, CacheFrom::Cache(Location::Registry(_))));
        assert_eq!(
            parse_cache_from("type=local,src=/c").expect("parse"),
            CacheFrom::Cache(Location::Local("/c".into()))
        );
        assert_eq!(
            parse_cache_from("busybox:1").expect("parse"),
            CacheFrom::Name("busybox:1".into())
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (v, want) in [
            ("type=gha", "not supported"),
            ("type=registry", "needs ref="),
            ("type=registry,ref=x,mode=all", "use min or max"),
            (
                "type=registry,ref=x,colour=red",
                "unknown attribute \"colour\"",
            ),
            ("type=registry,ref=Bad/Name", "ref \"Bad/Name\""),
            ("type=local", "needs dest="),
        ] {
            let e = parse_cache_to(v).expect_err(v).to_string();
            assert!(e.contains(want) && e.contains("--cache-to"), "{v}: {e}");
        }
        let e = parse_cache_from("type=s3,bucket=b")
            .expect_err("s3")
            .to_string();
        assert!(
            e.contains("unknown attribute") || e.contains("not supported"),
            "{e}"
        );
    }
}
