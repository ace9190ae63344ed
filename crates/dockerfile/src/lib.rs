//! Lossless Dockerfile parser (BuildKit dialect): directives, heredocs, exec/shell forms, word expansion.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
