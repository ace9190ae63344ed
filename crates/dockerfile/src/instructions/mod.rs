//! The typed layer: stages and instructions, with BuildKit's checks of
//! argument counts, flags and values.

mod types;

pub use types::*;
