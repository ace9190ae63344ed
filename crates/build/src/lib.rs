//! Dockerfile to image: stage graph, cached steps, layers, through traits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
