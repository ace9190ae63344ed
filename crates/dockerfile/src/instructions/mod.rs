//! The typed layer: stages and instructions, with BuildKit's checks of
//! argument counts, flags and values, and its error messages.
//!
//! ```
//! use kiln_dockerfile::{Dockerfile, Instruction, ShellOrExec};
//!
//! let df = Dockerfile::parse(b"ARG V=1\nFROM alpine:$V AS base\nRUN --mount=type=cache,target=/c make\n")
//!     .expect("valid");
//! assert_eq!(df.meta_args[0].args[0].name, "V");
//! let stage = &df.stages[0];
//! assert_eq!((stage.base.as_str(), stage.name.as_deref()), ("alpine:$V", Some("base")));
//! let Instruction::Run(run) = &stage.instructions[0] else { panic!("not a RUN") };
//! assert_eq!(run.cmd, ShellOrExec::Shell("make".into()));
//! assert_eq!(run.mounts[0].target.as_deref(), Some("/c"));
//! ```

mod flags;
mod mount;
mod parse;
mod suggest;
mod types;

pub use parse::{parse_dockerfile, parse_instruction};
pub use types::*;
