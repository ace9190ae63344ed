//! Containment of `RUN --mount` (issue 11, points 1, 2, 5 and 9), tried as
//! an attacker would with a hostile Dockerfile and context, against host
//! marker files and directories made by each test (never real host
//! secrets):
//! - a bind `source` that is a symlink (absolute, relative with `../`, or
//!   to `/`) resolves inside the context, as BuildKit's does: it never
//!   reads the host file it names;
//! - a read-only bind of a context directory holding a submount is
//!   read-only all the way down;
//! - a `rw` bind of a context directory works, and its writes reach
//!   neither the context nor the image;
//! - files `.dockerignore` excludes are not in a bind mount of the context;
//! - the removal of mount-point stubs after a step never follows a link the
//!   step planted to a host directory;
//! - a secret never lands on the store's disk, even when the build is
//!   killed with SIGKILL in the middle of the step that mounts it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kiln_e2e::{Sandbox, busybox_ref, run_ok};

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

/// `kiln build ARGS`, whatever its status.
fn build(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .kiln(std::iter::once("build").chain(args.iter().copied()))
        .output()
        .expect("cannot start kiln build")
}

/// Both streams of `out`, for assertions and messages.
fn both(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kiln build ARGS`, panicking unless it succeeds; returns both streams.
fn build_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = build(sandbox, args);
    let text = both(&out);
    assert!(out.status.success(), "kiln build {args:?} failed: {text}");
    text
}

/// A host directory with a marker file whose content must never be read
/// by a build: `(dir, file, content)`.
fn host_marker(sandbox: &Sandbox) -> (PathBuf, PathBuf, String) {
    let dir = sandbox.path().join("host-marker");
    std::fs::create_dir_all(&dir).expect("marker dir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let content = format!("kiln-host-marker-{}-{nanos}", std::process::id());
    let file = dir.join("marker.txt");
    std::fs::write(&file, &content).expect("marker file");
    (dir, file, content)
}

/// `../` enough times to climb from any store or context path to `/`,
/// then `abs` (a relative link that escapes its tree when followed on the
/// host).
fn climbing(abs: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(40),
        abs.to_str()
            .expect("test paths are UTF-8")
            .trim_start_matches('/')
    )
}

/// Every file under `dir` (links not followed) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for ent in rd.flatten() {
            let Ok(ft) = ent.file_type() else { continue };
            let path = ent.path();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// A tmpfs mounted by the test (on a directory it made), unmounted on drop.
struct TestTmpfs(PathBuf);

impl TestTmpfs {
    fn mount(at: &Path) -> TestTmpfs {
        std::fs::create_dir_all(at).expect("mkdir");
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "kiln-e2e-submount"])
                .arg(at),
        );
        TestTmpfs(at.to_path_buf())
    }
}

impl Drop for TestTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `RUN --mount=type=bind,source=<symlink>`: the link is followed inside
/// the context, never on the host, as BuildKit resolves it. The context
/// holds a decoy at the marker's path, so that the step's cache key (which
/// resolved inside the context already) finds a file: the bind must show
/// that decoy, never the host's marker.
#[test]
fn containment_bind_symlink_source_resolves_inside_the_context() {
    let sandbox = Sandbox::new();
    let (_, marker, secret) = host_marker(&sandbox);
    let marker_rel = path_str(&marker).trim_start_matches('/').to_owned();
    let decoy = "the context's own file at the marker's path\n";
    let base = busybox_ref();
    let cases = [
        ("abs", path_str(&marker).to_owned(), "leak"),
        ("rel", climbing(&marker), "leak"),
        (
            "viaroot",
            "/".to_owned(),
            &*format!("rootlink/{marker_rel}"),
        ),
    ];
    for (name, link_target, source) in cases {
        let link = if name == "viaroot" {
            "rootlink"
        } else {
            "leak"
        };
        let dockerfile = format!(
            "FROM {base}\nRUN --mount=type=bind,source={source},target=/x cp /x /baked\nCMD [\"cat\", \"/baked\"]\n"
        );
        let ctx = context(
            &sandbox,
            name,
            &[("Dockerfile", &dockerfile), (&marker_rel, decoy)],
        );
        std::os::unix::fs::symlink(&link_target, ctx.join(link)).expect("symlink");
        let tag = format!("test/containment-{name}:1");
        let text = build_ok(&sandbox, &["-t", &tag, path_str(&ctx)]);
        assert!(
            !text.contains(&secret),
            "{name}: the host file was read: {text}"
        );
        let baked = sandbox.kiln_ok(["run", "--rm", &tag]);
        assert!(
            !baked.contains(&secret),
            "{name}: the host file was baked into the image"
        );
        assert_eq!(baked, decoy, "{name}: the link resolves inside the context");
    }

    // A link to a host file with nothing at its path in the context is a
    // missing source (BuildKit fails the same way).
    let dockerfile =
        format!("FROM {base}\nRUN --mount=type=bind,source=leak,target=/x cp /x /baked\n");
    let ctx = context(&sandbox, "missing", &[("Dockerfile", &dockerfile)]);
    std::os::unix::fs::symlink(&marker, ctx.join("leak")).expect("symlink");
    let out = build(&sandbox, &[path_str(&ctx)]);
    let text = both(&out);
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains(&secret), "the host file was read: {text}");

    // `source=rootlink` (a link to /) is the context's own root, not the host's.
    let dockerfile =
        format!("FROM {base}\nRUN --mount=type=bind,source=rootlink,target=/h ls -a /h\n");
    let ctx = context(
        &sandbox,
        "rootls",
        &[("Dockerfile", &dockerfile), ("in-context.txt", "x")],
    );
    std::os::unix::fs::symlink("/", ctx.join("rootlink")).expect("symlink");
    let text = build_ok(&sandbox, &["--no-cache", path_str(&ctx)]);
    let listed: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(listed.contains(&"in-context.txt"), "{text}");
    for host_entry in ["proc", "usr", "etc"] {
        assert!(
            !listed.contains(&host_entry),
            "the host's root was listed ({host_entry}): {text}"
        );
    }
}

/// A read-only bind of a context directory holding a submount (a tmpfs
/// the test mounts there): nothing under the mount is writable, the
/// submount included.
#[test]
fn containment_bind_readonly_is_read_only_all_the_way_down() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=bind,source=dir,target=/x sh -c 'echo top > /x/w; echo below > /x/sub/w; echo below > /x/sub/deeper/w; true'\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "rosub",
        &[("Dockerfile", &dockerfile), ("dir/a.txt", "a\n")],
    );
    let sub = ctx.join("dir").join("sub");
    let _tmpfs = TestTmpfs::mount(&sub);
    std::fs::create_dir(sub.join("deeper")).expect("mkdir in the submount");
    build_ok(&sandbox, &["--no-cache", path_str(&ctx)]);
    assert!(!ctx.join("dir/w").exists(), "the bind's top was written");
    assert!(
        !sub.join("w").exists(),
        "the submount under the bind was written"
    );
    assert!(
        !sub.join("deeper/w").exists(),
        "the submount under the bind was written"
    );
}

/// `rw` on a bind of a context directory: the step may write (as with
/// BuildKit), and every write is discarded: the context and the image keep
/// nothing of it.
#[test]
fn containment_bind_rw_context_dir_writes_are_discarded() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=bind,source=dir,target=/x,rw sh -c 'echo changed > /x/a.txt && echo new > /x/new.txt && rm /x/b.txt && mkdir /x/d && cat /x/a.txt /x/new.txt > /seen'\nRUN --mount=type=bind,source=dir/b.txt,target=/f,rw sh -c 'echo appended >> /f && cat /f >> /seen'\nCMD [\"cat\", \"/seen\"]\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "rwbind",
        &[
            ("Dockerfile", &dockerfile),
            ("dir/a.txt", "original\n"),
            ("dir/b.txt", "kept\n"),
        ],
    );
    build_ok(&sandbox, &["-t", "test/rwbind:1", path_str(&ctx)]);
    // The overlay's scratch upper and work dirs went with the step.
    let steps = sandbox.root().join("build").join("steps");
    let left: Vec<_> = std::fs::read_dir(&steps)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "step scratch dirs left: {left:?}");
    assert_eq!(
        std::fs::read_to_string(ctx.join("dir/a.txt")).expect("a.txt"),
        "original\n"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.join("dir/b.txt")).expect("b.txt"),
        "kept\n"
    );
    assert!(!ctx.join("dir/new.txt").exists());
    assert!(!ctx.join("dir/d").exists());
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/rwbind:1"]),
        "changed\nnew\nkept\nappended\n"
    );
    let listing = sandbox
        .kiln(["run", "--rm", "test/rwbind:1", "ls", "-a", "/x"])
        .output()
        .expect("run ls");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        !listing.contains("new.txt") && !listing.contains("a.txt"),
        "the bind's writes are in the image: {listing}"
    );
}

/// A bind mount of the context shows nothing `.dockerignore` excludes,
/// as every other consumer of BuildKit's context.
#[test]
fn containment_bind_context_honours_dockerignore() {
    let sandbox = Sandbox::new();
    let secret = "kiln-ignored-s3cr3t-51d2";
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=bind,target=/c sh -c 'ls -aR /c; cat /c/secrets.env /c/sub/deep.env /c/logs/old.log /c/logs/keep.log 2>&1; true'\nRUN --mount=type=bind,source=sub,target=/s sh -c 'ls -a /s; cat /s/deep.env 2>&1; true'\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "ignored",
        &[
            ("Dockerfile", &dockerfile),
            (
                ".dockerignore",
                "secrets.env\nsub/deep.env\nlogs\n!logs/keep.log\n",
            ),
            ("secrets.env", secret),
            ("visible.txt", "visible\n"),
            ("sub/deep.env", secret),
            ("sub/shown.txt", "shown\n"),
            ("logs/old.log", secret),
            ("logs/keep.log", "kept log\n"),
        ],
    );
    let text = build_ok(&sandbox, &["--no-cache", path_str(&ctx)]);
    assert!(!text.contains(secret), "an ignored file was read: {text}");
    for name in ["secrets.env", "deep.env", "old.log"] {
        assert!(
            !text.lines().any(|l| l.trim() == name),
            "an ignored file was listed ({name}): {text}"
        );
    }
    for shown in ["visible.txt", "shown.txt", "kept log"] {
        assert!(text.contains(shown), "{shown} is missing: {text}");
    }
}

/// After a step with a tmpfs mount at /x/y replaced /x by a link to a host
/// directory (absolute, or relative with enough `../`), the removal of the
/// mount-point stubs leaves that host directory alone.
#[test]
fn containment_stub_cleanup_never_follows_a_planted_link() {
    let sandbox = Sandbox::new();
    let (dir, _, _) = host_marker(&sandbox);
    for (name, link) in [("abs", path_str(&dir).to_owned()), ("rel", climbing(&dir))] {
        std::fs::create_dir_all(dir.join("y")).expect("victim dir");
        std::fs::write(dir.join("empty"), b"").expect("victim file");
        let dockerfile = format!(
            "FROM {}\nRUN --mount=type=tmpfs,target=/x/y --mount=type=tmpfs,target=/x/empty sh -c 'mv /x /x.old && ln -s {link} /x'\n",
            busybox_ref()
        );
        let ctx = context(
            &sandbox,
            &format!("stubs-{name}"),
            &[("Dockerfile", &dockerfile)],
        );
        let out = build(&sandbox, &["--no-cache", path_str(&ctx)]);
        assert!(
            dir.join("y").is_dir(),
            "{name}: the host directory's y was removed: {}",
            both(&out)
        );
        assert!(
            dir.join("empty").exists(),
            "{name}: the host directory's empty file was removed: {}",
            both(&out)
        );
        assert!(dir.join("marker.txt").exists());
    }
}

/// `kill -9` of a build while a step with a secret mount runs: no copy of
/// the secret is anywhere under the store root, then or later.
#[test]
fn containment_secret_not_on_disk_after_kill() {
    let sandbox = Sandbox::new();
    let secret = format!("kiln-secret-at-rest-{}", std::process::id());
    let secret_file = sandbox.work().join("token.txt");
    std::fs::write(&secret_file, &secret).expect("write the secret");
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=secret,id=token sh -c 'cat /run/secrets/token > /dev/null && echo $((6*7))-up && sleep 4'\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "secretkill", &[("Dockerfile", &dockerfile)]);
    let mut child = sandbox
        .kiln([
            "build",
            "--secret",
            &format!("id=token,src={}", path_str(&secret_file)),
            path_str(&ctx),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kiln build");
    // Wait for the step to say it read the secret.
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("42-up") {
                let _ = tx.send(());
            }
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(60));
    // While the step runs, the host sees none of its mounts (they live in
    // a mount namespace of the step's own).
    let steps = sandbox.root().join("build").join("steps");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let staged: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(path_str(&steps)))
        .collect();
    child.kill().expect("kill -9 the build");
    let _ = child.wait();
    assert!(started.is_ok(), "the step never started");
    assert!(
        staged.is_empty(),
        "the step's mounts show on the host: {staged:?}"
    );
    let root = sandbox.root();
    let found = files_holding(&root, secret.as_bytes());
    assert!(found.is_empty(), "the secret is on disk: {found:?}");
    // Once the step's container is gone too.
    std::thread::sleep(Duration::from_secs(5));
    let found = files_holding(&root, secret.as_bytes());
    assert!(found.is_empty(), "the secret is on disk: {found:?}");
}

/// `--mount=type=bind,from=STAGE`: the source resolves inside the stage's
/// root filesystem (a link in the stage to the host marker's path finds
/// the stage's own file there), and a `rw` bind of a stage directory
/// works without changing the stage.
#[test]
fn containment_bind_from_stage_resolves_inside_the_stage() {
    let sandbox = Sandbox::new();
    let (_, marker, secret) = host_marker(&sandbox);
    let m = path_str(&marker);
    let parent = path_str(marker.parent().expect("marker dir"));
    let base = busybox_ref();
    let dockerfile = format!(
        "FROM {base} AS src\n\
         RUN mkdir -p /data {parent} && echo in-stage > /data/f && echo stage-decoy > {m} && ln -s {m} /data/leak\n\
         FROM {base}\n\
         RUN --mount=type=bind,from=src,source=/data/leak,target=/x cat /x > /seen\n\
         RUN --mount=type=bind,from=src,source=/data,target=/d,rw sh -c 'echo w > /d/new && rm /d/f && cat /d/new >> /seen'\n\
         RUN --mount=type=bind,from=src,source=/data,target=/d sh -c 'cat /d/f >> /seen; test ! -e /d/new && echo clean >> /seen'\n\
         CMD [\"cat\", \"/seen\"]\n"
    );
    let ctx = context(&sandbox, "fromstage", &[("Dockerfile", &dockerfile)]);
    let text = build_ok(&sandbox, &["-t", "test/fromstage:1", path_str(&ctx)]);
    assert!(!text.contains(&secret), "the host file was read: {text}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/fromstage:1"]),
        "stage-decoy\nw\nin-stage\nclean\n"
    );
}
