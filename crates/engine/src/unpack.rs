//! Making an image's layers ready to run: unpacked into snapshots named by
//! chain ID (kiln-image does the work; this picks the store and snapshotter).

use kiln_model::Digest;

use crate::engine::Engine;
use crate::error::{Context as _, Result};

impl Engine {
    /// Unpacks image `id` and returns its top snapshot (`None` for an image
    /// without layers).
    pub fn ensure_unpacked(&mut self, id: &Digest) -> Result<Option<String>> {
        let snapshotter = self.snapshotter()?;
        kiln_image::ensure_unpacked(&self.store, &*snapshotter, id, &self.unpack_options())
            .with_context(|| format!("cannot unpack image {}", &id.hex()[..12]))
    }
}
