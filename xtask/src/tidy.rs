//! `cargo xtask tidy` and its `#[test]`: the architecture and style rules
//! that a machine can check.
//!
//! - Every kiln-internal dependency edge (normal, build and dev) is allowed
//!   by the codemap table of `ARCHITECTURE.md` (an entry `x (tests)` allows
//!   a dev-dependency only), parsed from the file itself
//!   so the check and the document cannot drift; nothing depends on the
//!   tooling packages; every workspace package is in the table.
//! - Every `.rs` file starts with a `//!` line.
//! - No command module of the CLI (`crates/cli/src/*_cmd.rs`) uses another.
//! - No crate but kiln-sys contains the token `unsafe` outside comments and
//!   string literals.
//! - Containment (issue #11): the builder (`crates/builder/src`) and the
//!   engine's build backend (`crates/engine/src/build_backend.rs`) touch no file by a
//!   host path (`std::fs` functions, path opens, `filetime`'s path setters,
//!   `Path` methods that hit the disk, `Path::join`) outside the functions
//!   of [`CONTAINMENT_ALLOWED`], each of which works only on kiln's own
//!   files and says why. Contexts, rootfs trees, stages and upper dirs go
//!   through kiln-fs's `Root`.
//! - No function in `crates/` is longer than [`MAX_FN_LINES`] lines (its
//!   `fn` line to its closing brace; tests and test modules left out),
//!   except those of [`LONG_FN_ALLOWED`], each with its reason.

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
            // A crate's dev-dependency on itself only turns on its own
            // features (`testing`) for its integration tests.
            if !names.contains(dep_name) || dep["path"].is_null() || dep_name == name {
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
/// keeping the code tokens (lifetimes stay) and every line break, so that
/// line numbers in the result are those of the source.
pub(crate) fn strip_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = skip_region(&c, i).min(c.len());
        if next > i {
            let removed: String = c[i..next].iter().collect();
            out.push_str(region_replacement(&removed));
            out.extend(std::iter::repeat_n('\n', removed.matches('\n').count()));
            i = next;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// What a removed region becomes in the stripped code.
fn region_replacement(removed: &str) -> &'static str {
    if removed.starts_with("//") {
        ""
    } else if removed.starts_with("/*") {
        " "
    } else if removed.starts_with('\'') {
        "' '"
    } else {
        "\"\""
    }
}

/// The end of the comment or literal starting at `i`, or `i` when none
/// starts there (a lifetime or label is code).
fn skip_region(c: &[char], i: usize) -> usize {
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ch = c[i];
    if ch == '/' && at(i + 1) == '/' {
        let mut j = i;
        while j < c.len() && c[j] != '\n' {
            j += 1;
        }
        j
    } else if ch == '/' && at(i + 1) == '*' {
        let mut depth = 1;
        let mut j = i + 2;
        while j < c.len() && depth > 0 {
            if c[j] == '/' && at(j + 1) == '*' {
                depth += 1;
                j += 2;
            } else if c[j] == '*' && at(j + 1) == '/' {
                depth -= 1;
                j += 2;
            } else {
                j += 1;
            }
        }
        j
    } else if (ch == 'r' || (ch == 'b' && at(i + 1) == 'r') || (ch == 'c' && at(i + 1) == 'r'))
        && !prev_is_ident(c, i)
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
        while j < c.len() {
            if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                return j + 1 + hashes;
            }
            j += 1;
        }
        j
    } else if ch == '"' {
        let mut j = i + 1;
        while j < c.len() && c[j] != '"' {
            if c[j] == '\\' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    } else if ch == '\'' {
        if at(i + 1) == '\\' {
            // an escaped char literal: skip to the closing quote
            let mut j = i + 2;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            j + 1
        } else if at(i + 2) == '\'' {
            i + 3
        } else {
            i // a lifetime or label
        }
    } else {
        i
    }
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

/// The files the containment rule covers: every non-test source of the
/// builder, and the engine's build backend.
const CONTAINMENT_FILES: &[&str] = &["crates/builder/src", "crates/engine/src/build_backend.rs"];

/// Test-only files of the builder (compiled under `#[cfg(test)]` only).
const CONTAINMENT_TEST_FILES: &[&str] =
    &["crates/builder/src/tests.rs", "crates/builder/src/fake.rs"];

/// Functions (file, function name; `*` for a whole file) allowed to use
/// host paths, with the reason: each touches only kiln's own files (its
/// store, a download it made, a path the user named), never a tree an
/// image, a context or a build step controls. An entry that no longer
/// matches a use is itself a problem, so the list stays exact.
pub(crate) const CONTAINMENT_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "crates/builder/src/cache.rs",
        "*",
        "JsonCache: kiln's own cache directory",
    ),
    (
        "crates/builder/src/index.rs",
        "load",
        "the file index is kiln's own file in its store",
    ),
    (
        "crates/builder/src/index.rs",
        "save",
        "the file index is kiln's own file in its store",
    ),
    (
        "crates/builder/src/index.rs",
        "hash_own_file",
        "hashes a download kiln wrote into its own download directory",
    ),
    (
        "crates/builder/src/context.rs",
        "read_dockerfile_ignore",
        "`<Dockerfile>.dockerignore` sits next to the Dockerfile the user named, read like the Dockerfile itself",
    ),
    (
        "crates/builder/src/copy.rs",
        "remove_downloads",
        "removes ADD's downloads and git checkouts from kiln's own download directory",
    ),
    (
        "crates/builder/src/copy.rs",
        "clone_git",
        "creates kiln's own download directory and names the checkout in it",
    ),
    (
        "crates/builder/src/copy.rs",
        "download",
        "creates kiln's own download directory and names the downloads in it",
    ),
    (
        "crates/builder/src/run.rs",
        "read_secret",
        "reads a secret file the user named with --secret (for env=)",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "cleanup",
        "removes the store's own build/mnt mount points",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "memo_path",
        "names the store's build/resolved records",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "remembered",
        "reads a store build/resolved record",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "remember",
        "writes a store build/resolved record",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "mount",
        "creates the store's build/mnt/<key> mount point (the rootfs is then reached through kiln_fs::Root by the builder)",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "unmount",
        "removes the store's build/mnt/<key> mount point",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "step_mounts",
        "the store's cache-mount directories, and --secret files the user named copied into the step's private tmpfs",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "run_step",
        "the step's scratch directory in the store (build/steps/<id>) and its container state",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "step_etc_files",
        "the step's scratch /etc files in the store, from the host's own /etc/resolv.conf",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "stage_bind",
        "mount points and copies in the step's scratch directory; the bind source itself is opened through kiln_fs::Root",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "overlay_bind",
        "the overlay's upper, work and mount directories in the step's scratch directory",
    ),
    (
        "crates/engine/src/build_backend.rs",
        "secrets_tmpfs",
        "sizes of the --secret files the user named; the step's scratch directory",
    ),
];

/// Items of `std::fs` / `std::os::unix::fs` that are types, traits or act
/// on a descriptor, never on a path.
const FS_ITEMS_WITHOUT_PATHS: &[&str] = &[
    "File",
    "Permissions",
    "Metadata",
    "FileType",
    "MetadataExt",
    "PermissionsExt",
    "FileTypeExt",
    "OpenOptionsExt",
    "fchown",
];

/// Calls that reach the file system by a path (after `fs::` items, which
/// are checked against [`FS_ITEMS_WITHOUT_PATHS`]).
const PATH_CALLS: &[&str] = &[
    "File::open(",
    "File::create(",
    "File::create_new(",
    "File::options(",
    "OpenOptions::new(",
    "filetime::set_file_mtime(",
    "filetime::set_file_atime(",
    "filetime::set_file_times(",
    "filetime::set_symlink_file_times(",
    ".exists()",
    ".try_exists(",
    ".symlink_metadata(",
    ".read_link(",
    ".read_dir(",
    ".canonicalize(",
];

/// The name of the function that encloses byte `pos` of `code`.
fn enclosing_fn(code: &str, pos: usize) -> String {
    let before = &code[..pos];
    let mut search = before.len();
    while let Some(i) = before[..search].rfind("fn ") {
        let ok_before = i == 0
            || !before[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let name: String = before[i + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ok_before && !name.is_empty() {
            return name;
        }
        search = i;
    }
    String::new()
}

/// Whether the argument after a `.join(` is a string literal of
/// separators only (`" "`, `", "`, `"\n"`, `"/"`): joining strings, not
/// paths.
fn separator_join(rest: &str) -> bool {
    let Some(lit) = rest.strip_prefix('"') else {
        return false;
    };
    let Some(end) = lit.find('"') else {
        return false;
    };
    lit[..end].chars().all(|c| !c.is_alphanumeric() || c == 'n') && lit[end + 1..].starts_with(')')
}

/// Host-path file access in one file's source (unit tests at the bottom
/// cut off): (line, what) of each use, sorted.
pub(crate) fn containment_uses(src: &str) -> Vec<(usize, String)> {
    // Unit tests at the bottom set up trees with plain paths on purpose.
    let cut = src.find("#[cfg(test)]\nmod ").unwrap_or(src.len());
    let src = &src[..cut];
    let code = strip_comments_and_strings(src);
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut uses = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = code[from..].find("fs::") {
        let at = from + i;
        from = at + 4;
        if code[..at].chars().next_back().is_some_and(ident) {
            continue; // e.g. `kiln_fs::`
        }
        let rest = &code[at + 4..];
        // `use std::fs::{read, File}`: each imported item counts.
        let items: Vec<String> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(|i| i.trim().chars().take_while(|c| ident(*c)).collect())
                .collect(),
            None => vec![rest.chars().take_while(|c| ident(*c)).collect()],
        };
        for item in items {
            if item.is_empty() || item == "self" || FS_ITEMS_WITHOUT_PATHS.contains(&item.as_str())
            {
                continue;
            }
            uses.push((line_of(at), format!("fs::{item}")));
        }
    }
    for call in PATH_CALLS {
        let mut from = 0;
        while let Some(i) = code[from..].find(call) {
            let at = from + i;
            from = at + call.len();
            if call.starts_with(char::is_alphabetic)
                && code[..at].chars().next_back().is_some_and(ident)
            {
                continue;
            }
            uses.push((line_of(at), call.trim_end_matches('(').to_owned()));
        }
    }
    // `.join(` needs the literal's text, which the stripped code blanks:
    // look at the source line, when the stripped line still has the call
    // (so it is code, not a comment or a string).
    for (n, (line, stripped)) in src.lines().zip(code.lines()).enumerate() {
        if !stripped.contains(".join(") {
            continue;
        }
        let mut from = 0;
        while let Some(i) = line[from..].find(".join(") {
            let at = from + i;
            from = at + 6;
            // `.join()` without an argument is a thread's, not a path's.
            if !line[at + 6..].starts_with(')') && !separator_join(&line[at + 6..]) {
                uses.push((n + 1, "Path::join".to_owned()));
            }
        }
    }
    uses.sort();
    uses
}

/// The name of the function whose body holds line `line` of `code`
/// (stripped): the nearest `fn NAME` at or above it.
fn enclosing_fn_at_line(code: &str, line: usize) -> String {
    let pos: usize = code.split_inclusive('\n').take(line).map(str::len).sum();
    enclosing_fn(code, pos.min(code.len()))
}

/// The containment rule over [`CONTAINMENT_FILES`].
pub(crate) fn check_containment(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for f in CONTAINMENT_FILES {
        let p = root.join(f);
        if p.is_dir() {
            files.extend(rust_files(&p)?);
        } else {
            files.push(p);
        }
    }
    let mut problems = Vec::new();
    let mut used_allowances = BTreeSet::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if CONTAINMENT_TEST_FILES.contains(&rel.as_str()) {
            continue;
        }
        let src = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let stripped = strip_comments_and_strings(&src);
        for (line, what) in containment_uses(&src) {
            let func = enclosing_fn_at_line(&stripped, line);
            let allowed = CONTAINMENT_ALLOWED
                .iter()
                .find(|(f, n, _)| *f == rel && (*n == "*" || *n == func));
            match allowed {
                Some(a) => {
                    used_allowances.insert((a.0, a.1));
                }
                None => problems.push(format!(
                    "{rel}:{line}: `{what}` in `{func}` touches a file by a host path; contexts, rootfs trees, stages and upper dirs go through kiln_fs::Root (ARCHITECTURE.md, Invariants), or add the function to CONTAINMENT_ALLOWED in xtask/src/tidy.rs with the reason it only touches kiln's own files"
                )),
            }
        }
    }
    for (f, n, _) in CONTAINMENT_ALLOWED {
        if !used_allowances.contains(&(*f, *n)) {
            problems.push(format!(
                "CONTAINMENT_ALLOWED lists `{n}` in {f}, which no longer uses a host path: remove the entry"
            ));
        }
    }
    Ok(problems)
}

/// The longest a function in `crates/` may be, in lines from its `fn` line
/// to its closing brace (issue #12: long functions hide their steps; split
/// them into named ones, or pass a context struct instead of many
/// arguments).
pub(crate) const MAX_FN_LINES: usize = 120;

/// Functions (file, name, reason) allowed to exceed [`MAX_FN_LINES`]. An
/// entry whose function is gone or short enough is itself a problem, so
/// the list only shrinks.
pub(crate) const LONG_FN_ALLOWED: &[(&str, &str, &str)] = &[];

/// The end (exclusive) of the brace block opening at byte `open` of
/// stripped `code`.
fn block_end(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Whether the attributes just before byte `pos` of `code` mark test code
/// (`#[test]`, `#[cfg(test)]`, a test framework's `#[..::test]`).
fn test_attribute_before(code: &str, pos: usize) -> bool {
    let mut before = code[..pos].trim_end();
    // Skip visibility and qualifiers (`pub(crate) async`).
    loop {
        let word_start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '(' || c == ')'))
            .map_or(0, |i| i + 1);
        let word = &before[word_start..];
        if ["pub", "async", "const", "extern", "unsafe"]
            .iter()
            .any(|q| word.starts_with(q))
        {
            before = before[..word_start].trim_end();
        } else {
            break;
        }
    }
    while before.ends_with(']') {
        let Some(open) = before.rfind("#[") else {
            break;
        };
        let attr = &before[open..];
        if attr == "#[test]" || attr.ends_with("::test]") || attr.contains("cfg(test)") {
            return true;
        }
        before = before[..open].trim_end();
    }
    false
}

/// `(name, first line, lines)` of every function with a body in `src`,
/// test functions and `#[cfg(test)]` modules left out.
pub(crate) fn function_lengths(src: &str) -> Vec<(String, usize, usize)> {
    let code = strip_comments_and_strings(src);
    let bytes = code.as_bytes();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut skip_until = 0;
    let mut out = Vec::new();
    // Test modules: `#[cfg(test)] mod name {` up to its closing brace.
    let mut test_mods = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("mod ") {
        let at = from + i;
        from = at + 4;
        if code[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let rest = &code[at + 4..];
        let name_len = rest.chars().take_while(|c| ident(*c)).count();
        if !rest[name_len..].trim_start().starts_with('{') || !test_attribute_before(&code, at) {
            continue;
        }
        let open = at + 4 + name_len + rest[name_len..].find('{').unwrap_or(0);
        test_mods.push((at, block_end(bytes, open)));
    }
    let mut from = 0;
    while let Some(i) = code[from..].find("fn ") {
        let at = from + i;
        from = at + 3;
        if at < skip_until || code[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        if test_mods.iter().any(|(s, e)| (*s..*e).contains(&at)) {
            continue;
        }
        let name: String = code[at + 3..].chars().take_while(|c| ident(*c)).collect();
        if name.is_empty() {
            continue;
        }
        // The body starts at the first `{` outside parentheses and
        // brackets; a `;` first means a declaration without a body.
        let mut depth = 0i32;
        let mut open = None;
        for (j, &b) in bytes.iter().enumerate().skip(at + 3) {
            match b {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else {
            continue;
        };
        let end = block_end(bytes, open);
        if test_attribute_before(&code, at) {
            skip_until = end;
            continue;
        }
        let first = line_of(at);
        out.push((name, first, line_of(end.saturating_sub(1)) - first + 1));
    }
    out
}

/// The function-length rule over every non-test source of `crates/`.
pub(crate) fn check_function_length(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for path in rust_files(&root.join("crates"))? {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        // Integration tests and test-only modules.
        if rel
            .split('/')
            .any(|c| c == "tests" || c == "tests.rs" || c == "benches")
        {
            continue;
        }
        let src = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (name, line, lines) in function_lengths(&src) {
            if lines <= MAX_FN_LINES {
                continue;
            }
            match LONG_FN_ALLOWED
                .iter()
                .find(|(f, n, _)| *f == rel && *n == name)
            {
                Some(a) => {
                    used.insert((a.0, a.1));
                }
                None => problems.push(format!(
                    "{rel}:{line}: `{name}` is {lines} lines long (at most {MAX_FN_LINES}): split it into named steps, or add it to LONG_FN_ALLOWED in xtask/src/tidy.rs with the reason"
                )),
            }
        }
    }
    for (f, n, _) in LONG_FN_ALLOWED {
        if !used.contains(&(*f, *n)) {
            problems.push(format!(
                "LONG_FN_ALLOWED lists `{n}` in {f}, which is gone or no longer over {MAX_FN_LINES} lines: remove the entry"
            ));
        }
    }
    Ok(problems)
}

/// The CLI's command modules (`crates/cli/src/*_cmd.rs`) that `src`, the
/// text of command module `own`, uses (`crate::x_cmd`, `super::x_cmd`):
/// a command may use the engine and the CLI's shared helpers, never
/// another command (issue #12: what two commands share belongs below them).
pub(crate) fn cmd_imports(own: &str, src: &str) -> Vec<String> {
    let code = strip_comments_and_strings(src);
    let mut found = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.ends_with("_cmd") && name != own {
                found.insert(name);
            }
        }
    }
    // `use crate::{a_cmd, b}` groups.
    for (i, _) in code.match_indices("crate::{") {
        let group = &code[i + "crate::{".len()..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        for name in group.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.ends_with("_cmd") && name != own {
                found.insert(name.to_owned());
            }
        }
    }
    found.into_iter().collect()
}

/// No `*_cmd` module of the CLI imports another ([`cmd_imports`]).
pub(crate) fn check_cmd_imports(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("crates/cli/src");
    let mut problems = Vec::new();
    for path in rust_files(&dir)? {
        let Some(own) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| s.ends_with("_cmd"))
        else {
            continue;
        };
        let src = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for other in cmd_imports(own, &src) {
            problems.push(format!(
                "crates/cli/src/{own}.rs uses the command module {other}: commands share code through kiln-engine or a CLI helper module, never through another command"
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
    problems.extend(check_containment(&root)?);
    problems.extend(check_function_length(&root)?);
    problems.extend(check_cmd_imports(&root)?);
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
    fn a_crate_may_dev_depend_on_itself() {
        let map = parse_codemap(TABLE).unwrap();
        let meta = serde_json::json!({ "packages": [
            pkg("kiln-sys", &[]),
            pkg_kind("kiln-layer", &["kiln-layer", "kiln-sys"], Some("dev")),
        ]});
        assert_eq!(check_edges(&map, &meta), Vec::<String>::new());
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
    fn containment_finds_host_path_access_and_spares_descriptors() {
        let src = r#"
use std::fs::{self, File, Permissions};
use kiln_fs::{FinalLink, Root};
fn good(root: &Root, f: &std::fs::File) {
    let _ = root.read("etc/passwd");
    std::os::unix::fs::fchown(f, Some(0), Some(0));
    let _ = std::fs::Permissions::from_mode(0o644);
    let s = ["a", "b"].join(", ");
    // fs::write(root.join("x")) in a comment
    let t = "fs::read(p)";
}
fn bad(root: &std::path::Path) {
    let p = root.join("etc/passwd");
    let _ = fs::read_to_string(&p);
    let _ = std::fs::File::open(&p);
    if p.exists() {}
    std::os::unix::fs::symlink("/x", &p);
    filetime::set_symlink_file_times(&p, t, t);
}
use std::fs::{read_to_string, Metadata};
#[cfg(test)]
mod tests {
    fn setup() { std::fs::write("x", "y"); }
}
"#;
        let uses = containment_uses(src);
        assert_eq!(
            uses,
            [
                (13, "Path::join"),
                (14, "fs::read_to_string"),
                (15, "File::open"),
                (16, ".exists()"),
                (17, "fs::symlink"),
                (18, "filetime::set_symlink_file_times"),
                (20, "fs::read_to_string"),
            ]
            .map(|(l, w)| (l, w.to_owned()))
        );
        let code = strip_comments_and_strings(src);
        assert_eq!(enclosing_fn_at_line(&code, 13), "bad");
        assert_eq!(enclosing_fn_at_line(&code, 8), "good");
        assert_eq!(code.lines().count(), src.lines().count());
        assert!(separator_join(r#"" ")"#) && separator_join(r#"", ")"#));
        assert!(!separator_join(r#""etc")"#) && !separator_join("name)"));
    }

    #[test]
    fn function_lengths_count_fn_line_to_closing_brace_and_skip_tests() {
        let src = r#"//! x
pub(crate) fn short(a: [u8; 2]) -> u8 {
    let s = "}";
    a[0]
}
trait T {
    fn declared(&self);
    fn provided(&self) -> impl Fn() -> u8 {
        || { 1 }
    }
}
#[test]
fn a_test() {
    fn inner() {}
}
#[cfg(test)]
mod tests {
    fn helper() {
    }
}
fn after() {}
"#;
        let got = function_lengths(src);
        let got: Vec<(&str, usize, usize)> =
            got.iter().map(|(n, l, c)| (n.as_str(), *l, *c)).collect();
        assert_eq!(got, [("short", 2, 4), ("provided", 8, 3), ("after", 21, 1)]);
    }

    #[test]
    fn a_command_module_may_not_use_another() {
        let src = "//! x\nuse crate::format;\nuse crate::image_cmd::pull;\nfn f() { crate::pause_cmd::go(); super::build_cmd::x(); crate::own_cmd::y(); }\n// crate::gc_cmd in a comment\nconst S: &str = \"crate::str_cmd\";\n";
        assert_eq!(
            cmd_imports("own_cmd", src),
            ["build_cmd", "image_cmd", "pause_cmd"]
        );
        assert_eq!(
            cmd_imports("a_cmd", "use crate::{b_cmd, format};"),
            ["b_cmd"]
        );
        assert!(cmd_imports("a_cmd", "use crate::progress::pull;").is_empty());
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
