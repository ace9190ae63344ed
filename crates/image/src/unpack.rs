//! Unpacking an image's layers into snapshots named by chain ID, reusing the
//! ones already there, safely against other processes doing the same.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_content::Store;
use kiln_layer::{ApplyOptions, Compression, apply_layer, apply_layer_skipping_devices};
use kiln_model::Digest;
use kiln_snapshot::Snapshotter;
use tracing::{debug, info_span};

use crate::error::{layer_err, snap_err};
use crate::image::{Image, read_image};
use crate::{Error, Result};

static UNPACK_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How layers are unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Set file owners from the layer (needs root; rootless callers pass
    /// false and get files owned by themselves).
    pub preserve_owners: bool,
    /// Create device nodes found in layers (needs root). When false, a
    /// device entry is an error unless `skip_devices` is set.
    pub allow_devices: bool,
    /// Leave character and block devices out instead (rootless unpack, as
    /// rootless podman does); FIFOs and everything else are unpacked and the
    /// diffID is still checked over the whole tar.
    pub skip_devices: bool,
}

impl Default for UnpackOptions {
    /// Owners kept and devices allowed: what a root caller wants.
    fn default() -> Self {
        UnpackOptions {
            preserve_owners: true,
            allow_devices: true,
            skip_devices: false,
        }
    }
}

/// Makes sure every layer of image `id` is unpacked in `snapshotter` and
/// returns the name of the top snapshot (the chain ID of the whole stack,
/// `sha256:<hex>`), to pass as `parent` to `prepare` or `view`; `None` for
/// an image without layers.
///
/// For each layer, bottom first: if a snapshot named by its chain ID exists
/// it is reused; otherwise the layer blob (which must be in the store) is
/// applied into a fresh snapshot prepared under a unique key on top of the
/// previous chain, in the whiteout form the snapshotter asks for, its diff ID
/// is checked against the config, and the snapshot is committed under the
/// chain ID. If another process commits the same chain first, this one's
/// copy is dropped and theirs used. On error the partial snapshot is removed.
pub fn ensure_unpacked(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    id: &Digest,
    opts: &UnpackOptions,
) -> Result<Option<String>> {
    let img = read_image(store, id)?;
    unpack_image(store, snapshotter, &img, opts)
}

/// [`ensure_unpacked`] for an image already read with
/// [`read_image`](crate::read_image).
pub fn unpack_image(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    img: &Image,
    opts: &UnpackOptions,
) -> Result<Option<String>> {
    let _span = info_span!("unpack", image = %img.record.id).entered();
    img.check_layers()?;
    let diff_ids = img.diff_ids()?;
    let chain = crate::chain_ids(&diff_ids);
    let mut parent: Option<String> = None;
    for ((layer, diff_id), chain_id) in img.manifest.layers.iter().zip(&diff_ids).zip(&chain) {
        let name = chain_id.to_string();
        if snapshotter.exists(&name).map_err(snap_err(&name))? {
            debug!(chain_id = %name, "layer already unpacked");
            parent = Some(name);
            continue;
        }
        let compression = Compression::from_media_type(&layer.media_type).map_err(|_| {
            Error::UnsupportedMediaType {
                digest: layer.digest.to_string(),
                media_type: layer.media_type.clone(),
            }
        })?;
        let blob = store.open_blob(&layer.digest)?;
        let layer_ref = LayerRef {
            chain_id: *chain_id,
            diff_id: *diff_id,
            compression,
            label: layer.digest.to_string(),
        };
        unpack_layer_into(
            snapshotter,
            parent.as_deref(),
            &layer_ref,
            blob,
            opts,
            Some(store),
        )?;
        debug!(chain_id = %name, layer = %layer.digest, "layer unpacked");
        parent = Some(name);
    }
    Ok(parent)
}

/// One layer to unpack with [`unpack_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The layer's chain ID: the name of the snapshot to commit.
    pub chain_id: Digest,
    /// The diff ID the uncompressed tar must hash to (from the image config).
    pub diff_id: Digest,
    /// How the stream is compressed (from the layer's media type).
    pub compression: Compression,
    /// What to name in errors (the layer blob's digest).
    pub label: String,
}

/// Unpacks one layer read from `reader` as the committed snapshot
/// `layer.chain_id` on top of `parent` (the previous layer's chain ID), and
/// returns that snapshot's name. The building block of [`ensure_unpacked`],
/// public so that a caller can unpack a layer while downloading it (tee the
/// download into a content `BlobWriter` and this): the diff ID check against
/// the (digest-verified) config is what makes the result trustworthy.
///
/// Returns at once if the snapshot exists. Otherwise prepares a uniquely
/// named snapshot, applies the stream with the snapshotter's whiteout mode,
/// checks the diff ID and commits; a concurrent commit of the same chain by
/// someone else wins and this copy is removed. On any error the partial
/// snapshot is removed.
pub fn unpack_layer<R: Read>(
    snapshotter: &dyn Snapshotter,
    parent: Option<&str>,
    layer: &LayerRef,
    reader: R,
    opts: &UnpackOptions,
) -> Result<String> {
    unpack_layer_into(snapshotter, parent, layer, reader, opts, None)
}

/// [`unpack_layer`], also remembering the layer's unpacked size in
/// `sizes` (see [`layer_sizes`](crate::layer_sizes)) when given, and
/// marking the snapshot being unpacked as this process's there
/// (`Store::claim`), so that a killed unpack is reclaimed later, and
/// keeping that store's free-space reserve (`Store::check_space`) while
/// unpacking.
pub fn unpack_layer_into<R: Read>(
    snapshotter: &dyn Snapshotter,
    parent: Option<&str>,
    layer: &LayerRef,
    mut reader: R,
    opts: &UnpackOptions,
    sizes: Option<&Store>,
) -> Result<String> {
    unpack_layer_verified(snapshotter, parent, layer, &mut reader, opts, sizes, |_| {
        Ok(())
    })
}

/// [`unpack_layer_into`] for a stream that is verified only at its end
/// (a layer unpacked while it downloads): after the layer is applied and its
/// diff ID checked, `verify` gets the reader back (to drain it and learn
/// whether the download's digest check passed) and the snapshot is
/// committed only if it returns `Ok`; otherwise the partial snapshot is
/// removed and its error returned. `verify` is not called when the snapshot
/// exists already.
pub fn unpack_layer_verified<R: Read>(
    snapshotter: &dyn Snapshotter,
    parent: Option<&str>,
    layer: &LayerRef,
    reader: &mut R,
    opts: &UnpackOptions,
    sizes: Option<&Store>,
    verify: impl FnOnce(&mut R) -> Result<()>,
) -> Result<String> {
    let name = layer.chain_id.to_string();
    if snapshotter.exists(&name).map_err(snap_err(&name))? {
        return Ok(name);
    }
    let key = format!(
        "unpack-{}-{}-{}",
        &layer.chain_id.hex()[..12],
        std::process::id(),
        UNPACK_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    // Marked as this process's before it exists, so that if the process is
    // killed the next kiln command removes it (the CLI's recovery pass).
    let _claim = match sizes {
        Some(store) => Some(store.claim("snapshot", &key)?),
        None => None,
    };
    snapshotter.prepare(&key, parent).map_err(snap_err(&key))?;
    let applied = apply_into(snapshotter, &key, layer, &mut *reader, opts, sizes);
    let committed = applied.and_then(|stats| {
        verify(reader)?;
        if let Some(store) = sizes {
            crate::size::remember(store, snapshotter, &key, &layer.chain_id, stats.tar_size);
        }
        Ok(())
    });
    let committed = committed.and_then(|()| match snapshotter.commit(&name, &key) {
        Ok(()) => Ok(()),
        Err(kiln_snapshot::Error::AlreadyExists { .. }) => {
            debug!(chain_id = %name, "another process unpacked this layer first");
            let _ = snapshotter.remove(&key);
            Ok(())
        }
        Err(e) => Err(snap_err(&name)(e)),
    });
    if let Err(e) = committed {
        let _ = snapshotter.remove(&key);
        return Err(e);
    }
    Ok(name)
}

fn apply_into<R: Read>(
    snapshotter: &dyn Snapshotter,
    key: &str,
    layer: &LayerRef,
    reader: R,
    opts: &UnpackOptions,
    store: Option<&Store>,
) -> Result<kiln_layer::ApplyStats> {
    let target = snapshotter.apply_target(key).map_err(snap_err(key))?;
    let apply_opts = ApplyOptions {
        whiteouts: target.whiteouts,
        allow_devices: opts.allow_devices,
        preserve_owners: opts.preserve_owners,
        expected_diff_id: Some(layer.diff_id.to_string()),
    };
    if let Some(store) = store {
        // The store's free-space reserve, checked every few MiB unpacked:
        // a layer that inflates without end stops while there is room.
        let dir = target.dir.clone();
        let guard = move |_: u64| store.check_space_io(&dir);
        kiln_layer::apply_layer_guarded(
            reader,
            layer.compression,
            &target.dir,
            &apply_opts,
            opts.skip_devices,
            &guard,
        )
    } else if opts.skip_devices {
        apply_layer_skipping_devices(reader, layer.compression, &target.dir, &apply_opts)
    } else {
        apply_layer(reader, layer.compression, &target.dir, &apply_opts)
    }
    .map_err(layer_err(&layer.label))
}
