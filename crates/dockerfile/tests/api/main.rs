//! Public-API tests of kiln-dockerfile (one test binary): BuildKit
//! conformance data, typed instructions, heredocs, diagnostics, the printer
//! round trip, and replay of fuzz regression inputs.

mod conformance;
mod expand;
mod heredocs;
mod instructions;
mod regressions;
mod roundtrip;
