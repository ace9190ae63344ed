//! Image and layer sizes as Docker shows them: the unpacked size of each
//! layer (every non-directory's `st_size`, a hardlinked inode once, a
//! symlink counting its target's length), measured when the layer is
//! unpacked or committed and remembered per chain ID, so that `images` and
//! `history` show uncompressed figures whatever the blobs' compression.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use kiln_content::{Record, Store};
use kiln_layer::WhiteoutMode;
use kiln_model::Digest;
use kiln_snapshot::Snapshotter;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::Result;
use crate::image::{Image, chain_ids};

/// The record kind holding [`LayerSize`]s.
pub const LAYER_SIZES: &str = "layer-sizes";

/// The unpacked size of one layer, keyed by its chain ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSize {
    /// The layer's chain ID hex.
    pub id: String,
    /// Its size in bytes as Docker counts it.
    pub size: u64,
}

impl Record for LayerSize {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Docker's size of a directory holding one layer's files (overlay
/// `diff` form): the sum of `st_size` over every entry that is not a
/// directory, a hardlinked inode counted once. Whiteouts (0/0 character
/// devices) count 0.
pub fn content_size(dir: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let m = entry.metadata()?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.nlink() < 2 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// Measures the layer just unpacked or diffed in the active snapshot `key`
/// and remembers it for chain `chain_id`. With a snapshotter that keeps
/// each layer's files apart (overlay form), the directory is measured as
/// Docker does; otherwise (a merged tree) the uncompressed tar size
/// `tar_size` stands in. Failures only lose the figure.
pub(crate) fn remember(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    key: &str,
    chain_id: &Digest,
    tar_size: u64,
) {
    let size = match snapshotter.apply_target(key) {
        Ok(t) if t.whiteouts == WhiteoutMode::Overlay => match content_size(&t.dir) {
            Ok(s) => s,
            Err(e) => {
                debug!(key, error = %e, "cannot measure the layer");
                return;
            }
        },
        Ok(_) => tar_size,
        Err(e) => {
            debug!(key, error = %e, "cannot measure the layer");
            return;
        }
    };
    let rec = LayerSize {
        id: chain_id.hex().to_owned(),
        size,
    };
    if let Err(e) = store
        .records::<LayerSize>(LAYER_SIZES)
        .and_then(|r| r.put(&rec))
    {
        debug!(chain_id = %chain_id, error = %e, "cannot record the layer size");
    }
}

/// The unpacked size of each of `img`'s layers, bottom first, where known
/// (a layer measured when it was unpacked or committed).
pub fn layer_sizes(store: &Store, img: &Image) -> Result<Vec<Option<u64>>> {
    let records = store.records::<LayerSize>(LAYER_SIZES)?;
    let chain = chain_ids(&img.diff_ids()?);
    chain
        .iter()
        .map(|c| Ok(records.get(&c.hex())?.map(|r| r.size)))
        .collect()
}

/// The size `docker images` shows for `img`: the sum of its layers'
/// unpacked sizes, or `None` when a layer was never measured (not unpacked
/// yet).
pub fn image_size(store: &Store, img: &Image) -> Result<Option<u64>> {
    Ok(layer_sizes(store, img)?.into_iter().sum())
}
