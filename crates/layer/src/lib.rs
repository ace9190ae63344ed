//! OCI layer tar apply and diff: whiteouts, hardlinks, xattrs, gzip/zstd, diffID in one pass.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
