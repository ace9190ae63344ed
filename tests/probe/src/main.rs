//! The probe: prints what a process sees inside a container, as JSON.

fn main() {}
