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
/// TestBuildShellNotJSON, TestBuildEmptyStringVolume,
/// TestBuildVolumeFileExistsinContainer (`VOLUME` over a file: `file exists`).
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
            "volumeoverfile",
            from_busybox("COPY bar /foo\nVOLUME /foo\n"),
            "file exists",
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
    // Now with the 100,000-byte file (512 + 100,352 bytes) and an empty
    // .dockerignore (a header only): 104,448 bytes, `%.4g` gives `104.4kB`.
    assert_eq!(
        first, "Sending build context to Docker daemon  104.4kB",
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
        // Moby's test runs `/non/existing/command` on scratch, where Docker
        // cannot even start the step (no /bin/sh): exit 1. kiln reports a
        // shell that cannot be found as status 127, as `kiln run` does, so
        // the failing step here is one that runs and exits 1.
        &[("Dockerfile", &from_busybox("RUN /bin/false\n"))],
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

/// A tiny HTTP/1.0 server on 127.0.0.1 serving `files` (path → body) to
/// any number of GETs, 404 for anything else; runs until the test ends.
fn http_server(files: Vec<(String, Vec<u8>)>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
            let reply = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let mut r = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    port
}

fn inspect_json(sandbox: &Sandbox, name: &str) -> serde_json::Value {
    let out = sandbox.kiln_ok(["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("kiln inspect printed no JSON ({e}): {out}"));
    v[0].clone()
}

/// Legacy-builder flags: `--add-host` lines in the RUN steps' /etc/hosts
/// (TestBuildAddHost... / docker/cli's ValidateExtraHost: a bad value is a
/// usage error, 125, TestBuildAddHostInvalid), `--label KEY` (an empty
/// label, docker/cli's ConvertKVStringsToMap), `--rm` and `--force-rm`
/// accepted (TestBuildForceRm, TestBuildRm), `--cgroup-parent`
/// (TestBuildCgroupParent: the step's cgroup is created under it).
#[test]
fn conformance_legacy_builder_flags() {
    let sandbox = Sandbox::new();
    let ctx = context(
        &sandbox,
        "flags",
        &[(
            "Dockerfile",
            &from_busybox("RUN cat /etc/hosts > /hosts.txt\nCMD [\"cat\", \"/hosts.txt\"]\n"),
        )],
    );
    let parent = format!("kiln-e2e-cgparent-{}", std::process::id());
    build_ok(
        &sandbox,
        &[
            "-t",
            "test/flags",
            "--add-host",
            "extra.example:10.1.2.3",
            "--add-host=v6.example:2001:db8::1",
            "--label",
            "empty",
            "--label",
            "full=yes",
            "--rm",
            "--force-rm",
            "--cgroup-parent",
            &format!("/{parent}"),
            path_str(&ctx),
        ],
    );
    let hosts = sandbox.kiln_ok(["run", "--rm", "test/flags"]);
    assert!(hosts.contains("10.1.2.3\textra.example\n"), "{hosts}");
    assert!(hosts.contains("2001:db8::1\tv6.example\n"), "{hosts}");
    let image = inspect_json(&sandbox, "test/flags");
    assert_eq!(image["Config"]["Labels"]["empty"], "", "{image}");
    assert_eq!(image["Config"]["Labels"]["full"], "yes", "{image}");
    // The step's cgroup was made under the parent (its own directory is
    // gone with the step; the parent stays, as with Docker).
    let mut made = Vec::new();
    for base in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
    ] {
        let dir = Path::new(base).join(&parent);
        if dir.is_dir() {
            made.push(dir);
        }
    }
    for dir in &made {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(!made.is_empty(), "no cgroup {parent} was created");

    for (bad, err) in [
        ("foo", "bad format for add-host: \"foo\""),
        (":127.0.0.1", "bad format for add-host"),
        (
            "foo:101.10.2",
            "invalid IP address in add-host: \"101.10.2\"",
        ),
        ("foo:2001::1::3F", "invalid IP address in add-host"),
    ] {
        let out = build(&sandbox, &["--add-host", bad, path_str(&ctx)]);
        let (_, stderr) = streams(&out);
        assert_eq!(out.status.code(), Some(125), "--add-host {bad}: {stderr}");
        assert!(stderr.contains(err), "--add-host {bad}: {stderr}");
    }
    let out = build(&sandbox, &["--rm=false", path_str(&ctx)]);
    let (_, stderr) = streams(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--rm=false is not supported"), "{stderr}");
}

/// A `git daemon` on 127.0.0.1 serving the repositories under `base`,
/// killed on drop.
struct GitDaemon(std::process::Child);

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_in(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=kiln", "-c", "user.email=kiln@test"])
        .args(args)
        .output()
        .expect("cannot run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Remote contexts: a git repository at a ref and subdirectory
/// (TestBuildFromGitWithContext: `repo.git#ref:subdir`), `-f` inside it
/// (TestBuildFromGitWithF), a tarball over HTTP with `-f` naming a file in
/// it (TestBuildFromRemoteTarball), and a missing `git`
/// (TestBuildFailsGitNotCallable: `unable to prepare context: unable to
/// find 'git': `).
#[test]
fn conformance_remote_contexts() {
    let sandbox = Sandbox::new();
    let base = sandbox.work().join("git");
    let repo = base.join("repo.git");
    std::fs::create_dir_all(repo.join("sub")).expect("mkdir repo");
    git_in(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("sub/Dockerfile"),
        from_busybox("COPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
    )
    .expect("write");
    std::fs::write(repo.join("sub/hello.txt"), "from v1\n").expect("write");
    std::fs::write(
        repo.join("sub/Dockerfile.other"),
        from_busybox("LABEL other=yes\n"),
    )
    .expect("write");
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-q", "-m", "one"]);
    git_in(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("sub/hello.txt"), "from main\n").expect("write");
    git_in(&repo, &["commit", "-q", "-am", "two"]);
    let port = kiln_e2e::free_port();
    let exec_path = kiln_e2e::run_ok(std::process::Command::new("git").arg("--exec-path"));
    let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
    let daemon = GitDaemon(
        std::process::Command::new(exec_path.join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start git daemon"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("git://127.0.0.1:{port}/repo.git");
    build_ok(
        &sandbox,
        &["-t", "test/gitctx:v1", &format!("{url}#v1:sub")],
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/gitctx:v1"]),
        "from v1\n"
    );
    build_ok(
        &sandbox,
        &["-t", "test/gitctx:main", &format!("{url}#:sub")],
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/gitctx:main"]),
        "from main\n"
    );
    build_ok(
        &sandbox,
        &["-t", "test/gitctx:f", "-f", "sub/Dockerfile.other", &url],
    );
    let image = inspect_json(&sandbox, "test/gitctx:f");
    assert_eq!(image["Config"]["Labels"]["other"], "yes", "{image}");
    // A subdirectory that leaves the repository is refused.
    let out = build(&sandbox, &[&format!("{url}#main:../..")]);
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    drop(daemon);

    // No git on PATH.
    let out = sandbox
        .kiln(["build", &format!("{url}#v1:sub")])
        .env("PATH", "")
        .output()
        .expect("run kiln");
    let (_, stderr) = streams(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unable to prepare context: unable to find 'git': "),
        "{stderr}"
    );

    // A gzip tarball over HTTP; -f names a file inside it.
    let tree = context(
        &sandbox,
        "tarball",
        &[
            ("ctx/hello.txt", "from the tarball\n"),
            (
                "ctx/build/Dockerfile.web",
                &from_busybox("COPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
            ),
        ],
    );
    let tgz = tree.join("ctx.tar.gz");
    kiln_e2e::run_ok(
        std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(tree.join("ctx"))
            .arg("."),
    );
    let port = http_server(vec![(
        "/context.tar.gz".into(),
        std::fs::read(&tgz).expect("read tarball"),
    )]);
    build_ok(
        &sandbox,
        &[
            "-t",
            "test/tarctx",
            "-f",
            "build/Dockerfile.web",
            &format!("http://127.0.0.1:{port}/context.tar.gz"),
        ],
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/tarctx"]),
        "from the tarball\n"
    );
    let out = build(
        &sandbox,
        &[&format!("http://127.0.0.1:{port}/missing.tar.gz")],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
}

/// Semantics: TestBuildJSONEmptyRun (`RUN []` builds), TestBuildEscapeWhitespace
/// (MAINTAINER keeps its quotes in Author), TestBuildBuildTimeArgUnconsumedArg
/// (every unused build-arg listed, a bare `--build-arg NAME` too), `--no-cache`
/// giving a new image ID each time (Created has nanoseconds), a built image
/// not inheriting its base's Comment, and `ADD --checksum` naming the checksum.
#[test]
fn conformance_build_semantics() {
    let sandbox = Sandbox::new();
    let ctx = context(
        &sandbox,
        "semantics",
        &[(
            "Dockerfile",
            &from_busybox("RUN []\nMAINTAINER \"Docker IO <io@docker.com>\"\nARG USED\n"),
        )],
    );
    let out = sandbox
        .kiln([
            "build",
            "-t",
            "test/semantics",
            "--build-arg",
            "USED=1",
            "--build-arg",
            "ZED=2",
            "--build-arg",
            "KILN_E2E_SURELY_UNSET",
            path_str(&ctx),
        ])
        .env_remove("KILN_E2E_SURELY_UNSET")
        .output()
        .expect("run kiln");
    let (stdout, stderr) = streams(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "[Warning] One or more build-args [KILN_E2E_SURELY_UNSET ZED] were not consumed"
        ),
        "{stdout}"
    );
    let image = inspect_json(&sandbox, "test/semantics");
    assert_eq!(image["Author"], "\"Docker IO <io@docker.com>\"", "{image}");

    let id = |out: String| out.trim().to_owned();
    let a = id(build_ok(&sandbox, &["-q", "--no-cache", path_str(&ctx)]));
    let b = id(build_ok(&sandbox, &["-q", "--no-cache", path_str(&ctx)]));
    assert_ne!(a, b, "two --no-cache builds gave the same image");
    let created = inspect_json(&sandbox, &b)["Created"]
        .as_str()
        .expect("Created")
        .to_owned();
    assert!(created.contains('.'), "no fraction of a second: {created}");

    // A base with a comment (kiln commit -m): the built image has none.
    sandbox.kiln_ok(["create", "--name", "commented", &busybox_ref(), "true"]);
    sandbox.kiln_ok([
        "commit",
        "-m",
        "a base comment",
        "commented",
        "test/commented",
    ]);
    assert_eq!(
        inspect_json(&sandbox, "test/commented")["Comment"],
        "a base comment"
    );
    let child = context(
        &sandbox,
        "child",
        &[("Dockerfile", "FROM test/commented\nLABEL child=1\n")],
    );
    build_ok(&sandbox, &["-t", "test/child", path_str(&child)]);
    assert_eq!(
        inspect_json(&sandbox, "test/child")["Comment"],
        "",
        "child inherits no comment"
    );

    let port = http_server(vec![("/file.txt".into(), b"payload\n".to_vec())]);
    let want = format!("sha256:{}", "0".repeat(64));
    build_fails(
        &sandbox,
        "checksum",
        &[(
            "Dockerfile",
            &from_busybox(&format!(
                "ADD --checksum={want} http://127.0.0.1:{port}/file.txt /file.txt\n"
            )),
        )],
        1,
        &format!(
            "checksum mismatch for http://127.0.0.1:{port}/file.txt: expected {want}, got sha256:"
        ),
    );
}

/// `kiln pause` / `kiln unpause` (docker_cli_pause_test.go: a paused
/// container's processes stop, unpausing resumes them; pausing twice or
/// unpausing a running one is an error) and `kiln commit`
/// (docker_cli_commit_test.go: TestCommitPausedContainer /
/// TestCommitWhileRunning — the commit pauses by default and the container
/// runs on after it, unpaused; TestCommitChange — `--change "LABEL foo
/// bar"`, the space form).
#[test]
fn conformance_pause_unpause_and_commit() {
    let sandbox = Sandbox::new();
    let run = sandbox.kiln_ok([
        "run",
        "-d",
        "--name",
        "ticker",
        &busybox_ref(),
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done",
    ]);
    assert!(!run.trim().is_empty(), "{run}");
    let count = || {
        let out = sandbox.kiln_ok(["exec", "ticker", "cat", "/tmp/n"]);
        out.trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{out:?}: {e}"))
    };
    let pause = std::time::Duration::from_millis(400);
    std::thread::sleep(pause);
    let a = count();
    std::thread::sleep(pause);
    assert!(count() > a, "the loop runs");

    assert_eq!(sandbox.kiln_ok(["pause", "ticker"]), "ticker\n");
    let frozen = count();
    std::thread::sleep(pause);
    assert_eq!(count(), frozen, "a paused container does not run");
    let out = sandbox
        .kiln(["pause", "ticker"])
        .output()
        .expect("run kiln");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(
        streams(&out).1.contains("is already paused"),
        "{:?}",
        streams(&out)
    );

    // Committing a paused container leaves it paused.
    sandbox.kiln_ok(["commit", "ticker", "test/ticker:paused"]);
    std::thread::sleep(pause);
    assert_eq!(count(), frozen, "still paused after the commit");

    assert_eq!(sandbox.kiln_ok(["unpause", "ticker"]), "ticker\n");
    std::thread::sleep(pause);
    let resumed = count();
    assert!(resumed > frozen, "unpaused: the loop runs again");
    let out = sandbox
        .kiln(["unpause", "ticker"])
        .output()
        .expect("run kiln");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(
        streams(&out).1.contains("is not paused"),
        "{:?}",
        streams(&out)
    );

    // A commit while it runs pauses it for the commit only.
    sandbox.kiln_ok([
        "commit",
        "--change",
        "LABEL foo bar",
        "--change",
        "LABEL two=2",
        "ticker",
        "test/ticker:running",
    ]);
    std::thread::sleep(pause);
    assert!(count() > resumed, "the container runs on after the commit");
    let labels = inspect_json(&sandbox, "test/ticker:running")["Config"]["Labels"].clone();
    assert_eq!(labels["foo"], "bar", "{labels}");
    assert_eq!(labels["two"], "2", "{labels}");
    sandbox.kiln_ok(["commit", "--pause=false", "ticker", "test/ticker:nopause"]);
    sandbox.kiln_ok(["rm", "-f", "ticker"]);

    // A container that is not running cannot be paused.
    sandbox.kiln_ok(["create", "--name", "idle", &busybox_ref(), "true"]);
    let out = sandbox.kiln(["pause", "idle"]).output().expect("run kiln");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(
        streams(&out).1.contains("is not running"),
        "{:?}",
        streams(&out)
    );
}

/// BuildKit (frontend/dockerfile/dockerfile2llb/convert_runmount.go): a
/// `RUN --mount` without `target` (bind, cache) is mounted at the working
/// directory, as moby/buildkit's own Dockerfile relies on; a relative
/// target is relative to it.
#[test]
fn conformance_run_mount_without_target_is_the_workdir() {
    let sandbox = Sandbox::new();
    let ctx = context(
        &sandbox,
        "mountnotarget",
        &[
            (
                "Dockerfile",
                &from_busybox(
                    "WORKDIR /app\nRUN --mount=type=bind ls /app > /bind.txt\nRUN --mount=type=cache touch marker && ls /app > /cache.txt\nRUN --mount=type=bind,target=sub ls /app/sub > /rel.txt\n",
                ),
            ),
            ("ctxfile", "x"),
        ],
    );
    build_ok(&sandbox, &["-t", "test/mountnotarget", path_str(&ctx)]);
    let cat = |path: &str| sandbox.kiln_ok(["run", "--rm", "test/mountnotarget", "cat", path]);
    let bind = cat("/bind.txt");
    assert!(
        bind.contains("ctxfile") && bind.contains("Dockerfile"),
        "{bind}"
    );
    assert!(cat("/cache.txt").contains("marker"));
    assert!(cat("/rel.txt").contains("ctxfile"));
    let app = sandbox.kiln_ok(["run", "--rm", "test/mountnotarget", "ls", "-a", "/app"]);
    assert!(
        !app.contains("marker"),
        "the cache mount's file is not in the image: {app}"
    );
}

/// Two identical stages in one build: Docker's legacy builder builds them
/// one after the other, so the second one's steps come from the cache the
/// first one filled (TestBuildMultiStageCopyFromSyntax counts `Using
/// cache` the same way); kiln, which builds independent stages in
/// parallel, orders identical ones.
#[test]
fn conformance_identical_stages_share_the_cache() {
    let sandbox = Sandbox::new();
    let base = busybox_ref();
    let ctx = context(
        &sandbox,
        "twins",
        &[(
            "Dockerfile",
            &format!(
                "FROM {base} AS a\nRUN echo same > /f\nFROM {base} AS b\nRUN echo same > /f\nFROM {base}\nCOPY --from=a /f /a\nCOPY --from=b /f /b\n"
            ),
        )],
    );
    let out = build_ok(
        &sandbox,
        &["--jobs", "4", "-t", "test/twins", path_str(&ctx)],
    );
    assert_eq!(out.matches(" ---> Using cache").count(), 1, "{out}");
}

/// A container made from an image has the image's health check and stop
/// signal in its `Config` (docker_cli_inspect / TestBuildStopSignal: `docker
/// inspect -f '{{.Config.StopSignal}}'` of a container shows SIGKILL).
#[test]
fn conformance_container_config_has_healthcheck_and_stopsignal() {
    let sandbox = Sandbox::new();
    let ctx = context(
        &sandbox,
        "health",
        &[(
            "Dockerfile",
            &from_busybox("STOPSIGNAL SIGKILL\nHEALTHCHECK --interval=5s CMD true\n"),
        )],
    );
    build_ok(&sandbox, &["-t", "test/health", path_str(&ctx)]);
    sandbox.kiln_ok(["create", "--name", "healthy", "test/health", "true"]);
    let c = inspect_json(&sandbox, "healthy");
    assert_eq!(c["Config"]["StopSignal"], "SIGKILL", "{c}");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"]),
        "{c}"
    );
    assert_eq!(
        c["Config"]["Healthcheck"]["Interval"], 5_000_000_000u64,
        "{c}"
    );
    // An image without them: no health check, no stop signal.
    sandbox.kiln_ok(["create", "--name", "plain", &busybox_ref(), "true"]);
    let c = inspect_json(&sandbox, "plain");
    assert!(c["Config"].get("Healthcheck").is_none(), "{c}");
    assert!(
        c["Config"]
            .get("StopSignal")
            .is_none_or(serde_json::Value::is_null),
        "{c}"
    );
}
