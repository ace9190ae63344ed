//! Compressing an image's uncompressed layers for distribution: kiln keeps
//! the layers it makes as plain tars (as Docker does locally), and `push`
//! or an OCI-layout `save` send gzip or zstd blobs. The compressed blob of
//! a layer is remembered per diff ID and compression, so a second push
//! does not compress again.

use std::io;

use kiln_content::{Record, Store};
use kiln_layer::{Compression, LayerWriter};
use kiln_model::Digest;
use serde::{Deserialize, Serialize};
use tracing::{debug, info_span};

use crate::error::layer_err;
use crate::image::read_image;
use crate::manifest::{Manifest, media_type};
use crate::{Error, Result};
use kiln_model::Descriptor;

/// The record kind remembering compressed copies of uncompressed layers.
pub const COMPRESSED_LAYERS: &str = "compressed-layers";

/// The image-record annotation prefix naming a distribution manifest made
/// by [`distribution_manifest`] (`kiln.manifest.gzip`, `kiln.manifest.zstd`);
/// the store's garbage collection keeps the blobs it references.
pub const DISTRIBUTION_ANNOTATION: &str = kiln_content::DISTRIBUTION_MANIFEST_PREFIX;

/// One remembered compressed copy of an uncompressed layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedLayer {
    /// `<diff id hex>-<gzip|zstd>`.
    pub id: String,
    /// The compressed blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl Record for CompressedLayer {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The manifest to distribute an image with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// Digest of the manifest blob (stored in the store).
    pub manifest_digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Layers compressed by this call (0 when every layer was compressed
    /// already or remembered from an earlier call).
    pub compressed_now: usize,
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// The manifest with which image `id` is pushed or saved with
/// `compression`: its layers stored as plain tars are replaced by
/// `compression`ed copies (made now, streaming into store blobs, or reused
/// from an earlier call), the others are kept as stored. When nothing
/// changes (no plain layer, or `Compression::None`), the image's own
/// manifest is returned. Otherwise the new manifest (Docker schema 2 when the
/// image's is Docker and `compression` is gzip, OCI otherwise) is written as
/// a blob and named in the image record's annotations
/// ([`DISTRIBUTION_ANNOTATION`]), which keeps its blobs from garbage
/// collection while the image exists.
///
/// The config is unchanged, so the image ID stays the same.
pub fn distribution_manifest(
    store: &Store,
    id: &Digest,
    compression: Compression,
) -> Result<Distribution> {
    let _span =
        info_span!("distribution_manifest", image = %id, compression = name(compression)).entered();
    let img = read_image(store, id)?;
    let plain = |d: &Descriptor| {
        Compression::from_media_type(&d.media_type).is_ok_and(|c| c == Compression::None)
    };
    let own = Distribution {
        manifest_digest: img.record.manifest_digest,
        media_type: img.record.manifest_media_type.clone(),
        compressed_now: 0,
    };
    if compression == Compression::None || !img.manifest.layers.iter().any(plain) {
        return Ok(own);
    }
    let _lease = store.lease()?;
    let records = store.records::<CompressedLayer>(COMPRESSED_LAYERS)?;
    let docker = img.record.manifest_media_type == media_type::DOCKER_MANIFEST
        && compression == Compression::Gzip;
    let mut manifest: Manifest = if docker {
        img.manifest.clone()
    } else {
        img.manifest.to_oci()
    };
    let mut compressed_now = 0;
    for layer in &mut manifest.layers {
        if !plain(layer) {
            continue;
        }
        let key = format!("{}-{}", layer.digest.hex(), name(compression));
        let known = records
            .get(&key)?
            .filter(|r| store.blob_size(&r.digest).is_ok_and(|s| s == r.size));
        let rec = match known {
            Some(r) => {
                debug!(layer = %layer.digest, blob = %r.digest, "compressed copy reused");
                r
            }
            None => {
                let rec = compress_blob(store, &layer.digest, compression, key)?;
                records.put(&rec)?;
                compressed_now += 1;
                rec
            }
        };
        layer.media_type = if docker {
            media_type::DOCKER_LAYER_GZIP.to_owned()
        } else {
            compression.oci_media_type().to_owned()
        };
        layer.digest = rec.digest;
        layer.size = rec.size;
    }
    let json = manifest.to_json();
    let digest = store.write_blob(&json)?;
    let mt = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned());
    {
        let _lock = store.lock()?;
        if let Some(mut rec) = store.get_image(id)? {
            rec.annotations.insert(
                format!("{DISTRIBUTION_ANNOTATION}{}", name(compression)),
                digest.to_string(),
            );
            store.put_image(&rec)?;
        }
    }
    Ok(Distribution {
        manifest_digest: digest,
        media_type: mt,
        compressed_now,
    })
}

/// Compresses the plain tar blob `digest` into a new store blob.
fn compress_blob(
    store: &Store,
    digest: &Digest,
    compression: Compression,
    key: String,
) -> Result<CompressedLayer> {
    let _span = info_span!("compress_layer", layer = %digest).entered();
    let mut src = store.open_blob(digest)?;
    let mut w = LayerWriter::new(store.blob_writer_prehashed()?, compression)
        .map_err(layer_err(&digest.to_string()))?;
    io::copy(&mut src, &mut w).map_err(|source| Error::Compress {
        digest: digest.to_string(),
        source,
    })?;
    let (d, blob) = w.finish().map_err(layer_err(&digest.to_string()))?;
    let bad = |what: String| Error::Compress {
        digest: digest.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, what),
    };
    if d.diff_id != digest.to_string() {
        return Err(bad(format!("the blob hashes to {}", d.diff_id)));
    }
    let want: Digest = d
        .digest
        .parse()
        .map_err(|_| bad(format!("invalid digest {:?}", d.digest)))?;
    let (got, size) = blob.commit(&want, d.size)?;
    debug!(layer = %digest, blob = %got, size, "layer compressed");
    Ok(CompressedLayer {
        id: key,
        digest: got,
        size,
    })
}
