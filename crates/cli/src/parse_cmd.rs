//! `kiln parse`: print a Dockerfile's syntax tree.

use std::path::PathBuf;

/// Arguments of `kiln parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct ParseArgs {
    /// Print the syntax tree as JSON instead of BuildKit's s-expression dump.
    #[arg(long)]
    json: bool,
    /// The Dockerfile to parse, or `-` for standard input.
    file: PathBuf,
}

/// Runs `kiln parse`; returns the exit status.
pub(crate) fn run(args: &ParseArgs) -> anyhow::Result<u8> {
    let _ = (args.json, &args.file);
    anyhow::bail!("kiln parse is not implemented yet")
}
