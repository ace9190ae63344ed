//! OCI distribution client: resolve, platform selection, streaming pull into the store, push, auth.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
