//! From bytes to the raw syntax tree, following BuildKit's line rules:
//! directives at the top, comments, continuations with the escape
//! character, heredoc bodies, and the per-instruction argument splitters.
//!
//! Unlike BuildKit, which stops at the first error, the parser records a
//! diagnostic, leaves the faulty instruction out and carries on.

use std::borrow::Cow;

use crate::ast::{Ast, Directive, Directives, Heredoc, Node, Parsed};
use crate::diagnostic::Diagnostic;
use crate::json::{JsonArgs, parse_json_array};
use crate::shell::Lexer;
use crate::words::{extract_flags, parse_words, split_once_space, split_whitespace, word_spans};

const BOM: &str = "\u{feff}";

/// Parses a Dockerfile. Never panics; every problem is in `diagnostics`.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut diagnostics = Vec::new();
    let (text, invalid_at) = match std::str::from_utf8(bytes) {
        Ok(t) => (std::borrow::Cow::Borrowed(t), None),
        Err(e) => (String::from_utf8_lossy(bytes), Some(e.valid_up_to())),
    };
    if let Some(valid) = invalid_at {
        let before = &bytes[..valid];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let col = String::from_utf8_lossy(before.rsplit(|b| *b == b'\n').next().unwrap_or(&[]))
            .chars()
            .count()
            + 1;
        diagnostics.push(Diagnostic::warning(
            line,
            col,
            "invalid UTF-8: bytes replaced with U+FFFD",
        ));
    }
    let (text, bom) = match text.strip_prefix(BOM) {
        Some(t) => (t, true),
        None => (&*text, false),
    };
    let mut p = Parser {
        text,
        pos: 0,
        line_no: 0,
        escape: '\\',
        directives: Directives {
            bom,
            ..Directives::default()
        },
        dir_state: DirectiveState::default(),
        diagnostics,
    };
    let nodes = p.run();
    Parsed {
        ast: Ast {
            directives: p.directives,
            nodes,
        },
        diagnostics: p.diagnostics,
    }
}

#[derive(Default)]
struct DirectiveState {
    lines: usize,
    done: bool,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line_no: usize,
    escape: char,
    directives: Directives,
    dir_state: DirectiveState,
    diagnostics: Vec<Diagnostic>,
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    raw.trim_start().starts_with('#')
}

fn is_directive_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Matches `#\s*key\s*=\s*value\s*` (key: a letter then alphanumerics).
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line
        .strip_prefix('#')?
        .trim_start_matches(is_directive_space);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest
        .trim_start_matches(is_directive_space)
        .strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_directive_space)
        .trim_end_matches(is_directive_space);
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

impl<'a> Parser<'a> {
    /// The next physical line, with its line ending.
    fn next_line(&mut self) -> Option<&'a str> {
        let rest = self.text.get(self.pos..).filter(|r| !r.is_empty())?;
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        self.pos += len;
        Some(&rest[..len])
    }

    /// BuildKit's `processLine`: newline trimmed, optionally left-trimmed,
    /// directive detection; comments become empty. Returns the line and
    /// whether it was a directive.
    fn process_line(&mut self, raw: &'a str, strip_left: bool, line_no: usize) -> (&'a str, bool) {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start();
        }
        let directive = self.possible_directive(token, line_no);
        let token = if is_comment(token) { "" } else { token };
        (token, directive)
    }

    fn possible_directive(&mut self, token: &str, line_no: usize) -> bool {
        self.dir_state.lines += 1;
        if self.dir_state.done {
            return false;
        }
        let Some((key, value)) = match_directive(token) else {
            self.dir_state.done = true;
            return false;
        };
        let lower = key.to_ascii_lowercase();
        let slot = match lower.as_str() {
            "syntax" => &mut self.directives.syntax,
            "escape" => &mut self.directives.escape,
            "check" => &mut self.directives.check,
            _ => {
                self.dir_state.done = true;
                return false;
            }
        };
        let col = token
            .find('#')
            .map_or(1, |i| token[..i].chars().count() + 1);
        if slot.is_some() {
            self.diagnostics.push(Diagnostic::error(
                line_no,
                col,
                format!("only one {lower} parser directive can be used"),
            ));
            return false;
        }
        if lower == "escape" && value != "`" && value != "\\" {
            self.diagnostics.push(Diagnostic::error(
                line_no,
                col,
                format!("invalid escape token '{value}' does not match ` or \\"),
            ));
            return false;
        }
        *slot = Some(Directive {
            name: key.to_owned(),
            value: value.to_owned(),
            line: line_no,
        });
        if lower == "escape" {
            self.escape = value.chars().next().unwrap_or('\\');
        }
        true
    }

    /// Removes a trailing continuation (escape + blanks); returns the line
    /// and whether it ends the instruction.
    fn trim_continuation<'s>(&self, line: &'s str) -> (&'s str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        let Some(before) = t.strip_suffix(self.escape) else {
            return (line, true);
        };
        if before.is_empty() || !before.ends_with(self.escape) {
            (before, false)
        } else {
            (line, true)
        }
    }

    fn run(&mut self) -> Vec<Node> {
        let mut nodes = Vec::with_capacity(self.text.len() / 40 + 1);
        let mut comments: Vec<String> = Vec::new();
        while let Some(raw) = self.next_line() {
            if is_comment(raw) {
                let c = raw.trim_start()[1..].trim();
                if c.is_empty() {
                    comments.clear();
                } else {
                    comments.push(c.to_owned());
                }
            }
            self.line_no += 1;
            let (line, directive) = self.process_line(raw, true, self.line_no);
            if directive {
                comments.pop();
            }
            let start_line = self.line_no;
            let column = trim_newline(raw)
                .chars()
                .take_while(|c| c.is_whitespace())
                .count()
                + 1;
            let (first, mut eol) = self.trim_continuation(line);
            if eol && first.is_empty() {
                continue;
            }
            let mut buf = String::from(first);
            let mut empty_continuation = false;
            while !eol {
                let Some(raw) = self.next_line() else { break };
                self.line_no += 1;
                let (cont, _) = self.process_line(raw, false, self.line_no);
                if is_comment(raw) {
                    continue;
                }
                if cont.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (cont, e) = self.trim_continuation(cont);
                eol = e;
                buf.push_str(cont);
            }
            if empty_continuation {
                self.diagnostics.push(
                    Diagnostic::warning(start_line, column, "empty continuation line")
                        .until(self.line_no),
                );
            }
            let parsed = node_from_line(&buf, self.escape);
            let mut node = match parsed {
                Ok(n) => n,
                Err(msg) => {
                    self.diagnostics
                        .push(Diagnostic::error(start_line, column, msg).until(self.line_no));
                    comments.clear();
                    continue;
                }
            };
            if buf.contains("<<") && node.can_contain_heredoc() {
                match heredocs_from_line(&buf) {
                    Ok(docs) => {
                        for mut doc in docs {
                            if !self.read_heredoc(&mut doc) {
                                self.diagnostics.push(
                                    Diagnostic::error(start_line, column, "unterminated heredoc")
                                        .until(self.line_no),
                                );
                            }
                            node.heredocs.push(doc);
                        }
                    }
                    Err(msg) => self
                        .diagnostics
                        .push(Diagnostic::error(start_line, column, msg).until(self.line_no)),
                }
            }
            node.original = buf;
            node.start_line = start_line;
            node.end_line = self.line_no;
            node.column = column;
            node.comments = std::mem::take(&mut comments);
            if let Some(child) = node.child.as_deref_mut() {
                child.start_line = start_line;
                child.end_line = self.line_no;
                child.column = column;
            }
            nodes.push(node);
        }
        if nodes.is_empty() && !self.diagnostics.iter().any(Diagnostic::is_error) {
            self.diagnostics.push(Diagnostic::error(
                self.line_no.max(1),
                1,
                "file with no instructions",
            ));
        }
        nodes
    }

    /// Reads a heredoc body up to its terminator; false if the file ended first.
    fn read_heredoc(&mut self, doc: &mut Heredoc) -> bool {
        while let Some(raw) = self.next_line() {
            self.line_no += 1;
            let mut candidate = trim_newline(raw);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                return true;
            }
            doc.content.push_str(raw);
        }
        false
    }
}

impl Node {
    /// Whether heredocs are looked for on this instruction (shell-form RUN,
    /// COPY, ADD, also under ONBUILD).
    pub fn can_contain_heredoc(&self) -> bool {
        let mut n = self;
        if let Some(c) = n
            .child
            .as_deref()
            .filter(|_| n.keyword.eq_ignore_ascii_case("onbuild"))
        {
            n = c;
        }
        matches!(
            classify(&n.keyword),
            Some((_, _, Kw::Run | Kw::Copy | Kw::Add))
        ) && !n.json
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// The instructions the syntax layer dispatches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
}

/// Instruction keywords: (upper case, lower case, kind).
const KEYWORDS: &[(&str, &str, Kw)] = &[
    ("ADD", "add", Kw::Add),
    ("ARG", "arg", Kw::Arg),
    ("CMD", "cmd", Kw::Cmd),
    ("COPY", "copy", Kw::Copy),
    ("ENTRYPOINT", "entrypoint", Kw::Entrypoint),
    ("ENV", "env", Kw::Env),
    ("EXPOSE", "expose", Kw::Expose),
    ("FROM", "from", Kw::From),
    ("HEALTHCHECK", "healthcheck", Kw::Healthcheck),
    ("LABEL", "label", Kw::Label),
    ("MAINTAINER", "maintainer", Kw::Maintainer),
    ("ONBUILD", "onbuild", Kw::Onbuild),
    ("RUN", "run", Kw::Run),
    ("SHELL", "shell", Kw::Shell),
    ("STOPSIGNAL", "stopsignal", Kw::StopSignal),
    ("USER", "user", Kw::User),
    ("VOLUME", "volume", Kw::Volume),
    ("WORKDIR", "workdir", Kw::Workdir),
];

/// Packs up to 16 ASCII bytes into an integer (zero padded).
const fn pack(s: &str) -> u128 {
    let b = s.as_bytes();
    let mut buf = [0u8; 16];
    let mut i = 0;
    while i < b.len() && i < 16 {
        buf[i] = b[i];
        i += 1;
    }
    u128::from_le_bytes(buf)
}

/// The upper-case keywords of [`KEYWORDS`], packed, for comparisons
/// without `memcmp`.
const PACKED: [u128; 18] = {
    let mut out = [0u128; 18];
    let mut i = 0;
    while i < 18 {
        out[i] = pack(KEYWORDS[i].0);
        i += 1;
    }
    out
};

/// The instruction `keyword` names (case-insensitive), as its table entry.
fn classify(keyword: &str) -> Option<(&'static str, &'static str, Kw)> {
    if !keyword.is_ascii() {
        // Go lower-cases with Unicode rules (the Kelvin sign becomes `k`).
        let lower = keyword.to_lowercase();
        return KEYWORDS.iter().find(|(_, l, _)| *l == lower).copied();
    }
    if keyword.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    for (d, s) in buf.iter_mut().zip(keyword.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    let packed = u128::from_le_bytes(buf);
    let i = PACKED.iter().position(|p| *p == packed)?;
    KEYWORDS.get(i).copied()
}

fn node_with(
    keyword: &str,
    class: Option<(&'static str, &'static str, Kw)>,
    original: &str,
) -> Node {
    Node {
        keyword: class
            .and_then(|(u, l, _)| [u, l].into_iter().find(|k| *k == keyword))
            .map_or_else(|| Cow::Owned(keyword.to_owned()), Cow::Borrowed),
        flags: Vec::new(),
        args: Vec::new(),
        json: false,
        child: None,
        heredocs: Vec::new(),
        original: original.to_owned(),
        start_line: 0,
        end_line: 0,
        column: 1,
        comments: Vec::new(),
    }
}

/// How deep ONBUILD may nest in the syntax tree (keeps recursion bounded).
const MAX_ONBUILD_DEPTH: usize = 64;

/// BuildKit's `newNodeFromLine`: keyword, flags, and arguments of one logical line.
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    node_from_line_at(line, escape, 0)
}

fn node_from_line_at(line: &str, escape: char, depth: usize) -> Result<Node, String> {
    let (keyword, tail) = split_once_space(line.trim());
    // The caller sets `original` for top-level nodes (it owns the buffer).
    let class = classify(keyword);
    let mut node = node_with(keyword, class, "");
    let rest = match tail {
        Some(t) => {
            let (rest, flags) = extract_flags(t, escape);
            node.flags = flags;
            rest.trim()
        }
        None => "",
    };
    let Some((_, _, kind)) = class else {
        // Unknown instructions keep one empty argument, as BuildKit.
        node.args = vec![String::new()];
        return Ok(node);
    };
    match kind {
        Kw::Add | Kw::Copy | Kw::Volume => match parse_json_array(rest) {
            JsonArgs::Strings(v) => {
                node.args = v;
                node.json = true;
            }
            JsonArgs::NotStrings => return Err(NOT_STRINGS.to_owned()),
            JsonArgs::Invalid => node.args = split_whitespace(rest),
        },
        Kw::Run | Kw::Cmd | Kw::Entrypoint | Kw::Shell => {
            let (args, json) = maybe_json(rest)?;
            node.args = args;
            node.json = json;
        }
        Kw::Arg => node.args = parse_words(rest, escape),
        Kw::Env => node.args = name_val(rest, "ENV", escape)?,
        Kw::Label => node.args = name_val(rest, "LABEL", escape)?,
        Kw::Expose | Kw::From => node.args = split_whitespace(rest),
        Kw::Maintainer | Kw::User | Kw::Workdir | Kw::StopSignal => {
            if !rest.is_empty() {
                node.args = vec![rest.to_owned()];
            }
        }
        Kw::Healthcheck => {
            let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if sep > 0 {
                let (typ, cmd) = rest.split_at(sep);
                let (args, json) = maybe_json(cmd.trim_start())?;
                node.args = std::iter::once(typ.to_owned()).chain(args).collect();
                node.json = json;
            }
        }
        Kw::Onbuild => {
            if !rest.is_empty() {
                if depth >= MAX_ONBUILD_DEPTH {
                    return Err("too many nested ONBUILD instructions".to_owned());
                }
                let mut child = node_from_line_at(rest, escape, depth + 1)?;
                child.original = rest.to_owned();
                node.child = Some(Box::new(child));
            }
        }
    }
    Ok(node)
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or the whole rest as one string.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json_array(rest) {
        JsonArgs::Strings(v) => Ok((v, true)),
        JsonArgs::NotStrings => Err(NOT_STRINGS.to_owned()),
        JsonArgs::Invalid => Ok((vec![rest.to_owned()], false)),
    }
}

/// ENV and LABEL: (key, value, separator) triples.
fn name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = word_spans(rest, escape);
    let Some(&(a, b)) = words.first() else {
        return Ok(Vec::new());
    };
    if !rest[a..b].contains('=') {
        return match split_once_space(rest) {
            (k, Some(v)) => Ok(vec![k.to_owned(), v.to_owned(), String::new()]),
            (_, None) => Err(format!("{key} must have two arguments")),
        };
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for (a, b) in words {
        let w = &rest[a..b];
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                crate::quote::go_quote(w)
            ));
        };
        out.extend([k.to_owned(), v.to_owned(), "=".to_owned()]);
    }
    Ok(out)
}

/// The heredocs a logical line opens, in order (bodies still empty).
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let none = |_: &str| None::<String>;
    let words = lexer.process_words(line, &none).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(d) = parse_heredoc(&w)? {
            docs.push(d);
        }
    }
    Ok(docs)
}

/// Reads one heredoc marker word (`3<<-"EOF"`), if it is one: the file
/// descriptor, `-` (tab chomping), and the delimiter with quotes removed
/// (`expand` is false when any part of it was quoted).
///
/// ```
/// let h = kiln_dockerfile::parse_heredoc("3<<-'EOF'").unwrap().unwrap();
/// assert_eq!((h.fd, h.chomp, h.expand, h.name.as_str()), (3, true, false, "EOF"));
/// assert!(kiln_dockerfile::parse_heredoc("<<<EOF").unwrap().is_none());
/// assert_eq!(kiln_dockerfile::parse_heredoc("<< -EOF").unwrap().unwrap().name, "-EOF");
/// ```
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // `<< EOF` as one word (only possible when called directly: the line
    // splitter separates it).
    let rest = rest.trim_start_matches(is_directive_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let mut lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let none = |_: &str| None::<String>;
    let words = lexer
        .process_words(rest, &none)
        .map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer
        .process_words(rest, &none)
        .map_err(|e| e.to_string())?;
    if raw.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        expand: quotes(&words[0]) == quotes(&raw[0]),
        name: words.into_iter().next().unwrap_or_default(),
        fd,
        chomp,
        content: String::new(),
    }))
}
