//! From Dockerfile bytes to the typed model the engine runs (through
//! kiln-dockerfile), and ONBUILD trigger parsing.

use kiln_dockerfile::instructions::{Dockerfile, Instruction, parse_dockerfile, parse_instruction};

use crate::error::{Error, Result};

/// Parses and types a Dockerfile; every error diagnostic is reported.
pub fn parse(bytes: &[u8]) -> Result<Dockerfile> {
    let (df, diagnostics) = parse_dockerfile(bytes);
    let errors: Vec<_> = diagnostics.iter().filter(|d| d.is_error()).collect();
    match errors.first() {
        None => Ok(df),
        Some(first) => Err(Error::Parse {
            line: first.line,
            first: first.message.clone(),
            message: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// Parses one ONBUILD trigger (`RUN echo hi`) stored in a base image.
pub(crate) fn parse_trigger(text: &str, line: usize) -> Result<Instruction> {
    let parsed = kiln_dockerfile::parse(text.as_bytes());
    let bad = |m: String| Error::instr(line, format!("invalid ONBUILD trigger {text:?}: {m}"));
    if let Some(d) = parsed.errors().next() {
        return Err(bad(d.to_string()));
    }
    let node = match parsed.ast.nodes.as_slice() {
        [one] => one,
        _ => return Err(bad("expected one instruction".into())),
    };
    let inst = parse_instruction(node).map_err(|d| bad(d.to_string()))?;
    if matches!(
        inst,
        Instruction::From(_) | Instruction::Onbuild(_) | Instruction::Maintainer(_)
    ) {
        return Err(bad(format!(
            "{} is not allowed as an ONBUILD trigger",
            inst.name()
        )));
    }
    Ok(inst)
}
