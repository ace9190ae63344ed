//! Shared helpers for kiln's criterion benchmarks (the benches live in `benches/`).
