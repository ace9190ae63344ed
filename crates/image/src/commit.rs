//! Turning a snapshot's change into a new image: diff, compress and hash in
//! one pass straight into a store blob, extend the parent's config and layer
//! list, record the image, and keep the snapshot as the new chain so later
//! steps need no unpacking.

use kiln_content::{ImageRecord, Reference, Store};
use kiln_layer::{Compression, DiffOptions, LayerWriter};
use kiln_model::Digest;
use kiln_snapshot::Snapshotter;
use tracing::{debug, info_span};

use crate::error::{layer_err, parse_digest, snap_err};
use crate::image::{chain_ids, write_image};
use crate::{Error, Result};
use kiln_model::Descriptor;
use kiln_model::{History, ImageConfig};

/// The diff ID of an empty layer tar (1024 zero bytes): a step that changed
/// nothing.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// How [`commit_layer`] makes the new image.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Compression of the new layer blob.
    pub compression: Compression,
    /// Layer-making options (`SOURCE_DATE_EPOCH` clamping).
    pub diff: DiffOptions,
    /// The history entry for the step (`created`, `created_by`, `comment`,
    /// `author`); its `empty_layer` is set by `commit_layer`.
    pub history: History,
    /// Tags to give the new image.
    pub tags: Vec<Reference>,
    /// When the change is empty, record only a history entry with
    /// `empty_layer: true` and no layer, instead of an empty layer.
    pub skip_empty_layer: bool,
    /// After recording the image, commit the active snapshot `key` under the
    /// new image's top chain ID (consuming `key`), so that later steps and
    /// containers start from it without unpacking (when the change was
    /// skipped as empty, `key` is removed instead). Leave false when `key`
    /// must stay active (`kiln commit` of a running container).
    pub commit_snapshot: bool,
}

/// What [`commit_layer`] made.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new image's record; `record.id` is the image ID.
    pub record: ImageRecord,
    /// The new layer's descriptor and diff ID, `None` when the change was
    /// empty and `skip_empty_layer` was set.
    pub layer: Option<(Descriptor, Digest)>,
    /// The name of the snapshot holding the new image's whole filesystem
    /// (its top chain ID) when that snapshot exists after the call: always
    /// when `commit_snapshot` was set (or the change was skipped as empty and
    /// the parent has layers).
    pub top_snapshot: Option<String>,
}

/// Makes a new image from the change in the active snapshot `key`.
///
/// `config` is the new image's config before the layer is added: normally
/// the parent's config with the step's metadata edits and `created` already
/// applied (`ImageConfig::new` for `FROM scratch`); its `rootfs.diff_ids`
/// must match `parent_layers`, the parent manifest's layer descriptors. The
/// layer tar of the snapshot's diff is written through kiln-layer's
/// one-pass [`LayerWriter`] into a content-store blob (verified on commit),
/// its diff ID and `opts.history` are appended to the config, and config,
/// OCI manifest and image record are written by
/// [`write_image`](crate::write_image).
///
/// With `opts.commit_snapshot`, `key` is then committed under the new top
/// chain ID; if that snapshot already exists (the same change made before),
/// `key` is removed instead. Without it, `key` is left untouched.
pub fn commit_layer(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    key: &str,
    mut config: ImageConfig,
    mut parent_layers: Vec<Descriptor>,
    opts: &CommitOptions,
) -> Result<Committed> {
    let _span = info_span!("commit", snapshot = key).entered();
    let _lease = store.lease()?;
    if config.rootfs.diff_ids.len() != parent_layers.len() {
        return Err(Error::LayerCountMismatch {
            id: "(new image)".to_owned(),
            layers: parent_layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let source = snapshotter.diff_source(key).map_err(snap_err(key))?;
    // LayerWriter hashes what it writes: the store need not hash it again.
    let blob = store.blob_writer_prehashed()?;
    let writer = LayerWriter::new(blob, opts.compression).map_err(layer_err("new layer"))?;
    let writer = source
        .write_layer(&opts.diff, writer)
        .map_err(layer_err("new layer"))?;
    let (digests, blob) = writer.finish().map_err(layer_err("new layer"))?;
    let empty = digests.diff_id == EMPTY_LAYER_DIFF_ID;
    let parent_chain = chain_ids(&parse_ids(&config)?)
        .last()
        .map(Digest::to_string);

    let layer = if empty && opts.skip_empty_layer {
        drop(blob);
        config.push_empty_history(opts.history.clone());
        None
    } else {
        let want = parse_digest(&digests.digest)?;
        let (digest, size) = blob.commit(&want, digests.size)?;
        let diff_id = parse_digest(&digests.diff_id)?;
        let desc = Descriptor::new(opts.compression.oci_media_type(), digest, size);
        config.push_layer(&digests.diff_id, opts.history.clone());
        parent_layers.push(desc.clone());
        Some((desc, diff_id))
    };
    let record = write_image(store, &config, parent_layers, &opts.tags)?;
    if layer.is_some()
        && let Some(chain) = chain_ids(&parse_ids(&config)?).last()
    {
        crate::size::remember(store, snapshotter, key, chain, digests.uncompressed_size);
    }
    debug!(image = %record.id, empty, "image committed");

    let top = chain_ids(&parse_ids(&config)?)
        .last()
        .map(Digest::to_string);
    let top_snapshot = if layer.is_none() {
        if opts.commit_snapshot {
            snapshotter.remove(key).map_err(snap_err(key))?;
        }
        parent_chain
    } else if opts.commit_snapshot {
        let name = top.expect("a layer was added, so there is a chain");
        match snapshotter.commit(&name, key) {
            Ok(()) => {}
            Err(kiln_snapshot::Error::AlreadyExists { .. }) => {
                snapshotter.remove(key).map_err(snap_err(key))?;
            }
            Err(e) => return Err(snap_err(&name)(e)),
        }
        Some(name)
    } else {
        match top {
            Some(name) if snapshotter.exists(&name).map_err(snap_err(&name))? => Some(name),
            _ => None,
        }
    };
    Ok(Committed {
        record,
        layer,
        top_snapshot,
    })
}

fn parse_ids(config: &ImageConfig) -> Result<Vec<Digest>> {
    config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| parse_digest(d))
        .collect()
}
