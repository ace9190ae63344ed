//! Printing a syntax tree back to Dockerfile text.
//!
//! The output is canonical, not the original layout: one line per
//! instruction (no continuations), flags quoted when needed, exec form as
//! compact JSON, heredoc bodies after their instruction. Parsing the output
//! gives back the same keywords, flags, arguments, forms, heredocs and
//! comments, for any tree the parser can produce.

use crate::ast::{Ast, Node};
use crate::json::{JsonArgs, parse_json_array};
use crate::parser::{heredocs_from_line, node_from_line};

/// Prints `ast` as Dockerfile text.
pub fn print(ast: &Ast) -> String {
    let mut out = String::new();
    let d = &ast.directives;
    let mut any_directive = false;
    for dir in [&d.syntax, &d.escape, &d.check].into_iter().flatten() {
        out.push_str(&format!("# {}={}\n", dir.name, dir.value));
        any_directive = true;
    }
    let escape = ast.escape();
    for (i, node) in ast.nodes.iter().enumerate() {
        if !node.comments.is_empty() {
            if i == 0 || any_directive {
                // A blank line ends directive scanning, so comments that look
                // like directives stay comments.
                out.push('\n');
            }
            for c in &node.comments {
                out.push_str("# ");
                out.push_str(c);
                out.push('\n');
            }
        }
        out.push_str(&line_for(node, escape));
        out.push('\n');
        for h in &node.heredocs {
            out.push_str(&h.content);
            out.push_str(&h.name);
            out.push('\n');
        }
    }
    // A byte-order mark is skipped only at the very start of a file: a
    // keyword that begins with one (it stood on a later line) keeps it only
    // if something comes first. A blank line does and changes nothing else.
    if out.starts_with('\u{feff}') {
        out.insert(0, '\n');
    }
    out
}

/// The canonical line when it parses back to `node`, else the original
/// logical line when that does (pathological quoting, where heredoc
/// detection and flag unquoting disagree), else the canonical line.
fn line_for(node: &Node, escape: char) -> String {
    let mut canon = String::new();
    print_line(node, escape, &mut canon);
    let canon = finish(canon, escape);
    if canon.is_empty() {
        // Only a lone escape at the end of the file gives an empty keyword;
        // elsewhere it cannot be written back.
        return escape.to_string();
    }
    if reparses_to(&canon, node, escape) {
        return canon;
    }
    let original = finish(node.original.clone(), escape);
    if !original.trim().is_empty() && reparses_to(&original, node, escape) {
        return original;
    }
    canon
}

fn finish(mut line: String, escape: char) -> String {
    if ends_in_continuation(&line, escape) {
        // A vertical tab is whitespace to the parser but does not count as a
        // continuation blank: the line stays one instruction.
        line.push('\u{b}');
    }
    line
}

fn reparses_to(line: &str, node: &Node, escape: char) -> bool {
    if line.contains('\n') || line.ends_with('\r') || line.trim_start().starts_with('#') {
        return false;
    }
    let Ok(n) = node_from_line(line, escape) else {
        return false;
    };
    let same = n.keyword == node.keyword
        && n.flags == node.flags
        && n.args == node.args
        && n.json == node.json
        && n.child
            .as_ref()
            .map(|c| (&c.keyword, &c.flags, &c.args, c.json))
            == node
                .child
                .as_ref()
                .map(|c| (&c.keyword, &c.flags, &c.args, c.json));
    if !same {
        return false;
    }
    let markers = if n.can_contain_heredoc() && line.contains("<<") {
        heredocs_from_line(line).unwrap_or_default()
    } else {
        Vec::new()
    };
    markers.len() == node.heredocs.len()
        && markers
            .iter()
            .zip(&node.heredocs)
            .all(|(a, b)| (&a.name, a.fd, a.chomp, a.expand) == (&b.name, b.fd, b.chomp, b.expand))
}

fn ends_in_continuation(line: &str, escape: char) -> bool {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(before) => before.is_empty() || !before.ends_with(escape),
        None => false,
    }
}

fn print_flag(flag: &str, escape: char, out: &mut String) {
    let body = flag.strip_prefix("--").unwrap_or(flag);
    let plain = !body.is_empty()
        && !body
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == escape);
    out.push_str("--");
    if plain {
        out.push_str(body);
        return;
    }
    out.push('"');
    for c in body.chars() {
        if c == '"' || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push('"');
}

fn json_array(args: &[String]) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "[]".to_owned())
}

fn print_line(node: &Node, escape: char, out: &mut String) {
    out.push_str(&node.keyword);
    for f in &node.flags {
        out.push(' ');
        print_flag(f, escape, out);
    }
    if let Some(child) = &node.child {
        out.push(' ');
        print_line(child, escape, out);
        return;
    }
    let kw = node.keyword.to_lowercase();
    let args = &node.args;
    match kw.as_str() {
        _ if node.json && kw != "healthcheck" => {
            out.push(' ');
            out.push_str(&json_array(args));
        }
        "env" | "label" => {
            for t in args.chunks(3) {
                if let [k, v, sep] = t {
                    out.push(' ');
                    out.push_str(k);
                    out.push_str(if sep.is_empty() { " " } else { "=" });
                    out.push_str(v);
                }
            }
        }
        "healthcheck" => {
            if let Some((typ, rest)) = args.split_first() {
                out.push(' ');
                out.push_str(typ);
                if node.json {
                    out.push(' ');
                    out.push_str(&json_array(rest));
                } else if let Some(cmd) = rest.first() {
                    out.push(' ');
                    out.push_str(cmd);
                }
            }
        }
        "add" | "copy" | "volume" => {
            // Split lists: if the words joined by spaces would read as a JSON
            // array, separate them with vertical tabs (not JSON whitespace).
            let spaced = args.join(" ");
            let sep = match parse_json_array(spaced.trim_start()) {
                JsonArgs::Invalid => " ",
                _ => "\u{b}",
            };
            if !args.is_empty() {
                out.push(' ');
                out.push_str(&args.join(sep));
            }
        }
        _ => {
            for a in args.iter().filter(|a| !a.is_empty()) {
                out.push(' ');
                out.push_str(a);
            }
        }
    }
}
