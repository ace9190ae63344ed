//! Making an image's layers ready to run: unpacked into snapshots named by
//! chain ID (kiln-image does the work; this picks the store and snapshotter).

use anyhow::{Context as _, Result};
use kiln_content::Digest;

use crate::app::App;

/// Unpacks image `id` and returns its top snapshot (`None` for an image without layers).
pub(crate) fn ensure_unpacked(app: &mut App, id: &Digest) -> Result<Option<String>> {
    let snapshotter = app.snapshotter()?;
    kiln_image::ensure_unpacked(&app.store, &*snapshotter, id, &app.unpack_options())
        .with_context(|| format!("cannot unpack image {}", &id.hex()[..12]))
}
