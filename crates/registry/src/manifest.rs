//! Manifest and index parsing, media types, and platform selection: the
//! pure part of resolving a reference, kept apart from the network.

use kiln_model::{Descriptor, Digest, Platform};
use serde::Deserialize;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or index accepted, as Docker: 4 MiB.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Media types sent in `Accept` when fetching manifests.
pub(crate) const ACCEPTED: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// What a manifest body turned out to be.
#[derive(Clone, Debug)]
pub(crate) enum Parsed {
    /// A single-platform image manifest.
    Image {
        media_type: String,
        /// Boxed: a descriptor is larger than the other variant.
        config: Box<Descriptor>,
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list.
    Index {
        media_type: String,
        entries: Vec<IndexEntry>,
    },
}

/// One entry of an index.
#[derive(Clone, Debug)]
pub(crate) struct IndexEntry {
    pub(crate) descriptor: Descriptor,
    pub(crate) platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
}

/// Just enough to learn what a body is before parsing it strictly.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    schema_version: i64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

/// Why a manifest body was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    TooLarge(usize),
    UnsupportedMediaType(String),
    Invalid(String),
}

fn descriptor(raw: RawDescriptor) -> Result<(Descriptor, Option<Platform>), ParseError> {
    let digest = raw
        .digest
        .parse::<Digest>()
        .map_err(|e| ParseError::Invalid(e.to_string()))?;
    let size = u64::try_from(raw.size)
        .map_err(|_| ParseError::Invalid(format!("negative size for {digest}")))?;
    Ok((Descriptor::new(&raw.media_type, digest, size), raw.platform))
}

/// Parses a manifest or index body, checking its size and media type.
/// `header_type` is the Content-Type when known (it wins over the body's).
pub(crate) fn parse(body: &[u8], header_type: Option<&str>) -> Result<Parsed, ParseError> {
    if body.len() > MAX_MANIFEST_SIZE {
        return Err(ParseError::TooLarge(body.len()));
    }
    let raw: Versioned =
        serde_json::from_slice(body).map_err(|e| ParseError::Invalid(e.to_string()))?;
    if raw.schema_version != 2 {
        // Schema 1 (and anything else) is not supported.
        let mt = raw
            .media_type
            .clone()
            .unwrap_or_else(|| format!("schemaVersion {}", raw.schema_version));
        return Err(ParseError::UnsupportedMediaType(mt));
    }
    let media_type = match (header_type, raw.media_type.as_deref()) {
        (_, Some(t)) => t.to_string(),
        (Some(h), None) if ACCEPTED.contains(&h) => h.to_string(),
        (_, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (_, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (_, None) => {
            return Err(ParseError::Invalid(
                "neither a manifest nor an index".into(),
            ));
        }
    };
    if !ACCEPTED.contains(&media_type.as_str()) {
        return Err(ParseError::UnsupportedMediaType(media_type));
    }
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ParseError::Invalid(e.to_string()))?;
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| ParseError::Invalid("manifest has no config".into()))?;
            let (config, _) = descriptor(config)?;
            let layers = raw
                .layers
                .unwrap_or_default()
                .into_iter()
                .map(|l| descriptor(l).map(|(d, _)| d))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Parsed::Image {
                media_type,
                config: Box::new(config),
                layers,
            })
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let entries = raw
                .manifests
                .ok_or_else(|| ParseError::Invalid("index has no manifests".into()))?
                .into_iter()
                .map(|m| {
                    descriptor(m).map(|(descriptor, platform)| IndexEntry {
                        descriptor,
                        platform,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Parsed::Index {
                media_type,
                entries,
            })
        }
        other => Err(ParseError::UnsupportedMediaType(other.to_string())),
    }
}

/// Picks the entry for `wanted` by kiln-model's selection rule
/// ([`Platform::select`]: the same platform first, then the first entry
/// `wanted` matches; attestations never). On failure returns the platforms
/// available.
pub(crate) fn select<'a>(
    entries: &'a [IndexEntry],
    wanted: &Platform,
) -> Result<&'a IndexEntry, Vec<String>> {
    match wanted.select(entries.iter().map(|e| e.platform.as_ref())) {
        Some(i) => Ok(&entries[i]),
        None => {
            let mut v: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect();
            v.dedup();
            Err(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    fn index(media: &str, plats: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let entries: Vec<String> = plats
            .iter()
            .map(|(os, arch, v)| {
                let variant = v.map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"{os}","architecture":"{arch}"{variant}}}}}"#,
                    d(&format!("{os}{arch}{v:?}"))
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn parses_docker_and_oci_manifests() {
        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"c","digest":"{}","size":3}},"layers":[{{"mediaType":"l","digest":"{}","size":5}}]}}"#,
                d("c"),
                d("l")
            );
            match parse(body.as_bytes(), None).unwrap() {
                Parsed::Image {
                    media_type,
                    config,
                    layers,
                } => {
                    assert_eq!(media_type, mt);
                    assert_eq!(config.size, 3);
                    assert_eq!(config.digest.to_string(), d("c"));
                    assert_eq!(layers.len(), 1);
                    assert_eq!(layers[0].size, 5);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oci_manifest_without_media_type_field() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":3}},"layers":[]}}"#,
            d("c")
        );
        assert!(
            matches!(parse(body.as_bytes(), None), Ok(Parsed::Image { media_type, .. }) if media_type == OCI_MANIFEST)
        );
    }

    #[test]
    fn parses_index_and_list() {
        for mt in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
            let body = index(
                mt,
                &[("linux", "amd64", None), ("linux", "arm64", Some("v8"))],
            );
            let Parsed::Index {
                media_type,
                entries,
            } = parse(&body, None).unwrap()
            else {
                panic!("not an index");
            };
            assert_eq!(media_type, mt);
            assert_eq!(entries.len(), 2);
            assert_eq!(
                entries[1].platform.as_ref().unwrap().to_string(),
                "linux/arm64/v8"
            );
        }
    }

    #[test]
    fn refuses_big_unknown_and_bad() {
        let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert_eq!(
            parse(&big, None).unwrap_err(),
            ParseError::TooLarge(MAX_MANIFEST_SIZE + 1)
        );
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-odd","config":{}}"#;
        assert_eq!(
            parse(odd, None).unwrap_err(),
            ParseError::UnsupportedMediaType("application/x-odd".into())
        );
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            parse(v1, None),
            Err(ParseError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse(b"not json", None),
            Err(ParseError::Invalid(_))
        ));
        let bad_digest = br#"{"schemaVersion":2,"config":{"digest":"md5:x","size":1}}"#;
        assert!(matches!(
            parse(bad_digest, None),
            Err(ParseError::Invalid(_))
        ));
        let neg = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":-1}}}}"#,
            d("x")
        );
        assert!(matches!(
            parse(neg.as_bytes(), None),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn selects_platforms() {
        let body = index(
            OCI_INDEX,
            &[
                ("linux", "amd64", None),
                ("linux", "arm", Some("v7")),
                ("linux", "arm64", Some("v8")),
                ("unknown", "unknown", None),
            ],
        );
        let Parsed::Index { entries, .. } = parse(&body, None).unwrap() else {
            panic!()
        };
        let pick = |p: &str| {
            select(&entries, &p.parse().unwrap()).map(|e| e.platform.clone().unwrap().to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick("linux/arm/v7").unwrap(), "linux/arm/v7");
        let err = pick("linux/s390x").unwrap_err();
        assert_eq!(err, vec!["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]);
        assert!(pick("linux/arm/v6").is_err());
    }
}
