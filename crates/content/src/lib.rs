//! Content-addressed blob store, image and container records, references, locking.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
