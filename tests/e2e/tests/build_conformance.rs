//! `kiln build` and `kiln commit` held to Docker's behaviour (issue 15):
//! exit codes, error texts, flags, remote contexts and semantics that
//! scripts depend on. Each test names the moby integration-cli test
//! (Docker 20.10, legacy builder) whose expectation it checks; no Docker
//! daemon runs here, moby's tests are the reference.

use std::path::{Path, PathBuf};
use std::process::Output;

use kiln_e2e::{Sandbox, busybox_ref};

/// Writes `files` (path, content) under `sandbox.work()/name` and returns
/// that directory.
fn context(sandbox: &Sandbox, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = sandbox.work().join(name);
    std::fs::create_dir_all(&dir).expect("context dir");
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("a file has a parent"))
            .unwrap_or_else(|e| panic!("cannot create the parent of {}: {e}", full.display()));
        std::fs::write(&full, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", full.display()));
    }
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs `kiln build ARGS`, whatever the status.
fn build(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .kiln(std::iter::once("build").chain(args.iter().copied()))
        .output()
        .expect("cannot start kiln build")
}

fn streams(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds and asserts success; returns stdout.
fn build_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = build(sandbox, args);
    let (stdout, stderr) = streams(&out);
    assert!(
        out.status.success(),
        "kiln build {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Builds a context made of `files` and asserts the exit code and that
/// stderr contains `err`.
fn build_fails(sandbox: &Sandbox, name: &str, files: &[(&str, &str)], code: i32, err: &str) {
    let ctx = context(sandbox, name, files);
    let out = build(sandbox, &["-t", &format!("test/{name}"), path_str(&ctx)]);
    let (stdout, stderr) = streams(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{name}: exit status\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains(err),
        "{name}: expected {err:?} in stderr:\n{stderr}\nstdout:\n{stdout}"
    );
}

fn from_busybox(rest: &str) -> String {
    format!("FROM {}\n{rest}", busybox_ref())
}

/// TestBuildFails (`RUN sh -c "exit 23"` exits 23 with `returned a
/// non-zero code: 23`) and TestBuildRUNErrMsg (a missing command: 127 and
/// the command quoted as the shell ran it, tab and backslash kept).
#[test]
fn conformance_failed_run_exits_with_the_commands_status() {
    let sandbox = Sandbox::new();
    build_fails(
        &sandbox,
        "exit23",
        &[("Dockerfile", &from_busybox("RUN sh -c \"exit 23\"\n"))],
        23,
        "The command '/bin/sh -c sh -c \"exit 23\"' returned a non-zero code: 23",
    );
    build_fails(
        &sandbox,
        "badexe",
        &[("Dockerfile", &from_busybox("RUN badEXE a1 \\& a2\ta3\n"))],
        127,
        "The command '/bin/sh -c badEXE a1 \\& a2\ta3' returned a non-zero code: 127",
    );
}

/// Docker exits 1 for a failed build, with its texts:
/// TestBuildLineErrorUnknownInstruction / ...WithEmptyLines /
/// TestBuildLineErrorOnBuild (`parse error line N: ...`),
/// TestBuildEmptyStringsInENVLABELARG (`ENV names can not be blank`),
/// TestBuildEmptyScratch (`No image was generated`), TestBuildAddFileNotFound
/// (`stat foo: file does not exist`), TestBuildMultiStageCopyFromErrors
/// (`invalid from flag value foo`, `... 0: refers to current build stage`),
/// TestBuildDockerignoringBadExclusion (`illegal exclusion pattern: "!"`),
/// TestBuildShellNotJSON, TestBuildEmptyStringVolume.
#[test]
fn conformance_dockerfile_errors_exit_1_with_dockers_texts() {
    let sandbox = Sandbox::new();
    let cases: &[(&str, String, &str)] = &[
        (
            "unknowninstr",
            from_busybox("  RUN echo hello world\n  NOINSTRUCTION echo ba\n  RUN echo hello\n"),
            "parse error line 3: unknown instruction: NOINSTRUCTION",
        ),
        (
            "emptylines",
            format!(
                "\n  FROM {}\n\n  RUN echo hello world\n\n  NOINSTRUCTION echo ba\n\n  CMD [\"/bin/init\"]\n",
                busybox_ref()
            ),
            "parse error line 6: unknown instruction: NOINSTRUCTION",
        ),
        (
            "onbuildempty",
            from_busybox("  ONBUILD\n"),
            "parse error line 2: ONBUILD requires at least one argument",
        ),
        (
            "envblank",
            from_busybox("ENV =\n"),
            "ENV names can not be blank",
        ),
        (
            "emptyscratch",
            "FROM scratch\n".into(),
            "No image was generated. Is your Dockerfile empty?",
        ),
        (
            "addmissing",
            from_busybox("ADD foo /usr/local/bar\n"),
            "ADD failed: file not found in build context or excluded by .dockerignore: stat foo: file does not exist",
        ),
        (
            "copymissing",
            from_busybox("COPY foo /usr/local/bar\n"),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat foo: file does not exist",
        ),
        (
            "copyfromfoo",
            from_busybox("COPY --from=foo foo bar\n"),
            "invalid from flag value foo: ",
        ),
        (
            "copyfromself",
            from_busybox("COPY --from=0 foo bar\n"),
            "invalid from flag value 0: refers to current build stage",
        ),
        (
            "shellnotjson",
            from_busybox("sHeLl exec -form\n"),
            "SHELL requires the arguments to be in JSON form",
        ),
        (
            "emptyvolume",
            from_busybox("ENV foo=\"\"\nVOLUME $foo\n"),
            "VOLUME specified can not be an empty string",
        ),
    ];
    for (name, dockerfile, err) in cases {
        build_fails(
            &sandbox,
            name,
            &[("Dockerfile", dockerfile), ("bar", "hello")],
            1,
            err,
        );
    }
    // kiln's own location stays next to Docker's line.
    let ctx = sandbox.work().join("unknowninstr");
    let out = build(&sandbox, &[path_str(&ctx)]);
    let (_, stderr) = streams(&out);
    assert!(
        stderr.contains("Dockerfile:3:3: unknown instruction: NOINSTRUCTION"),
        "{stderr}"
    );

    build_fails(
        &sandbox,
        "badexclusion",
        &[
            ("Dockerfile", &from_busybox("COPY . /\n")),
            ("Makefile", "all:"),
            (".dockerignore", "!\n"),
        ],
        1,
        "illegal exclusion pattern: \"!\"",
    );
}

/// Bad flag values and a missing context are build failures (exit 1), as in
/// TestBuildDockerfileStdinConflict (`-f -` with the context on stdin:
/// `use stdin for both build context and dockerfile`).
#[test]
fn conformance_bad_values_and_contexts_exit_1() {
    let sandbox = Sandbox::new();
    let ctx = context(&sandbox, "ok", &[("Dockerfile", &from_busybox(""))]);
    for (args, err) in [
        (
            vec!["--progress", "fancy", path_str(&ctx)],
            "invalid --progress",
        ),
        (vec!["--network", "bridge", path_str(&ctx)], "bridge"),
        (
            vec!["/nonexistent/kiln/context"],
            "/nonexistent/kiln/context",
        ),
        (
            vec!["-f", "-", "-"],
            "use stdin for both build context and dockerfile",
        ),
    ] {
        let out = build(&sandbox, &args);
        let (stdout, stderr) = streams(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(err), "{args:?}: {err:?} not in\n{stderr}");
    }
}

/// TestBuildInvalidTag: a bad `-t` is refused before building, exit 125,
/// `invalid reference format`; unknown flags and commands are usage errors
/// (125, Docker's code for its CLI's own errors).
#[test]
fn conformance_usage_errors_exit_125() {
    let sandbox = Sandbox::new();
    let ctx = context(&sandbox, "ok", &[("Dockerfile", &from_busybox(""))]);
    let tag = format!("abcd:{}", "a".repeat(200));
    for args in [
        vec!["build", "-t", &tag, path_str(&ctx)],
        vec!["build", "-t", "Upper/Case", path_str(&ctx)],
        vec!["build", "--no-such-flag", path_str(&ctx)],
        vec!["no-such-command"],
    ] {
        let out = sandbox.kiln(&args).output().expect("run kiln");
        let (stdout, stderr) = streams(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}\n{stdout}\n{stderr}");
        if args.len() > 2 && args[1] == "-t" {
            assert!(stderr.contains("invalid reference format"), "{stderr}");
        }
    }
}

/// Docker's first line of a build is `Sending build context to Docker
/// daemon  <size>` (docker/cli, go-units' HumanSize of the context tar),
/// before `Step 1/N`; `.dockerignore`d files are not sent; `-q` prints only
/// the ID.
#[test]
fn conformance_build_prints_the_context_size_first() {
    let sandbox = Sandbox::new();
    let big = "x".repeat(100_000);
    let ctx = context(
        &sandbox,
        "sending",
        &[
            ("Dockerfile", &from_busybox("COPY small /small\n")),
            ("small", "hello\n"),
            ("big", &big),
            (".dockerignore", "big\n"),
        ],
    );
    let out = build_ok(&sandbox, &["-t", "test/sending", path_str(&ctx)]);
    let first = out.lines().next().expect("a first line");
    // Dockerfile, small and .dockerignore: three headers and three padded
    // data blocks, plus the two closing blocks = 4.096kB.
    assert_eq!(
        first, "Sending build context to Docker daemon  4.096kB",
        "{out}"
    );
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("Step 1/2 : FROM ")),
        "{out}"
    );
    std::fs::write(ctx.join(".dockerignore"), "").expect("write");
    let out = build_ok(&sandbox, &["-t", "test/sending", path_str(&ctx)]);
    let first = out.lines().next().expect("a first line");
    // Plus the 100,000-byte file: 104,960 bytes, `%.4g` gives `105kB`,
    // right-aligned in eight columns.
    assert_eq!(
        first, "Sending build context to Docker daemon    105kB",
        "{out}"
    );
    let quiet = build_ok(&sandbox, &["-q", path_str(&ctx)]);
    assert_eq!(quiet.lines().count(), 1, "{quiet}");
    assert!(quiet.starts_with("sha256:"), "{quiet}");
}

/// TestBuildIidFileCleanupOnFail: an existing `--iidfile` is removed when
/// the build fails; TestBuildIidFile: it holds the image ID on success.
#[test]
fn conformance_iidfile_removed_when_the_build_fails() {
    let sandbox = Sandbox::new();
    let iid = sandbox.work().join("iid");
    std::fs::write(&iid, "Dummy").expect("write");
    let bad = context(
        &sandbox,
        "iidbad",
        &[("Dockerfile", "FROM scratch\nRUN /non/existing/command\n")],
    );
    let out = build(&sandbox, &["--iidfile", path_str(&iid), path_str(&bad)]);
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(!iid.exists(), "the old image ID file was left");
    let good = context(
        &sandbox,
        "iidgood",
        &[("Dockerfile", &from_busybox("ENV BAR BAZ\n"))],
    );
    build_ok(
        &sandbox,
        &[
            "-t",
            "test/iid",
            "--iidfile",
            path_str(&iid),
            path_str(&good),
        ],
    );
    let id = std::fs::read_to_string(&iid).expect("iidfile");
    let inspect = sandbox.kiln_ok(["inspect", "test/iid"]);
    assert!(id.starts_with("sha256:") && inspect.contains(&id), "{id}");
}

/// TestBuildDockerignoringBOM (a `.dockerignore` starting with a UTF-8 BOM
/// still excludes its first pattern) and TestBuildFromLowerCaseDockerfile /
/// docker/cli's fallback to `dockerfile` when `Dockerfile` is missing.
#[test]
fn conformance_dockerignore_bom_and_lowercase_dockerfile() {
    let sandbox = Sandbox::new();
    let ctx = context(
        &sandbox,
        "bom",
        &[
            (
                "Dockerfile",
                &from_busybox(
                    "COPY . /tmp/\nRUN sh -c \"[ ! -e /tmp/Dockerfile ]\"\nRUN sh -c \"[ ! -e /tmp/.dockerignore ]\"\nRUN sh -c \"[ -f /tmp/keep ]\"\n",
                ),
            ),
            (".dockerignore", "\u{feff}Dockerfile\n.dockerignore\n"),
            ("keep", "k"),
        ],
    );
    build_ok(&sandbox, &["-t", "test/bom", path_str(&ctx)]);

    let lower = context(
        &sandbox,
        "lower",
        &[("dockerfile", &from_busybox("LABEL lower=yes\n"))],
    );
    build_ok(&sandbox, &["-t", "test/lower", path_str(&lower)]);
    let inspect = sandbox.kiln_ok(["inspect", "test/lower"]);
    assert!(inspect.contains("\"lower\": \"yes\""), "{inspect}");
}
