//! Runs an OCI runtime bundle: namespaces, pivot_root, /proc and /dev, caps, seccomp, cgroups.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
