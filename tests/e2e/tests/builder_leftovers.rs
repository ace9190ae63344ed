//! Issue 15 leftovers in the builder, through the real `kiln` binary: a
//! RUN whose executable is not in the image fails as Docker's container
//! start does (exit 1, runc's reason) while a command that exits 127 keeps
//! its status; `ADD` of a URL together with local sources, as Docker's
//! legacy builder does it. moby's integration-cli tests are the reference
//! (no Docker daemon runs here).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use kiln_e2e::{Sandbox, busybox_ref};

/// Writes `files` (path, content) under `sandbox.work()/name`.
fn context(sandbox: &Sandbox, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = sandbox.work().join(name);
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

fn build(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .kiln(std::iter::once("build").chain(args.iter().copied()))
        .output()
        .expect("cannot start kiln build")
}

fn streams(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// TestBuildIidFileCleanupOnFail's Dockerfile (`FROM scratch` then
/// `RUN /non/existing/command`): Docker cannot start the step's container
/// (no `/bin/sh`) and `docker build` exits 1; so does an exec form naming
/// a file the image lacks. A shell that runs a missing command (moby's
/// TestBuildRUNErrMsg) or a command exiting 127 keeps status 127.
#[test]
fn builder_leftovers_run_without_its_executable_exits_1() {
    let sandbox = Sandbox::new();
    let busybox = busybox_ref();
    for (name, dockerfile, code, text) in [
        (
            "scratch",
            "FROM scratch\nRUN /non/existing/command\n".to_owned(),
            1,
            "exec: \"/bin/sh\": stat /bin/sh: no such file or directory",
        ),
        (
            "exec-missing",
            format!("FROM {busybox}\nRUN [\"/non/existing/command\"]\n"),
            1,
            "exec: \"/non/existing/command\": stat /non/existing/command: no such file or directory",
        ),
        (
            "exec-not-in-path",
            format!("FROM {busybox}\nRUN [\"nothere\"]\n"),
            1,
            "exec: \"nothere\": executable file not found in $PATH",
        ),
        (
            "shell-missing",
            format!("FROM {busybox}\nRUN nothere\n"),
            127,
            "The command '/bin/sh -c nothere' returned a non-zero code: 127",
        ),
        (
            "exits-127",
            format!("FROM {busybox}\nRUN exit 127\n"),
            127,
            "The command '/bin/sh -c exit 127' returned a non-zero code: 127",
        ),
    ] {
        let ctx = context(&sandbox, name, &[("Dockerfile", &dockerfile)]);
        let out = build(&sandbox, &[path_str(&ctx)]);
        assert_eq!(out.status.code(), Some(code), "{name}: {}", streams(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(text), "{name}: {}", streams(&out));
    }
    // Nothing was left mounted or half made by the failed steps.
    let ps = sandbox.kiln_ok(["ps", "-a", "-q"]);
    assert_eq!(ps.trim(), "", "no step container left: {ps}");
}

/// Serves `body` for every GET on 127.0.0.1 until `count` requests were
/// answered; returns the port.
fn serve(body: &'static str, count: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

/// `ADD <url> <local file> <local dir> /dest/`: Docker's legacy builder
/// copies every source into the destination directory (the download with
/// mode 0600 and the server's Last-Modified time); a destination without a
/// trailing `/` is refused as for any copy of several sources.
#[test]
fn builder_leftovers_add_mixes_urls_and_local_sources() {
    let sandbox = Sandbox::new();
    let port = serve("remote content\n", 4);
    let url = format!("http://127.0.0.1:{port}/r.txt");
    let ctx = context(
        &sandbox,
        "mixed",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nADD a.txt {url} d /dest/\nRUN stat -c '%n %a %Y' /dest/a.txt /dest/i.txt /dest/r.txt && cat /dest/r.txt\n",
                    busybox_ref()
                ),
            ),
            ("a.txt", "local\n"),
            ("d/i.txt", "inner\n"),
        ],
    );
    let out = build(
        &sandbox,
        &["--network", "host", "--no-cache", path_str(&ctx)],
    );
    assert!(out.status.success(), "{}", streams(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("/dest/a.txt 644"), "{stdout}");
    assert!(stdout.contains("/dest/i.txt 644"), "{stdout}");
    assert!(stdout.contains("/dest/r.txt 600 784887151"), "{stdout}");
    assert!(stdout.contains("remote content"), "{stdout}");

    let bad = context(
        &sandbox,
        "mixed-bad",
        &[
            (
                "Dockerfile",
                &format!("FROM {}\nADD a.txt {url} /dest\n", busybox_ref()),
            ),
            ("a.txt", "local\n"),
        ],
    );
    let out = build(&sandbox, &["--network", "host", path_str(&bad)]);
    assert_eq!(out.status.code(), Some(1), "{}", streams(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "When using ADD with more than one source file, the destination must be a directory and end with a /"
        ),
        "{}",
        streams(&out)
    );
}

/// `Parent` and the history's image IDs of a locally built image, as
/// Docker's legacy builder gives them (moby's TestBuildHistory-style
/// checks): `inspect` names the image of the step before, `history` shows
/// each step's image ID on its row, the base's own ID on its top row, and
/// `<missing>` below it.
#[test]
fn builder_leftovers_parent_and_history_ids() {
    let sb = Sandbox::new();
    let dir = context(
        &sb,
        "hist",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo one > /one\nENV A=b\nCMD [\"sh\"]\n",
                busybox_ref()
            ),
        )],
    );
    let out = build(&sb, &["-q", "-t", "hist:1", path_str(&dir)]);
    assert!(out.status.success(), "{}", streams(&out));
    let id = |name: &str| {
        sb.kiln_ok(["inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    };
    let (top, base) = (id("hist:1"), id(&busybox_ref()));
    let parent = sb.kiln_ok(["inspect", "-f", "{{.Parent}}", "hist:1"]);
    let parent = parent.trim();
    assert!(parent.starts_with("sha256:") && parent != top, "{parent}");
    let rows = sb.kiln_ok(["history", "--no-trunc", "-q", "hist:1"]);
    let rows: Vec<&str> = rows.lines().collect();
    // CMD, ENV, RUN rows: this build's images; then the base's rows.
    assert_eq!(rows[0], top);
    assert_eq!(rows[1], parent);
    assert!(
        rows[2].starts_with("sha256:") && rows[2] != parent,
        "{rows:?}"
    );
    assert_eq!(
        rows[3], base,
        "the base image's own ID on its top row: {rows:?}"
    );
    assert!(rows[4..].iter().all(|r| *r == "<missing>"), "{rows:?}");
    // A pulled image has no parent.
    assert_eq!(
        sb.kiln_ok(["inspect", "-f", "{{.Parent}}", &busybox_ref()])
            .trim(),
        ""
    );
}
