//! The cache document: an OCI image index whose entries are the images the
//! steps made, each annotated with the step record that led to it (the
//! parent image, the key, and what explains a miss). One small document
//! decides every step; only the images of steps that hit are fetched.

use std::collections::BTreeMap;

use kiln_builder::{CacheRecord, ImageId};
use kiln_model::{Descriptor, Digest, Platform};
use serde::{Deserialize, Serialize};

use crate::CacheError;

/// Index annotation naming the format (and its version).
pub const FORMAT_ANNOTATION: &str = "dev.kiln.cache.format";
/// The format this crate writes and reads.
pub const FORMAT: &str = "kiln-step-cache/v1";
const PARENT: &str = "dev.kiln.cache.parent";
const KEY: &str = "dev.kiln.cache.key";
const SHAPE: &str = "dev.kiln.cache.shape";
const FILES: &str = "dev.kiln.cache.files";
const IMAGE: &str = "dev.kiln.cache.image";
const SCRATCH: &str = "scratch";

/// The most entries an index may have; more is refused as hostile.
pub const MAX_ENTRIES: usize = 20_000;

/// One step of a cache: the record and the manifest of the image it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The step record (parent image, key, shape, files, resulting image).
    pub record: CacheRecord,
    /// The resulting image's manifest (media type, digest, size).
    pub manifest: Descriptor,
}

#[derive(Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Writes the index for `entries` (`platform` is `(os, architecture)` of
/// the images, which registries want on index entries).
pub fn encode(entries: &[Entry], platform: (&str, &str)) -> Vec<u8> {
    let manifests = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            let mut a = BTreeMap::new();
            a.insert(
                PARENT.to_string(),
                r.parent
                    .as_ref()
                    .map_or(SCRATCH.to_string(), |p| p.0.clone()),
            );
            a.insert(KEY.to_string(), r.key.clone());
            a.insert(SHAPE.to_string(), r.shape.clone());
            if !r.files.is_empty() {
                a.insert(
                    FILES.to_string(),
                    serde_json::to_string(&r.files).unwrap_or_default(),
                );
            }
            a.insert(IMAGE.to_string(), r.image.0.clone());
            let mut d = Descriptor::new(&e.manifest.media_type, e.manifest.digest, e.manifest.size);
            d.platform = Some(Platform::new(platform.0, platform.1, None));
            d.annotations = Some(a);
            d
        })
        .collect();
    let mut annotations = BTreeMap::new();
    annotations.insert(FORMAT_ANNOTATION.to_string(), FORMAT.to_string());
    let index = Index {
        schema_version: 2,
        media_type: Some(kiln_registry::OCI_INDEX.to_string()),
        manifests,
        annotations,
    };
    // Serialising plain strings and maps cannot fail.
    serde_json::to_vec(&index).unwrap_or_default()
}

fn image_id(what: &str, s: &str) -> Result<ImageId, String> {
    s.parse::<Digest>()
        .map(|d| ImageId(d.to_string()))
        .map_err(|e| format!("{what} {s:?}: {e}"))
}

/// Reads an index written by [`encode`]. `Ok(None)`: a valid index, but
/// not a kiln cache (e.g. an image's manifest list).
pub fn decode(bytes: &[u8]) -> Result<Option<Vec<Entry>>, CacheError> {
    let invalid = |reason: String| CacheError::InvalidIndex { reason };
    let index: Index =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not an OCI index: {e}")))?;
    if index.annotations.get(FORMAT_ANNOTATION).map(String::as_str) != Some(FORMAT) {
        return Ok(None);
    }
    if index.manifests.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "{} entries, more than the {MAX_ENTRIES} kiln reads",
            index.manifests.len()
        )));
    }
    let mut out = Vec::with_capacity(index.manifests.len());
    for (n, m) in index.manifests.into_iter().enumerate() {
        let annotations = m.annotations.clone().unwrap_or_default();
        let get = |k: &str| {
            annotations
                .get(k)
                .cloned()
                .ok_or_else(|| invalid(format!("entry {n} has no {k} annotation")))
        };
        let parent = match get(PARENT)?.as_str() {
            SCRATCH => None,
            p => Some(image_id("parent", p).map_err(|e| invalid(format!("entry {n}: {e}")))?),
        };
        let image =
            image_id("image", &get(IMAGE)?).map_err(|e| invalid(format!("entry {n}: {e}")))?;
        let files = match annotations.get(FILES) {
            Some(f) => serde_json::from_str(f)
                .map_err(|e| invalid(format!("entry {n}: files annotation: {e}")))?,
            None => Vec::new(),
        };
        out.push(Entry {
            record: CacheRecord {
                parent,
                key: get(KEY)?,
                shape: annotations.get(SHAPE).cloned().unwrap_or_default(),
                files,
                image,
            },
            manifest: Descriptor::new(&m.media_type, m.digest, m.size),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn entry(parent: Option<char>, key: &str, image: char) -> Entry {
        Entry {
            record: CacheRecord {
                parent: parent.map(|p| ImageId(digest(p))),
                key: key.into(),
                shape: key.into(),
                files: vec![("a".into(), "644:sha256:x".into())],
                image: ImageId(digest(image)),
            },
            manifest: Descriptor::new(
                kiln_registry::OCI_MANIFEST,
                digest('f').parse().expect("digest"),
                42,
            ),
        }
    }

    #[test]
    fn round_trip() {
        let entries = vec![
            entry(None, "#(link) COPY a /", 'b'),
            entry(Some('a'), "/bin/sh -c echo \"hi\"\n--network=host", 'c'),
        ];
        let bytes = encode(&entries, ("linux", "amd64"));
        assert_eq!(decode(&bytes).expect("decode"), Some(entries));
    }

    #[test]
    fn other_indexes_are_not_caches_and_bad_ones_are_errors() {
        let plain = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(decode(plain).expect("decode"), None);
        let bad_parent = format!(
            r#"{{"schemaVersion":2,"annotations":{{"{FORMAT_ANNOTATION}":"{FORMAT}"}},"manifests":[{{"mediaType":"x","digest":"{}","size":1,"annotations":{{"{PARENT}":"../etc","{KEY}":"k","{IMAGE}":"{}"}}}}]}}"#,
            digest('a'),
            digest('b')
        );
        let e = decode(bad_parent.as_bytes())
            .expect_err("bad parent")
            .to_string();
        assert!(e.contains("entry 0") && e.contains("parent"), "{e}");
        assert!(decode(b"[1,2]").is_err());
    }
}
