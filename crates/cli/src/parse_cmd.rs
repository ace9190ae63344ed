//! `kiln parse`: print a Dockerfile's syntax tree.
//!
//! Without `--json`, prints BuildKit's s-expression dump (one line per
//! instruction). With `--json`, prints the parse (`ast` and `diagnostics`)
//! as JSON, in the form documented in `crates/dockerfile/README.md`.
//! Diagnostics go to stderr as `file:line:col: message`. Only a broken
//! syntax (what BuildKit's parser itself rejects) makes the exit status 1 and
//! prints no tree; instruction-level problems (unknown instructions or flags,
//! argument counts, an instruction before FROM) belong to building and are
//! printed as warnings, after which the tree is printed as BuildKit's parser
//! prints it.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use kiln_dockerfile::Severity;
use kiln_dockerfile::instructions::parse_dockerfile;

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
    let (name, bytes) = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the Dockerfile from standard input")?;
        ("<stdin>".to_owned(), buf)
    } else {
        let bytes = std::fs::read(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
        (args.file.display().to_string(), bytes)
    };

    let parsed = kiln_dockerfile::parse(&bytes);
    let syntax_broken = parsed.has_errors();
    // The typed layer adds instruction-level problems (unknown instructions,
    // argument counts, flags) to the syntax diagnostics. They do not stop the
    // tree from being printed: they are reported as warnings.
    let (_, diagnostics) = parse_dockerfile(&bytes);
    let mut stderr = std::io::stderr().lock();
    for d in &diagnostics {
        let syntax = parsed.diagnostics.contains(d);
        if d.is_error() && !syntax {
            let mut warning = d.clone();
            warning.severity = Severity::Warning;
            writeln!(stderr, "{name}:{warning}")?;
        } else {
            writeln!(stderr, "{name}:{d}")?;
        }
    }
    if syntax_broken {
        return Ok(1);
    }

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &parsed).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        stdout.write_all(parsed.ast.dump().as_bytes())?;
    }
    stdout.flush()?;
    Ok(0)
}
