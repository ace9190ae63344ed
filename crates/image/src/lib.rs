//! Images: pull-and-unpack, config and manifest assembly, history, save/load.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
mod commit;
mod config;
mod error;
mod image;
mod import;
mod load;
mod manifest;
mod time;
mod unpack;

pub use archive::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Format, SaveImage, save};
pub use commit::{CommitOptions, Committed, EMPTY_LAYER_DIFF_ID, commit_layer};
pub use config::{ContainerConfig, Healthcheck, HistoryEntry, ImageConfig, RootFs};
pub use error::{Error, Result};
pub use image::{
    HistoryRow, Image, chain_ids, history, image_config, inspect, read_image, write_image,
};
pub use import::{ImportOptions, apply_change, import};
pub use load::load;
pub use manifest::{Descriptor, Index, Manifest, Platform, media_type, to_oci_media_type};
pub use time::Timestamp;
pub use unpack::{UnpackOptions, ensure_unpacked, unpack_image};
