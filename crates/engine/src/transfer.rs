//! Loading and importing images: the archive's images recorded by
//! kiln-image, then unpacked at once (as Docker does; this also measures
//! their layers); when one cannot be unpacked (no room above the
//! free-space reserve, a layer kiln refuses) none of the new images stay.

use std::collections::BTreeSet;
use std::io::Read;

use kiln_content::{ImageRecord, Reference};
use kiln_image::ImportOptions;
use kiln_model::Digest;

use crate::engine::Engine;
use crate::error::Result;

impl Engine {
    /// Loads the images of a docker-archive or OCI-layout tar and unpacks
    /// them; all or nothing of what was new.
    pub fn load_images(&mut self, archive: impl Read) -> Result<Vec<ImageRecord>> {
        let before = self.known_images()?;
        let records = kiln_image::load(&self.store, archive)?;
        for r in &records {
            if let Err(e) = self.ensure_unpacked(&r.id) {
                self.forget_new(&before, records.iter().map(|r| r.id));
                return Err(e);
            }
        }
        Ok(records)
    }

    /// Makes an image of a root filesystem tarball (`docker import`), named
    /// `reference`, its config changed by `changes` (Dockerfile
    /// instructions), and unpacks it; it does not stay if that fails.
    pub fn import_image(
        &mut self,
        tar: impl Read,
        reference: Option<&Reference>,
        changes: &[String],
        opts: &ImportOptions,
    ) -> Result<ImageRecord> {
        let before = self.known_images()?;
        let record = kiln_image::import(&self.store, tar, reference, changes, opts)?;
        if let Err(e) = self.ensure_unpacked(&record.id) {
            self.forget_new(&before, [record.id]);
            return Err(e);
        }
        Ok(record)
    }

    /// The IDs of the images in the store now.
    fn known_images(&self) -> Result<BTreeSet<Digest>> {
        Ok(self
            .store
            .list_images()?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Removes the images among `ids` that were not in the store `before`
    /// (with their blobs and snapshots), after a load or import that failed
    /// half way. Best effort: the caller reports the first error.
    fn forget_new(&mut self, before: &BTreeSet<Digest>, ids: impl IntoIterator<Item = Digest>) {
        for id in ids {
            if !before.contains(&id) {
                let _ = self.store.remove_image(&id);
            }
        }
        let _ = crate::gc::free_unused(self);
    }
}
