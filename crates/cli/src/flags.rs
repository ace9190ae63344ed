//! Flag values several commands share, parsed once: image references,
//! `--platform` and `--compression`.

use anyhow::{Context as _, Result, bail};
use kiln_content::Reference;
use kiln_model::Platform;

/// Parses an image reference; the error names the input and what is wrong
/// with it (`invalid reference "Busybox": invalid reference format:
/// repository name (library/Busybox) must be lowercase`).
pub(crate) fn parse_reference(input: &str) -> Result<Reference> {
    Ok(input.parse::<Reference>()?)
}

/// Parses a `--platform` value with kiln-model's one parser
/// ([`Platform::parse`], Docker's normalisation). `kiln build`, `kiln pull`,
/// `run`, `create` and `load` all come through here.
pub(crate) fn parse_platform(p: &str) -> Result<Platform> {
    Platform::parse(p).with_context(|| format!("invalid --platform {p:?}"))
}

/// Parses `--platform`, defaulting to the host's (`pull`, `run`, ...).
pub(crate) fn platform(arg: Option<&str>) -> Result<Platform> {
    match arg {
        Some(p) => parse_platform(p),
        None => Ok(Platform::native()),
    }
}

/// Parses a `--compression` value.
pub(crate) fn compression(arg: &str) -> Result<kiln_layer::Compression> {
    Ok(match arg {
        "gzip" => kiln_layer::Compression::Gzip,
        "zstd" => kiln_layer::Compression::Zstd,
        "none" | "uncompressed" => kiln_layer::Compression::None,
        other => bail!("invalid --compression {other:?}: expected gzip, zstd or none"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_pull_parse_platforms_through_one_function() {
        for input in [
            "linux/amd64",
            "linux/x86_64",
            "Linux/AMD64",
            "linux/aarch64",
            "linux/arm64/v8",
            "linux/arm",
            "linux/armhf",
            "arm64",
        ] {
            let pulled = platform(Some(input)).expect(input);
            let built = crate::build_cmd::target_platform(Some(input))
                .expect(input)
                .expect("a platform was given");
            assert_eq!(built, pulled, "{input}");
            assert_eq!(pulled, Platform::parse(input).expect(input), "{input}");
        }
        assert_eq!(
            platform(Some("linux/aarch64")).unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            platform(Some("linux/arm")).unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux/", "a/b/c/d", "nonsense"] {
            let pulled = format!("{:#}", platform(Some(bad)).unwrap_err());
            let built = format!(
                "{:#}",
                crate::build_cmd::target_platform(Some(bad)).unwrap_err()
            );
            assert_eq!(built, pulled, "{bad}");
            assert!(
                pulled.starts_with(&format!("invalid --platform {bad:?}")),
                "{pulled}"
            );
        }
        assert!(crate::build_cmd::target_platform(None).unwrap().is_none());
    }

    #[test]
    fn compression_names() {
        assert_eq!(compression("gzip").unwrap(), kiln_layer::Compression::Gzip);
        assert_eq!(compression("zstd").unwrap(), kiln_layer::Compression::Zstd);
        assert_eq!(compression("none").unwrap(), kiln_layer::Compression::None);
        assert!(compression("lz4").is_err());
    }
}
