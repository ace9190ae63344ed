//! Lossless Dockerfile parser (BuildKit dialect): directives, heredocs,
//! exec/shell forms, word expansion. Pure: no IO, never panics.
//!
//! Three layers:
//!
//! 1. [`parse`] turns bytes into the raw syntax tree ([`Ast`] of [`Node`]s)
//!    plus every [`Diagnostic`]. [`Ast::dump`] prints BuildKit's s-expression
//!    dump; [`print()`] prints Dockerfile text back.
//! 2. The [`instructions`] module gives
//!    typed [`Stage`]s and [`Instruction`]s, checking argument counts and flags.
//! 3. [`shell`] expands words (`$VAR`, `${VAR:-x}`, quotes...) as BuildKit
//!    does at build time. The parser never expands anything itself.
//!
//! ```
//! use kiln_dockerfile::{parse, shell};
//!
//! let parsed = parse(b"FROM alpine AS base\nENV GREETING=hello\nRUN echo $GREETING\n");
//! assert!(!parsed.has_errors());
//! assert_eq!(
//!     parsed.ast.dump(),
//!     "(from \"alpine\" \"AS\" \"base\")\n(env \"GREETING\" \"hello\" \"=\")\n(run \"echo $GREETING\")\n"
//! );
//! let env = [("GREETING", "hello")];
//! assert_eq!(shell::process_word("$GREETING world", &env[..]).unwrap(), "hello world");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ast;
mod diagnostic;
mod glob;
pub mod instructions;
mod json;
mod parser;
mod printer;
mod quote;
pub mod shell;
mod words;

pub use ast::{Ast, Directive, Directives, Heredoc, Node, Parsed};
pub use diagnostic::{Diagnostic, Error, Result, Severity};
pub use instructions::{Dockerfile, Instruction, ShellOrExec, Stage};
pub use parser::{parse, parse_heredoc};
pub use printer::print;
pub use quote::go_quote;
