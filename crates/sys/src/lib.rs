//! The only home of kiln's unsafe syscalls, behind small traits.

#![deny(missing_docs)]
