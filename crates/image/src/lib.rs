//! Images: pull-and-unpack, config and manifest assembly, history, save/load.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
