//! Helpers for kiln's end-to-end tests: find the kiln binary and the registries that `cargo xtask e2e` started.
