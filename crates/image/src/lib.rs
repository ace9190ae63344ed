//! Images: pull-and-unpack, config and manifest assembly, history, save/load.
//!
//! kiln-image works on images in a [`kiln_content::Store`]:
//!
//! - **Assembly**: the image config is kiln-model's
//!   [`ImageConfig`](kiln_model::ImageConfig) (Docker's, unknown fields
//!   kept, deterministic JSON); [`Manifest`] and [`Index`] are the
//!   OCI/Docker wire types around kiln-model's
//!   [`Descriptor`](kiln_model::Descriptor); [`write_image`] stores config
//!   and manifest and records the image; [`chain_ids`] computes OCI chain IDs.
//! - **Views**: [`image_config`], [`inspect`] (`docker image inspect` JSON),
//!   [`history`] (`docker history` rows).
//! - **Unpack**: [`ensure_unpacked`] puts every layer of an image into a
//!   `kiln_snapshot::Snapshotter`, one committed snapshot per chain ID
//!   ([`unpack_layer`] does one layer from any reader);
//!   [`prune_snapshots`] frees the ones no image uses.
//! - **Commit**: [`commit_layer`] turns an active snapshot's change into a
//!   new layer and image in one pass.
//! - **Archives**: [`save`] (docker-archive or OCI layout), [`load`] (both,
//!   compressed or not), [`import`] (a rootfs tarball as a one-layer image),
//!   [`apply_change`] (`--change` instructions).
//!
//! It does not talk to registries (kiln-registry pulls blobs into the store;
//! this crate then unpacks them), run containers, or read the clock: times
//! are passed in, so the same inputs give the same image ID.
//!
//! ```
//! use kiln_content::{Reference, Store};
//! use kiln_image::{Format, ImportOptions, SaveImage, Timestamp, history, import, load, save};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let store = Store::open(tmp.path().join("store"))?;
//!
//! // A rootfs tarball with one file.
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut h = tar::Header::new_ustar();
//! h.set_size(3);
//! h.set_mode(0o644);
//! h.set_uid(0);
//! h.set_gid(0);
//! h.set_mtime(0);
//! tar.append_data(&mut h, "hello", &b"hi\n"[..])?;
//! let tar = tar.into_inner()?;
//!
//! // `kiln import - base:1 -c 'CMD ["cat","/hello"]'`
//! let name = Reference::parse("base:1")?;
//! let opts = ImportOptions { created: Timestamp::from_unix(1_700_000_000), ..Default::default() };
//! let changes = [r#"CMD ["cat", "/hello"]"#.to_owned()];
//! let rec = import(&store, tar.as_slice(), Some(&name), &changes, &opts)?;
//! assert_eq!(rec.repo_tags, ["base:1"]);
//! assert_eq!(history(&store, &rec.id)?[0].comment, "Imported from -");
//!
//! // Save as an OCI layout and load into another store: same image ID.
//! let images = [SaveImage { id: rec.id, tags: vec![name] }];
//! let archive = save(&store, &images, Format::OciLayout, Vec::new())?;
//! let other = Store::open(tmp.path().join("other"))?;
//! assert_eq!(load(&other, archive.as_slice())?[0].id, rec.id);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
mod commit;
mod compress;
mod error;
mod image;
mod import;
mod load;
mod manifest;
mod prune;
mod size;
mod time;
mod unpack;
mod views;

pub use archive::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Format, SaveImage, save, save_compressed,
};
pub use commit::{CommitOptions, Committed, EMPTY_LAYER_DIFF_ID, commit_layer};
pub use compress::{
    COMPRESSED_LAYERS, CompressedLayer, DISTRIBUTION_ANNOTATION, Distribution,
    distribution_manifest,
};
pub use error::{Error, Result};
pub use image::{Image, chain_ids, image_config, read_image, write_image};
pub use import::{ImportOptions, apply_change, import};
pub use load::load;
pub use manifest::{Index, Manifest, media_type, to_oci_media_type};
pub use prune::prune_snapshots;
pub use size::{LAYER_SIZES, LayerSize, content_size, image_size, layer_sizes};
pub use time::Timestamp;
pub use unpack::{
    LayerRef, UnpackOptions, ensure_unpacked, unpack_image, unpack_layer, unpack_layer_into,
    unpack_layer_verified,
};
pub use views::{HistoryRow, history, inspect};
