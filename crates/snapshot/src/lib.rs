//! Snapshotter trait (containerd model) with overlay and copy implementations.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
