//! `kiln parse` end to end: dump, JSON, stdin, BuildKit's 33 parser
//! fixtures byte for byte, instruction-level problems as warnings (exit 0)
//! and syntax errors with exit 1.

use std::io::Write;
use std::process::{Command, Stdio};

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

fn write_temp(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-parse-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write Dockerfile");
    path
}

#[test]
fn prints_buildkit_dump() {
    let path = write_temp(
        "ok",
        "FROM alpine AS b\nRUN --mount=type=cache,target=/c \\\n  make\nCOPY <<EOF /x\nhi\nEOF\n",
    );
    let out = kiln().arg("parse").arg(&path).output().expect("run kiln");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"alpine\" \"AS\" \"b\")\n(run [\"--mount=type=cache,target=/c\"] \"make\")\n(copy \"<<EOF\" \"/x\")\n"
    );
}

#[test]
fn prints_json_with_heredocs_and_lines() {
    let path = write_temp("json", "FROM a\nRUN <<EOF\necho hi\nEOF\nCMD [\"x\"]\n");
    let out = kiln()
        .args(["parse", "--json"])
        .arg(&path)
        .output()
        .expect("run kiln");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let nodes = &v["ast"]["nodes"];
    assert_eq!(nodes[1]["keyword"], "RUN");
    assert_eq!(nodes[1]["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(nodes[1]["start_line"], 2);
    assert_eq!(nodes[1]["end_line"], 4);
    assert_eq!(nodes[2]["json"], true);
    assert_eq!(nodes[2]["args"][0], "x");
}

#[test]
fn reads_stdin() {
    let mut child = kiln()
        .args(["parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run kiln");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"FROM scratch\nENV A=1\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"scratch\")\n(env \"A\" \"1\" \"=\")\n"
    );
}

#[test]
fn invalid_file_exits_1_with_every_diagnostic() {
    // `ENV PATH` is rejected by BuildKit's parser itself (a syntax error);
    // the unknown instruction and FROM's argument count are instruction-level
    // problems, reported as warnings next to it.
    let path = write_temp("bad", "FROM a\nRUNN make\nENV PATH\nFROM a b\n");
    let out = kiln().arg("parse").arg(&path).output().expect("run kiln");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    for line in [
        format!("{p}:2:1: warning: unknown instruction: RUNN (did you mean RUN?)"),
        format!("{p}:3:1: ENV must have two arguments"),
        format!("{p}:4:1: warning: FROM requires either one or three arguments"),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn instruction_level_problems_are_warnings_and_the_tree_is_printed() {
    let path = write_temp(
        "lint",
        "RUN --doit echo hi\nFROM a b\nHEALTHCHECK CONNECT x\n",
    );
    let out = kiln().arg("parse").arg(&path).output().expect("run kiln");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(run [\"--doit\"] \"echo hi\")\n(from \"a\" \"b\")\n(healthcheck \"CONNECT\" \"x\")\n"
    );
    let p = path.display();
    for line in [
        format!("{p}:1:1: warning: "),
        format!("{p}:2:1: warning: FROM requires either one or three arguments"),
        format!("{p}:3:1: warning: "),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
}

/// BuildKit's parser fixtures (crates/dockerfile/test_data, copied from
/// moby/buildkit's frontend/dockerfile/parser/testfiles): `kiln parse` must
/// print each `result` byte for byte and exit 0, whatever instruction-level
/// warnings it reports.
#[test]
fn buildkit_testfiles_print_byte_for_byte() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dockerfile/test_data/buildkit-parser/testfiles");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 33, "fixtures in {}", root.display());
    let mut failures = Vec::new();
    for dir in &dirs {
        let expected = std::fs::read(dir.join("result")).expect("result");
        let out = kiln()
            .arg("parse")
            .arg(dir.join("Dockerfile"))
            .output()
            .expect("run kiln");
        if out.status.code() != Some(0) || out.stdout != expected {
            failures.push(format!(
                "{}: exit {:?}\n--- stderr\n{}--- expected\n{}--- got\n{}",
                dir.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_file_is_an_error_not_a_crash() {
    let out = kiln()
        .args(["parse", "/nonexistent/kiln/Dockerfile"])
        .output()
        .expect("run kiln");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kiln/Dockerfile"));
}
