//! `cargo xtask tidy` and its `#[test]`: the architecture and style rules
//! that a machine can check.
//!
//! - Every kiln-internal dependency edge (normal, build and dev) is allowed
//!   by the codemap table of `ARCHITECTURE.md` (an entry `x (tests)` allows
//!   a dev-dependency only), parsed from the file itself
//!   so the check and the document cannot drift; nothing depends on the
//!   tooling packages; every workspace package is in the table.
//! - Every `.rs` file starts with a `//!` line.
//! - No crate but kiln-sys contains the token `unsafe` outside comments and
//!   string literals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util;

/// What the codemap allows a package to depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// Any kiln crate (the CLI).
    Anything,
    /// Exactly these packages.
    Only(BTreeSet<String>),
}

/// The codemap: layered crates with their allowed edges, and the tooling
/// packages (which may depend on anything and nothing may depend on).
#[derive(Debug, Default)]
pub(crate) struct Codemap {
    pub(crate) crates: BTreeMap<String, Allowed>,
    pub(crate) tooling: BTreeSet<String>,
}

fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Parses the `## Codemap` table of ARCHITECTURE.md.
pub(crate) fn parse_codemap(text: &str) -> Result<Codemap> {
    let mut map = Codemap::default();
    let mut in_section = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Codemap";
            continue;
        }
        if !in_section || !line.trim_start().starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() < 4 || cells[0] == "layer" || cells[0].starts_with("---") {
            continue;
        }
        let (layer, krate, deps) = (cells[0], cells[1], cells[3]);
        if layer == "tooling" {
            for name in backticked(krate) {
                if !name.contains('/') {
                    map.tooling.insert(name.to_owned());
                }
            }
            continue;
        }
        let name = *backticked(krate)
            .first()
            .with_context(|| format!("codemap row without a crate name: {line}"))?;
        let allowed = if deps.starts_with("anything") {
            Allowed::Anything
        } else if deps == "none" {
            Allowed::Only(BTreeSet::new())
        } else {
            // `sys (tests)`: a dev-dependency only, kept as `kiln-sys#dev`.
            Allowed::Only(
                deps.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| match d.strip_suffix("(tests)") {
                        Some(dev) => format!("kiln-{}#dev", dev.trim()),
                        None => format!("kiln-{d}"),
                    })
                    .collect(),
            )
        };
        map.crates.insert(name.to_owned(), allowed);
    }
    if map.crates.is_empty() {
        bail!("no codemap table found under `## Codemap`");
    }
    Ok(map)
}

/// Checks the workspace's internal edges against the codemap.
pub(crate) fn check_edges(map: &Codemap, meta: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(packages) = meta["packages"].as_array() else {
        return vec!["`cargo metadata` has no packages".to_owned()];
    };
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    for p in packages {
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        let tooling = map.tooling.contains(name);
        let allowed = map.crates.get(name);
        if !tooling && allowed.is_none() {
            problems.push(format!(
                "package `{name}` is not in ARCHITECTURE.md's codemap table"
            ));
            continue;
        }
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let Some(dep_name) = dep["name"].as_str() else {
                continue;
            };
            if !names.contains(dep_name) || dep["path"].is_null() {
                continue;
            }
            let kind = dep["kind"].as_str().unwrap_or("normal");
            if map.tooling.contains(dep_name) {
                problems.push(format!(
                    "`{name}` depends on tooling package `{dep_name}` ({kind}); nothing may depend on tooling"
                ));
                continue;
            }
            let ok = tooling
                || match allowed {
                    Some(Allowed::Anything) => true,
                    Some(Allowed::Only(set)) => {
                        set.contains(dep_name)
                            || (kind == "dev" && set.contains(&format!("{dep_name}#dev")))
                    }
                    None => false,
                };
            if !ok {
                problems.push(format!(
                    "edge `{name}` -> `{dep_name}` ({kind}) is not allowed by ARCHITECTURE.md's codemap; add it there (an architecture change) or remove it"
                ));
            }
        }
    }
    problems
}

/// Every `.rs` file of the repository, skipping build output and fuzz data.
pub(crate) fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let skip = name.starts_with('.')
                    || name == "target"
                    || rel == Path::new("fuzz/corpus")
                    || rel == Path::new("fuzz/artifacts")
                    || rel == Path::new("fuzz/regressions");
                if !skip {
                    stack.push(path);
                }
            } else if ft.is_file() && name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the first non-blank line is a `//!` comment.
pub(crate) fn starts_with_inner_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// Removes comments, string, byte-string, raw-string and char literals,
/// keeping the code tokens (lifetimes stay).
pub(crate) fn strip_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (ch == 'r' || (ch == 'b' && at(i + 1) == 'r') || (ch == 'c' && at(i + 1) == 'r'))
            && !prev_is_ident(&c, i)
            && {
                let mut j = if ch == 'r' { i + 1 } else { i + 2 };
                while at(j) == '#' {
                    j += 1;
                }
                at(j) == '"'
            }
        {
            let mut j = if ch == 'r' { i + 1 } else { i + 2 };
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // opening quote
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // an escaped char literal: skip to the closing quote
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if at(i + 2) == '\'' {
                i += 3;
                out.push_str("' '");
            } else {
                // a lifetime or label
                out.push(ch);
                i += 1;
            }
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

/// Whether code (already stripped) contains the token `unsafe`.
pub(crate) fn has_unsafe_token(code: &str) -> bool {
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut rest = code;
    let mut offset = 0;
    while let Some(pos) = rest.find("unsafe") {
        let start = offset + pos;
        let end = start + "unsafe".len();
        let before = code[..start].chars().next_back();
        let after = code[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        offset = end;
        rest = &code[end..];
    }
    false
}

/// Checks the `//!` headers and the `unsafe` rule on every `.rs` file.
pub(crate) fn check_files(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for path in rust_files(root)? {
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !starts_with_inner_doc(&text) {
            problems.push(format!(
                "{}: does not start with a `//!` line",
                rel.display()
            ));
        }
        // The probe is test tooling that must issue raw syscalls (to see what
        // seccomp blocks); nothing depends on it. Every kiln crate but sys is
        // held to the rule.
        let may_be_unsafe = rel.starts_with("crates/sys") || rel.starts_with("tests/probe");
        if !may_be_unsafe && has_unsafe_token(&strip_comments_and_strings(&text)) {
            problems.push(format!(
                "{}: contains `unsafe`; only kiln-sys (crates/sys) may",
                rel.display()
            ));
        }
    }
    Ok(problems)
}

/// Runs every check and returns the problems found.
pub(crate) fn problems() -> Result<Vec<String>> {
    let root = util::workspace_root();
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .context("cannot read ARCHITECTURE.md")?;
    let map = parse_codemap(&arch)?;
    let meta = util::metadata(true)?;
    let mut problems = check_edges(&map, &meta);
    problems.extend(check_files(&root)?);
    Ok(problems)
}

/// `cargo xtask tidy`.
pub(crate) fn main() -> Result<()> {
    let problems = problems()?;
    if problems.is_empty() {
        eprintln!("tidy: ok");
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        let problems = problems().expect("tidy checks run");
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    const TABLE: &str = "# x\n\n## Codemap\n\n| layer | crate (dir) | one job | may depend on (kiln crates) |\n|---|---|---|---|\n| 0 | `kiln-sys` (`crates/sys`) | s | none |\n| 1 | `kiln-layer` (`crates/layer`) | l | sys |\n| 2 | `kiln-image` (`crates/image`) | i | sys, layer |\n| 2 | `kiln-snap` (`crates/snap`) | n | layer, sys (tests) |\n| 4 | `kiln` (`crates/cli`) | c | anything |\n| tooling | `xtask`, `fuzz/` (own), `tests/e2e` (`kiln-e2e`) | | anything; nothing depends on them |\n\n## Other\n| 9 | `kiln-nope` | x | none |\n";

    #[test]
    fn parses_the_codemap_table() {
        let map = parse_codemap(TABLE).unwrap();
        assert_eq!(map.crates.len(), 5);
        assert_eq!(
            map.crates["kiln-snap"],
            Allowed::Only(["kiln-layer", "kiln-sys#dev"].map(String::from).into())
        );
        assert_eq!(map.crates["kiln-sys"], Allowed::Only(BTreeSet::new()));
        assert_eq!(
            map.crates["kiln-image"],
            Allowed::Only(["kiln-sys", "kiln-layer"].map(String::from).into())
        );
        assert_eq!(map.crates["kiln"], Allowed::Anything);
        assert!(map.tooling.contains("xtask") && map.tooling.contains("kiln-e2e"));
        assert!(!map.crates.contains_key("kiln-nope"));
    }

    fn pkg(name: &str, deps: &[&str]) -> serde_json::Value {
        pkg_kind(name, deps, None)
    }

    fn pkg_kind(name: &str, deps: &[&str], kind: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "dependencies": deps.iter().map(|d| serde_json::json!({"name": d, "path": "/x", "kind": kind})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn flags_edges_not_in_the_table() {
        let map = parse_codemap(TABLE).unwrap();
        let meta = serde_json::json!({ "packages": [
            pkg("kiln-sys", &[]),
            pkg("kiln-layer", &["kiln-sys", "kiln-image"]),
            pkg("kiln-image", &["kiln-layer"]),
            pkg("kiln", &["kiln-image", "kiln-sys"]),
            pkg("kiln-e2e", &["kiln"]),
            pkg("xtask", &[]),
            pkg("kiln-extra", &[]),
            pkg("kiln-image2", &["kiln-e2e"]),
            pkg_kind("kiln-snap", &["kiln-sys"], Some("dev")),
        ]});
        let problems = check_edges(&map, &meta);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`kiln-layer` -> `kiln-image`")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`kiln-extra` is not in")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`kiln-image2` is not in")),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn a_tests_only_entry_allows_a_dev_edge_and_nothing_else() {
        let map = parse_codemap(TABLE).unwrap();
        for (kind, allowed) in [(Some("dev"), true), (None, false), (Some("build"), false)] {
            let meta = serde_json::json!({ "packages": [
                pkg("kiln-sys", &[]),
                pkg_kind("kiln-snap", &["kiln-sys"], kind),
            ]});
            let problems = check_edges(&map, &meta);
            assert_eq!(problems.is_empty(), allowed, "{kind:?}: {problems:?}");
        }
    }

    #[test]
    fn inner_doc_header() {
        assert!(starts_with_inner_doc("//! x\nfn main() {}"));
        assert!(starts_with_inner_doc("\n\n//! x"));
        assert!(!starts_with_inner_doc("// x\n//! y"));
        assert!(!starts_with_inner_doc("#![no_main]\n//! y"));
        assert!(!starts_with_inner_doc(""));
    }

    #[test]
    fn unsafe_outside_comments_and_strings() {
        let found = |s: &str| has_unsafe_token(&strip_comments_and_strings(s));
        assert!(found("fn f() { unsafe { g() } }"));
        assert!(found("pub unsafe fn f() {}"));
        assert!(found("fn f<'a>(x: &'a u8) { let c = 'x'; unsafe { g() } }"));
        assert!(!found("#![forbid(unsafe_code)]"));
        assert!(!found(
            "// unsafe\n/* unsafe /* nested */ unsafe */ fn f() {}"
        ));
        assert!(!found(
            r##"let s = "unsafe"; let r = r#"unsafe "# ; let b = b"unsafe";"##
        ));
        assert!(!found(
            r#"let q = '"'; let s = "\"unsafe\""; let e = '\'';"#
        ));
        assert!(!found("let not_unsafe = 1; let unsafely = 2;"));
    }
}
