//! The raw syntax tree: one [`Node`] per instruction, as BuildKit's parser
//! builds it, plus the parser directives and the diagnostics.
//!
//! Nothing here is interpreted: argument counts, flag names and values are
//! checked by the typed layer ([`crate::instructions`]). The tree keeps the
//! original text and line range of every instruction so tools can point at it.

use std::borrow::Cow;

use serde::Serialize;

use crate::diagnostic::Diagnostic;

/// The outcome of [`crate::parse`]: the tree, and every diagnostic found.
///
/// The tree is always returned, even when there are errors: instructions that
/// could not be parsed are left out of it and reported in `diagnostics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// The syntax tree.
    pub ast: Ast,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// Whether any diagnostic is an error (warnings do not count).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The errors among the diagnostics.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// A whole Dockerfile as a syntax tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ast {
    /// The parser directives found at the top of the file.
    pub directives: Directives,
    /// The instructions, in source order.
    pub nodes: Vec<Node>,
}

impl Ast {
    /// The escape character in effect (`\` unless an `escape` directive set `` ` ``).
    pub fn escape(&self) -> char {
        self.directives.escape_char()
    }

    /// BuildKit's s-expression dump: one line per instruction, each ending
    /// with `\n` (the format of BuildKit's `result` files).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            node.dump_into(&mut out);
            out.push_str(")\n");
        }
        out
    }

    /// First line of the first instruction and last line of the last one
    /// (1-based), or `None` when there are no instructions.
    pub fn line_range(&self) -> Option<(usize, usize)> {
        let first = self.nodes.first()?;
        let last = self.nodes.last()?;
        Some((first.start_line, last.end_line))
    }
}

/// The parser directives (`# syntax=`, `# escape=`, `# check=`) and whether
/// the file started with a UTF-8 byte order mark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=<image>`.
    pub syntax: Option<Directive>,
    /// `# escape=<\ or `>`.
    pub escape: Option<Directive>,
    /// `# check=<rules>`.
    pub check: Option<Directive>,
    /// The file started with a UTF-8 BOM, which was skipped.
    pub bom: bool,
}

impl Directives {
    /// The escape character in effect.
    pub fn escape_char(&self) -> char {
        match &self.escape {
            Some(d) if d.value == "`" => '`',
            _ => '\\',
        }
    }
}

/// One parser directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The key as written (matching is case-insensitive).
    pub name: String,
    /// The value, trailing whitespace trimmed.
    pub value: String,
    /// 1-based line of the directive.
    pub line: usize,
}

/// One instruction of the syntax tree.
///
/// `args` are the instruction's arguments as BuildKit's parser splits them
/// (see the crate README for the per-instruction rules). Values are never
/// variable-expanded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword as written (`run`, `RUN`, `Run`...); borrowed
    /// from a static table for the usual spellings, so parsing does not
    /// allocate for it.
    pub keyword: Cow<'static, str>,
    /// Leading `--flags`, each as one string with its `--` (`--mount=type=cache,target=/x`),
    /// quotes and escapes removed.
    pub flags: Vec<String>,
    /// The arguments. Empty for ONBUILD, whose instruction is in `child`.
    pub args: Vec<String>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// ONBUILD's wrapped instruction.
    pub child: Option<Box<Node>>,
    /// Heredocs opened on this instruction's line, with their bodies.
    pub heredocs: Vec<Heredoc>,
    /// The logical line: physical lines joined after removing continuations
    /// and comment lines inside them.
    pub original: String,
    /// 1-based first physical line.
    pub start_line: usize,
    /// 1-based last physical line (heredoc terminators included).
    pub end_line: usize,
    /// 1-based column of the keyword on `start_line` (in characters).
    pub column: usize,
    /// Comment lines immediately before the instruction, `#` and surrounding
    /// whitespace removed.
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword lower-cased (`run`).
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_lowercase()
    }

    /// This node in BuildKit's dump format, without the outer parentheses.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out);
        out
    }

    fn dump_into(&self, out: &mut String) {
        let start = out.len();
        out.push_str(&self.keyword.to_lowercase());
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                crate::quote::go_quote_into(f, out);
            }
            out.push(']');
        }
        if let Some(child) = &self.child {
            out.push_str(" (");
            child.dump_into(out);
            out.push(')');
        }
        for a in &self.args {
            out.push(' ');
            crate::quote::go_quote_into(a, out);
        }
        // BuildKit trims each level; only a keyword-less node can start with
        // whitespace.
        if out[start..].starts_with(' ') {
            let trimmed = out[start..].trim_start().to_owned();
            out.truncate(start);
            out.push_str(&trimmed);
        }
    }
}

/// A heredoc opened by an instruction (`RUN <<EOF`, `COPY <<-"X" /dst`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF`).
    pub name: String,
    /// File descriptor prefix (`3<<EOF` gives 3), 0 when absent.
    pub fd: u32,
    /// `<<-`: leading tabs are stripped from the body (see [`Heredoc::chomped`]).
    pub chomp: bool,
    /// No part of the delimiter was quoted: variables in the body are expanded.
    pub expand: bool,
    /// The body as written: every line with its line ending, terminator excluded.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `chomp` is set
    /// (BuildKit's `ChompHeredocContent`), otherwise the body unchanged.
    pub fn chomped(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}
