//! What reading and writing caches share: the image manifest fields kiln
//! uses, blob paths in an OCI layout, and image configs read with a size
//! limit.

use kiln_content::Store;
use kiln_model::Digest;
use serde::Deserialize;
use serde_json::Value;

/// The largest image config kiln reads from a cache or a cache source.
pub(crate) const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// A blob an image manifest names.
#[derive(Deserialize)]
pub(crate) struct BlobRef {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

/// The parts of an image manifest kiln uses.
#[derive(Deserialize)]
pub(crate) struct Manifest {
    pub(crate) config: BlobRef,
    #[serde(default)]
    pub(crate) layers: Vec<BlobRef>,
}

/// Where blob `d` lives in an OCI image layout.
pub(crate) fn layout_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Blob `d` of `store` as JSON, refused above [`MAX_CONFIG_SIZE`]; errors
/// name `what` and the digest.
pub(crate) fn read_json(store: &Store, d: &Digest, what: &str) -> Result<Value, String> {
    let size = store.blob_size(d).map_err(|e| format!("{what} {d}: {e}"))?;
    if size > MAX_CONFIG_SIZE {
        return Err(format!("{what} {d} is larger than {MAX_CONFIG_SIZE} bytes"));
    }
    let bytes = store.read_blob(d).map_err(|e| format!("{what} {d}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{what} {d}: {e}"))
}

fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// An image config's history entries and layer diffIDs.
pub(crate) fn history_and_layers(config: &Value) -> (Vec<Value>, Vec<Value>) {
    (
        list(config.get("history")),
        list(config.get("rootfs").and_then(|r| r.get("diff_ids"))),
    )
}
