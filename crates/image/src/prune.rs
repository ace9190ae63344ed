//! Freeing layer snapshots that no image needs any more (after `rmi`, or
//! `image prune`).

use std::collections::BTreeSet;

use kiln_content::Store;
use kiln_snapshot::{Kind, Snapshotter};
use tracing::debug;

use crate::Result;
use crate::error::snap_err;
use crate::image::read_image;

/// Removes every committed layer snapshot (named `sha256:...`) that is not
/// the chain ID of a layer of an image recorded in `store`, and returns the
/// names removed. Snapshots something is built on (a container's active
/// snapshot, a view) are kept, as are active snapshots and views
/// themselves: only unused layers go. Images whose manifest or config cannot
/// be read keep nothing alive, so remove their records first.
///
/// Run it after removing image records. A layer being unpacked for an image
/// not yet recorded could be removed under the unpacker, which then fails
/// and can be retried: record images before unpacking them.
pub fn prune_snapshots(store: &Store, snapshotter: &dyn Snapshotter) -> Result<Vec<String>> {
    let mut keep = BTreeSet::new();
    for rec in store.list_images()? {
        let Ok(img) = read_image(store, &rec.id) else {
            continue;
        };
        if let Ok(chain) = img.chain_ids() {
            keep.extend(chain.iter().map(ToString::to_string));
        }
    }
    let mut removed = Vec::new();
    loop {
        let mut progress = false;
        let infos = snapshotter.list().map_err(snap_err("(list)"))?;
        let parents: BTreeSet<&str> = infos.iter().filter_map(|i| i.parent.as_deref()).collect();
        for info in &infos {
            let unused = info.kind == Kind::Committed
                && info.name.starts_with("sha256:")
                && !keep.contains(&info.name)
                && !parents.contains(info.name.as_str());
            if !unused {
                continue;
            }
            match snapshotter.remove(&info.name) {
                Ok(()) => {
                    debug!(snapshot = %info.name, "unused layer snapshot removed");
                    removed.push(info.name.clone());
                    progress = true;
                }
                // Someone built on it or removed it meanwhile: leave it.
                Err(
                    kiln_snapshot::Error::HasChildren { .. }
                    | kiln_snapshot::Error::NotFound { .. },
                ) => {}
                Err(e) => return Err(snap_err(&info.name)(e)),
            }
        }
        if !progress {
            return Ok(removed);
        }
    }
}
