//! Engine tests over the fakes: output format, config effects, history,
//! cache rules, multi-stage, COPY, reproducibility. No root, no network.

use std::fs;
use std::path::Path;

use crate::backend::*;
use crate::context::ContextDir;
use crate::engine::{BuildOptions, BuildOutcome, Builder};
use crate::error::{BackendError, Error, Result};
use crate::fake::{FakeBackend, FakeRunner, MemCache};
use crate::progress::{Event, EventLog};
use kiln_model::{ContainerConfig, NetworkMode};

struct Env {
    _dir: tempfile::TempDir,
    ctx: std::path::PathBuf,
    backend: FakeBackend,
    runner: FakeRunner,
    cache: MemCache,
    base: ImageId,
}

fn env() -> Env {
    env_with(FakeRunner::mini_shell())
}

fn env_with(runner: FakeRunner) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    fs::create_dir(&ctx).expect("mkdir");
    let backend = FakeBackend::new(&dir.path().join("store"));
    let mut cfg = ContainerConfig::default();
    cfg.env_set("PATH", "/usr/bin:/bin");
    cfg.cmd = Some(vec!["sh".into()]);
    let base = backend.add_base(
        "busybox",
        cfg,
        &[
            ("bin/sh", "#!"),
            (
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napp:x:1000:\n"),
        ],
    );
    Env {
        _dir: dir,
        ctx,
        backend,
        runner,
        cache: MemCache::default(),
        base,
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        now: 1_700_000_000,
        id_seed: "seed".into(),
        ignore_chown_errors: true,
        ..Default::default()
    }
}

impl Env {
    fn write(&self, rel: &str, data: &str) {
        let p = self.ctx.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        // Older than any index written by the test: not "racy".
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(1_000_000, 0))
            .expect("mtime");
    }

    fn build(
        &self,
        dockerfile: &str,
        opts: &BuildOptions,
    ) -> (Result<BuildOutcome>, String, Vec<Event>) {
        let df = crate::plan::parse(dockerfile.as_bytes()).expect("valid dockerfile");
        let ctx =
            ContextDir::open(&self.ctx, None, Some(&self.ctx.join("../index"))).expect("context");
        let log = EventLog::default();
        let b = Builder::new(&self.backend, &self.runner, &self.cache, &log);
        let r = b.build(&df, &ctx, opts);
        // Every prepared rootfs was committed or discarded, every mount undone.
        assert!(
            self.backend.live.lock().expect("lock").is_empty(),
            "leaked rootfs"
        );
        assert!(
            self.backend.mounted.lock().expect("lock").is_empty(),
            "leaked mount"
        );
        (r, log.legacy(), log.events())
    }

    fn ok(&self, dockerfile: &str, opts: &BuildOptions) -> (BuildOutcome, String) {
        let (r, text, _) = self.build(dockerfile, opts);
        (
            r.unwrap_or_else(|e| panic!("build failed: {e}\n{text}")),
            text,
        )
    }

    fn history(&self, id: &ImageId) -> Vec<(String, bool)> {
        self.backend
            .image(id)
            .history
            .iter()
            .skip(1)
            .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
            .collect()
    }

    fn file(&self, id: &ImageId, path: &str) -> Option<String> {
        fs::read_to_string(self.backend.image(id).tree.join(path)).ok()
    }
}

/// Replaces 12-hex IDs after known markers with `<id>` for comparison.
fn mask(text: &str) -> String {
    text.lines()
        .map(|l| {
            for p in [
                " ---> Running in ",
                "Removing intermediate container ",
                "Successfully built ",
                " ---> ",
            ] {
                if let Some(rest) = l.strip_prefix(p)
                    && rest.len() == 12
                    && rest.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return format!("{p}<id>");
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// COPY and ADD make their layer without a container, so the legacy
/// output has no "Running in" / "Removing intermediate container" for them,
/// as Docker's legacy builder prints; WORKDIR and metadata steps keep them.
#[test]
fn copy_output_has_no_intermediate_container() {
    let e = env();
    e.write("a.txt", "alpha\n");
    let (_, text) = e.ok(
        "FROM busybox\nCOPY a.txt /a.txt\nADD a.txt /b.txt\nWORKDIR /w\n",
        &opts(),
    );
    let masked = mask(&text);
    assert!(
        masked.starts_with(
            "Step 1/4 : FROM busybox\n ---> <id>\n\
             Step 2/4 : COPY a.txt /a.txt\n ---> <id>\n\
             Step 3/4 : ADD a.txt /b.txt\n ---> <id>\n\
             Step 4/4 : WORKDIR /w\n ---> Running in <id>\nRemoving intermediate container <id>\n ---> <id>\n"
        ),
        "{masked}"
    );
}

const SEED: &str = "FROM busybox\nRUN echo hello > /hello.txt\nCMD [\"cat\",\"/hello.txt\"]\n";

#[test]
fn seed_output_history_and_config() {
    let e = env();
    let mut o = opts();
    o.tags = vec!["test/hello".into()];
    let (out, text) = e.ok(SEED, &o);
    assert_eq!(
        mask(&text),
        "Step 1/3 : FROM busybox\n ---> <id>\n\
         Step 2/3 : RUN echo hello > /hello.txt\n ---> Running in <id>\nRemoving intermediate container <id>\n ---> <id>\n\
         Step 3/3 : CMD [\"cat\",\"/hello.txt\"]\n ---> Running in <id>\nRemoving intermediate container <id>\n ---> <id>\n\
         Successfully built <id>\nSuccessfully tagged test/hello:latest"
    );
    assert!(text.contains(&format!(
        "Step 1/3 : FROM busybox\n ---> {}\n",
        e.base.short()
    )));
    assert!(text.ends_with(&format!(
        "Successfully built {}\nSuccessfully tagged test/hello:latest\n",
        out.image.short()
    )));
    assert_eq!(
        e.history(&out.image),
        [
            ("/bin/sh -c echo hello > /hello.txt".to_string(), false),
            (
                r#"/bin/sh -c #(nop)  CMD ["cat" "/hello.txt"]"#.to_string(),
                true
            ),
        ]
    );
    assert_eq!(e.file(&out.image, "hello.txt").as_deref(), Some("hello\n"));
    assert_eq!(
        out.config.cmd,
        Some(vec!["cat".to_string(), "/hello.txt".to_string()])
    );
    assert_eq!(out.config.env_get("PATH"), Some("/usr/bin:/bin"));
    assert_eq!(
        e.backend
            .names
            .lock()
            .expect("lock")
            .get("test/hello:latest"),
        Some(&out.image)
    );
    let step = e.runner.last();
    assert_eq!(step.args, ["/bin/sh", "-c", "echo hello > /hello.txt"]);
    assert_eq!(step.cwd, "/");
    assert!(step.env.contains(&"PATH=/usr/bin:/bin".to_string()));
    assert_eq!(e.backend.image(&out.image).layers, 2);
    assert_eq!(
        e.backend.image(&out.image).history[2].created.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );

    // The rebuild is all cache, same image, nothing run.
    let (again, text) = e.ok(SEED, &o);
    assert_eq!(again.image, out.image);
    assert_eq!(e.runner.count(), 1);
    assert_eq!(
        mask(&text),
        "Step 1/3 : FROM busybox\n ---> <id>\n\
         Step 2/3 : RUN echo hello > /hello.txt\n ---> Using cache\n ---> <id>\n\
         Step 3/3 : CMD [\"cat\",\"/hello.txt\"]\n ---> Using cache\n ---> <id>\n\
         Successfully built <id>\nSuccessfully tagged test/hello:latest"
    );

    // --no-cache reruns everything.
    let mut nc = o.clone();
    nc.no_cache = true;
    let (_, text) = e.ok(SEED, &nc);
    assert!(!text.contains("Using cache"));
    assert_eq!(e.runner.count(), 2);
}

#[test]
fn failing_run_reports_docker_message_and_tags_nothing() {
    let e = env();
    let mut o = opts();
    o.tags = vec!["t".into()];
    let df = "FROM busybox\nRUN echo ok > /ok\nRUN echo boom; false\n";
    let (r, text, _) = e.build(df, &o);
    let err = r.expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "The command '/bin/sh -c echo boom; false' returned a non-zero code: 1"
    );
    assert!(matches!(err, Error::StepFailed { code: 1, .. }));
    assert!(text.contains("boom\n"), "{text}");
    assert!(!text.contains("Successfully"));
    assert!(
        !e.backend
            .names
            .lock()
            .expect("lock")
            .contains_key("t:latest")
    );
    // The successful step is cached.
    let (_, text, _) = e.build(df, &o);
    assert!(
        text.contains("RUN echo ok > /ok\n ---> Using cache"),
        "{text}"
    );
}

#[test]
fn build_args_in_history_cache_and_explanations() {
    let e = env();
    let df = "ARG BASE=busybox\nFROM $BASE\nARG V=1\nARG UNSET\nENV E=$V\nRUN echo $V\n";
    let mut o = opts();
    o.explain_cache = true;
    o.build_args
        .insert("HTTP_PROXY".into(), "http://proxy".into());
    let (out, _) = e.ok(df, &o);
    let h = e.history(&out.image);
    assert_eq!(h[0], ("/bin/sh -c #(nop)  ARG V=1".to_string(), true));
    assert_eq!(h[1], ("/bin/sh -c #(nop)  ARG UNSET".to_string(), true));
    assert_eq!(h[2], ("/bin/sh -c #(nop)  ENV E=1".to_string(), true));
    assert_eq!(h[3], ("|1 V=1 /bin/sh -c echo $V".to_string(), false));
    let step = e.runner.last();
    assert!(step.env.contains(&"V=1".to_string()));
    assert!(step.env.contains(&"HTTP_PROXY=http://proxy".to_string()));
    assert!(!step.env.iter().any(|v| v.starts_with("UNSET")));

    // A different --build-arg misses at the ARG's first use and says why.
    o.build_args.insert("V".into(), "2".into());
    let (out2, text, events) = e.build(df, &o);
    let out2 = out2.expect("build");
    assert_ne!(out2.image, out.image);
    assert_eq!(e.history(&out2.image)[3].0, "|1 V=2 /bin/sh -c echo $V");
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::CacheMiss { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{text}");
    assert!(reasons[0].contains("instruction changed"), "{reasons:?}");

    // Unused build args are reported.
    o.build_args.insert("NOPE".into(), "x".into());
    let (_, text, _) = e.build(df, &o);
    assert!(
        text.contains(
            "[Warning] One or more build-args [NOPE] were not consumed\nSuccessfully built "
        ),
        "{text}"
    );
}

#[test]
fn explains_a_new_base_image() {
    let e = env();
    let df = "FROM busybox\nRUN echo x > /x\n";
    let mut o = opts();
    o.explain_cache = true;
    e.ok(df, &o);
    let old = e.base.clone();
    let new = e.backend.add_base(
        "busybox-2",
        ContainerConfig::default(),
        &[("bin/sh", "#!2")],
    );
    e.backend
        .names
        .lock()
        .expect("lock")
        .insert("busybox".into(), new.clone());
    let (_, _, events) = e.build(df, &o);
    let reason = events.iter().find_map(|e| match e {
        Event::CacheMiss { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason,
        Some(format!(
            "base image changed: busybox was {}, now {}",
            old.short(),
            new.short()
        ))
    );
}

#[test]
fn run_explains_changed_build_args() {
    let e = env();
    let df = "FROM busybox\nARG V\nRUN echo $V\n";
    let mut o = opts();
    o.explain_cache = true;
    o.build_args.insert("V".into(), "a".into());
    e.ok(df, &o);
    o.build_args.insert("V".into(), "b".into());
    let (_, _, events) = e.build(df, &o);
    let reason = events.iter().find_map(|e| match e {
        Event::CacheMiss { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason.as_deref(),
        Some("build args changed: cached [V=a], now [V=b]")
    );
}

#[test]
fn copy_cache_follows_content_and_explains_files() {
    let e = env();
    e.write("a.txt", "A");
    e.write("src/x.rs", "x");
    e.write(".dockerignore", "*.log\n");
    e.write("debug.log", "noise");
    let df = "FROM busybox\nWORKDIR /app\nCOPY . .\nRUN echo built > /app/out\n";
    let mut o = opts();
    o.explain_cache = true;
    let (out, _) = e.ok(df, &o);
    assert_eq!(e.file(&out.image, "app/a.txt").as_deref(), Some("A"));
    assert_eq!(e.file(&out.image, "app/src/x.rs").as_deref(), Some("x"));
    assert_eq!(e.file(&out.image, "app/debug.log"), None);
    let h = e.history(&out.image);
    assert_eq!(h[0], ("/bin/sh -c #(nop)  WORKDIR /app".to_string(), false));
    assert!(
        h[1].0.starts_with("/bin/sh -c #(nop) COPY dir:") && h[1].0.ends_with(" in . "),
        "{h:?}"
    );

    // Touching a file (mtime only) or an ignored file keeps the cache.
    filetime::set_file_mtime(
        e.ctx.join("a.txt"),
        filetime::FileTime::from_unix_time(2_000_000, 0),
    )
    .expect("mtime");
    e.write("debug.log", "more noise");
    let (same, text) = e.ok(df, &o);
    assert_eq!(same.image, out.image, "{text}");
    assert_eq!(e.runner.count(), 1);

    // Changing content reruns COPY and every later step, and says which file.
    e.write("src/x.rs", "y");
    let (changed, text, events) = e.build(df, &o);
    let changed = changed.expect("build");
    assert_ne!(changed.image, out.image);
    assert!(text.contains("WORKDIR /app\n ---> Using cache"), "{text}");
    assert_eq!(text.matches("Using cache").count(), 1, "{text}");
    assert_eq!(e.runner.count(), 2);
    let reason = events.iter().find_map(|e| match e {
        Event::CacheMiss { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason.as_deref(),
        Some("source files changed: src/x.rs (changed)")
    );
}

/// A single file copied to a file path is named in the explanation (its
/// plan entry has an empty relative path).
#[test]
fn explain_names_a_single_copied_file() {
    let e = env();
    let mut o = opts();
    o.explain_cache = true;
    let df = "FROM busybox\nCOPY b.txt /b.txt\n";
    e.write("b.txt", "one");
    e.ok(df, &o);
    e.write("b.txt", "two");
    let (r, text, events) = e.build(df, &o);
    r.expect("build");
    let reason = events.iter().find_map(|e| match e {
        Event::CacheMiss { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason.as_deref(),
        Some("source files changed: b.txt (changed)"),
        "{text}"
    );
}

#[test]
fn copy_rules_chown_chmod_and_heredoc() {
    let e = env();
    e.write("one.txt", "1");
    e.write("two.txt", "2");
    e.write("dir/in.txt", "in");
    let df = "FROM busybox\n\
              COPY *.txt /multi/\n\
              COPY one.txt /renamed\n\
              COPY dir /target\n\
              COPY --chmod=0755 one.txt /exec/\n\
              COPY --chown=app:app one.txt /owned\n\
              COPY <<EOF /greeting\nhello\nEOF\n\
              COPY --from=busybox /etc/group /copied-group\n";
    let (out, text) = e.ok(df, &opts());
    assert_eq!(e.file(&out.image, "multi/one.txt").as_deref(), Some("1"));
    assert_eq!(e.file(&out.image, "multi/two.txt").as_deref(), Some("2"));
    assert_eq!(e.file(&out.image, "renamed").as_deref(), Some("1"));
    assert_eq!(e.file(&out.image, "target/in.txt").as_deref(), Some("in"));
    assert_eq!(e.file(&out.image, "greeting").as_deref(), Some("hello\n"));
    assert!(
        e.file(&out.image, "copied-group")
            .is_some_and(|g| g.contains("app:x:1000"))
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(e.backend.image(&out.image).tree.join("exec/one.txt"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "{text}");
    // Errors: several sources to a non-directory, a missing source.
    let (r, _, _) = e.build("FROM busybox\nCOPY *.txt /nodir\n", &opts());
    assert!(
        r.expect_err("fails")
            .to_string()
            .contains("must be a directory")
    );
    let (r, _, _) = e.build("FROM busybox\nCOPY missing /x\n", &opts());
    let err = r.expect_err("a missing source");
    assert_eq!(
        err.chain(),
        "COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist"
    );
    assert!(
        matches!(&err, Error::CopyFailed { instruction: "COPY", error, .. }
            if matches!(**error, Error::SourceNotFound { .. }))
    );
}

#[test]
fn add_extracts_local_archives_and_copy_does_not() {
    let e = env();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "inner/file.txt", &b"abc"[..])
        .expect("append");
    let tar = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let p = e.ctx.join("app.tar.gz");
    fs::write(&p, gz.finish().expect("gzip")).expect("write");
    filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(1_000_000, 0)).expect("mtime");
    let (out, _) = e.ok("FROM busybox\nADD app.tar.gz /opt\nCOPY app.tar.gz /copied/\nADD --unpack=false app.tar.gz /raw/\n", &opts());
    assert_eq!(
        e.file(&out.image, "opt/inner/file.txt").as_deref(),
        Some("abc")
    );
    assert!(
        e.backend
            .image(&out.image)
            .tree
            .join("copied/app.tar.gz")
            .is_file()
    );
    assert!(
        e.backend
            .image(&out.image)
            .tree
            .join("raw/app.tar.gz")
            .is_file()
    );
    let h = e.history(&out.image);
    assert!(
        h[0].0.starts_with("/bin/sh -c #(nop) ADD file:") && h[0].0.ends_with(" in /opt "),
        "{h:?}"
    );
    assert!(h[1].0.starts_with("/bin/sh -c #(nop) COPY file:"), "{h:?}");
}

struct FakeFetcher;

impl Fetcher for FakeFetcher {
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BackendError> {
        fs::write(dest, format!("content of {url}"))?;
        Ok(Some(1_234_567))
    }
}

/// Clones by writing a small tree (with a `.git` only when kept).
struct FakeGit;

impl Fetcher for FakeGit {
    fn fetch(&self, _url: &str, _dest: &Path) -> Result<Option<i64>, BackendError> {
        Err("no http here".into())
    }

    fn fetch_git(
        &self,
        repo: &str,
        reference: Option<&str>,
        dest: &Path,
        keep_git_dir: bool,
    ) -> Result<(), BackendError> {
        fs::create_dir_all(dest.join("sub"))?;
        fs::write(dest.join("README"), format!("{repo} at {reference:?}"))?;
        fs::write(dest.join("sub/inner.txt"), "inner")?;
        if keep_git_dir {
            fs::create_dir_all(dest.join(".git"))?;
            fs::write(dest.join(".git/HEAD"), "ref: refs/heads/main")?;
        }
        Ok(())
    }
}

#[test]
fn add_git_repositories() {
    let e = env();
    let ctx = ContextDir::open(&e.ctx, None, None).expect("ctx");
    let log = EventLog::default();
    let dl = e.ctx.join("../dl");
    let mut o = opts();
    o.download_dir = Some(dl.clone());
    let fetcher = FakeGit;
    let b = Builder::new(&e.backend, &e.runner, &e.cache, &log).with_fetcher(&fetcher);
    let build = |df: &str| {
        let df = crate::plan::parse(df.as_bytes()).expect("valid");
        b.build(&df, &ctx, &o).expect("build")
    };
    let out = build("FROM busybox\nADD git://127.0.0.1:9/repo.git#v1 /src\n");
    assert_eq!(
        e.file(&out.image, "src/README").as_deref(),
        Some("git://127.0.0.1:9/repo.git at Some(\"v1\")")
    );
    assert_eq!(
        e.file(&out.image, "src/sub/inner.txt").as_deref(),
        Some("inner")
    );
    assert!(!e.backend.image(&out.image).tree.join("src/.git").exists());
    let out = build("FROM busybox\nADD --keep-git-dir=true https://h.invalid/r.git /k/\n");
    assert!(
        e.backend
            .image(&out.image)
            .tree
            .join("k/.git/HEAD")
            .exists()
    );
    // `#ref:subdir`: only that directory's content.
    let out = build("FROM busybox\nADD git@h.invalid:r.git#main:sub /only\n");
    assert_eq!(
        e.file(&out.image, "only/inner.txt").as_deref(),
        Some("inner")
    );
    assert_eq!(e.file(&out.image, "only/README"), None);
    assert_eq!(fs::read_dir(&dl).expect("dir").count(), 0, "clones removed");
}

#[test]
fn add_downloads_urls_and_verifies_checksums() {
    let e = env();
    let df = "FROM busybox\nADD http://example.invalid/dl/tool.sh /usr/bin/\n";
    let df_ctx = crate::plan::parse(df.as_bytes()).expect("valid");
    let ctx = ContextDir::open(&e.ctx, None, None).expect("ctx");
    let log = EventLog::default();
    let dl = e.ctx.join("../dl");
    let mut o = opts();
    o.download_dir = Some(dl.clone());
    let fetcher = FakeFetcher;
    let b = Builder::new(&e.backend, &e.runner, &e.cache, &log).with_fetcher(&fetcher);
    let out = b.build(&df_ctx, &ctx, &o).expect("build");
    assert_eq!(
        e.file(&out.image, "usr/bin/tool.sh").as_deref(),
        Some("content of http://example.invalid/dl/tool.sh")
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = fs::metadata(e.backend.image(&out.image).tree.join("usr/bin/tool.sh")).expect("stat");
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(m.mtime(), 1_234_567);
    assert_eq!(
        fs::read_dir(&dl).expect("dir").count(),
        0,
        "downloads are cleaned up"
    );

    let bad = crate::plan::parse(
        b"FROM busybox\nADD --checksum=sha256:0000 http://example.invalid/x /x\n",
    )
    .expect("valid");
    let err = b.build(&bad, &ctx, &o).expect_err("mismatch");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // Without a fetcher, a clear error.
    let (r, _, _) = e.build(df, &o);
    assert!(
        r.expect_err("no fetcher")
            .to_string()
            .contains("needs a downloader")
    );
}

#[test]
fn config_instructions_follow_docker() {
    let e = env();
    let df = "FROM busybox\n\
              ENV A=1 B=two\n\
              ENV C=$A-${B}\n\
              LABEL org.x=\"y z\" v=$A\n\
              EXPOSE 80 53/udp\n\
              VOLUME /data /logs\n\
              USER app\n\
              WORKDIR rel\n\
              WORKDIR sub\n\
              STOPSIGNAL SIGINT\n\
              HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1\n\
              SHELL [\"/bin/bash\", \"-c\"]\n\
              RUN echo hi\n\
              ENTRYPOINT [\"/entry\"]\n\
              ONBUILD RUN echo triggered > /trig\n\
              MAINTAINER someone\n";
    let (out, _) = e.ok(df, &opts());
    let c = &out.config;
    assert_eq!(c.env_get("C"), Some("1-two"));
    let labels = c.labels.clone().expect("labels");
    assert_eq!(labels.get("org.x").map(String::as_str), Some("y z"));
    assert_eq!(labels.get("v").map(String::as_str), Some("1"));
    assert_eq!(
        c.exposed_ports
            .clone()
            .expect("ports")
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        ["53/udp", "80/tcp"]
    );
    assert_eq!(
        c.volumes
            .clone()
            .expect("vols")
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        ["/data", "/logs"]
    );
    assert_eq!(c.user.as_deref(), Some("app"));
    assert_eq!(c.working_dir.as_deref(), Some("/rel/sub"));
    assert!(e.backend.image(&out.image).tree.join("rel/sub").is_dir());
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    let hc = c.healthcheck.clone().expect("healthcheck");
    assert_eq!(
        hc.test,
        ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    );
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries),
        (Some(300_000_000_000), Some(3_000_000_000), Some(3))
    );
    assert_eq!(
        c.shell,
        Some(vec!["/bin/bash".to_string(), "-c".to_string()])
    );
    assert_eq!(c.entrypoint, Some(vec!["/entry".to_string()]));
    assert_eq!(c.cmd, None, "ENTRYPOINT resets the inherited CMD");
    assert_eq!(
        c.on_build,
        Some(vec!["RUN echo triggered > /trig".to_string()])
    );
    let step = e.runner.last();
    assert_eq!(step.args, ["/bin/bash", "-c", "echo hi"]);
    assert_eq!(step.user, "app");
    assert_eq!(step.cwd, "/rel/sub");
    let h: Vec<String> = e.history(&out.image).into_iter().map(|(s, _)| s).collect();
    assert_eq!(h[0], "/bin/sh -c #(nop)  ENV A=1 B=two");
    assert_eq!(h[3], "/bin/sh -c #(nop)  EXPOSE 53/udp 80/tcp");
    assert_eq!(h[4], "/bin/sh -c #(nop)  VOLUME [/data /logs]");
    assert_eq!(h[6], "/bin/sh -c #(nop)  WORKDIR /rel");
    assert_eq!(
        h[9],
        r#"/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" '\x03'}"#
    );
    assert_eq!(h[10], "/bin/bash -c #(nop)  SHELL [/bin/bash -c]");
    assert_eq!(h[11], "/bin/bash -c echo hi");
    assert_eq!(h[12], r#"/bin/bash -c #(nop)  ENTRYPOINT ["/entry"]"#);
    assert_eq!(h[14], "/bin/bash -c #(nop)  MAINTAINER someone");
    assert_eq!(
        e.backend
            .image(&out.image)
            .history
            .last()
            .and_then(|h| h.author.clone())
            .as_deref(),
        Some("someone")
    );

    // CMD then ENTRYPOINT in one stage keeps the CMD; shell forms use the SHELL.
    let (out, _) = e.ok("FROM busybox\nCMD echo a\nENTRYPOINT [\"/e\"]\n", &opts());
    assert_eq!(
        out.config.cmd,
        Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "echo a".to_string()
        ])
    );

    // ONBUILD triggers run when the image is used in FROM, then are dropped.
    let mut o = opts();
    o.tags = vec!["parent".into()];
    e.ok("FROM busybox\nONBUILD RUN echo triggered > /trig\n", &o);
    let (child, text) = e.ok("FROM parent\nRUN echo after > /after\n", &opts());
    assert!(text.contains("# Executing 1 build trigger\n"), "{text}");
    assert_eq!(e.file(&child.image, "trig").as_deref(), Some("triggered\n"));
    assert_eq!(child.config.on_build, None);
}

#[test]
fn run_heredocs() {
    let e = env();
    let df = "FROM busybox\nRUN <<EOF\necho a > /a\nEOF\nRUN cat <<-EOT > /b\n\thello\n\tEOT\n";
    let (out, _) = e.ok(df, &opts());
    let seen = e.runner.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].args, ["/bin/sh", "-c", "echo a > /a\n"]);
    assert_eq!(
        seen[1].args,
        ["/bin/sh", "-c", "cat <<-EOT > /b\nhello\nEOT"]
    );
    assert_eq!(e.file(&out.image, "a").as_deref(), Some("a\n"));
    let (_, _) = e.ok(
        "FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n",
        &opts(),
    );
    assert_eq!(
        e.runner.last().args,
        [
            "/bin/sh",
            "-c",
            "/usr/bin/env python3 <<'KILN_HEREDOC'\n#!/usr/bin/env python3\nprint('hi')\nKILN_HEREDOC"
        ]
    );
}

#[test]
fn multi_stage_target_and_parallel_stages() {
    let e = env();
    let df = "FROM busybox AS a\nRUN echo a > /a\n\
              FROM busybox AS b\nRUN echo b > /b\n\
              FROM busybox AS unused\nRUN echo u > /u\n\
              FROM a AS final\nCOPY --from=b /b /from-b\nCOPY --from=1 /b /from-1\n";
    let mut texts = Vec::new();
    for jobs in [1, 2] {
        let mut o = opts();
        o.jobs = jobs;
        o.no_cache = true;
        let before = e.runner.count();
        let (out, text) = e.ok(df, &o);
        assert_eq!(e.runner.count() - before, 2, "the unused stage is skipped");
        assert!(!text.contains("echo u"), "{text}");
        assert!(text.contains("Step 1/7 : FROM busybox AS a"), "{text}");
        assert!(text.contains("Step 5/7 : FROM a AS final"), "{text}");
        assert_eq!(e.file(&out.image, "a").as_deref(), Some("a\n"));
        assert_eq!(e.file(&out.image, "from-b").as_deref(), Some("b\n"));
        assert_eq!(e.file(&out.image, "from-1").as_deref(), Some("b\n"));
        texts.push(text);
    }
    assert_eq!(
        texts[0], texts[1],
        "parallel stages print as the sequential build does"
    );
    let mut o = opts();
    o.target = Some("B".into());
    let (out, text) = e.ok(df, &o);
    assert_eq!(e.file(&out.image, "b").as_deref(), Some("b\n"));
    assert!(text.contains("Step 1/2 : FROM busybox AS b"), "{text}");
    // A --from may use a stage ARG.
    let df2 = "FROM busybox AS x\nRUN echo x > /x\nFROM busybox\nARG S=x\nCOPY --from=$S /x /x\n";
    let (out2, _) = e.ok(df2, &opts());
    assert_eq!(e.file(&out2.image, "x").as_deref(), Some("x\n"));
    // One decided by ENV names a stage the graph did not plan: an error, not a hang.
    let df3 = "FROM busybox AS x\nRUN echo x > /x\nFROM busybox\nENV S=x\nCOPY --from=$S /x /x\n";
    let (r, _, _) = e.build(df3, &opts());
    let err = r.expect_err("unplanned").to_string();
    assert!(err.contains("not part of this build"), "{err}");
    o.target = Some("nope".into());
    assert!(matches!(e.build(df, &o).0, Err(Error::UnknownTarget(_))));
}

#[test]
fn reproducible_with_source_date_epoch() {
    let build = |now: i64| {
        let e = env();
        e.write("f", "data");
        let mut o = opts();
        o.now = now;
        o.id_seed = format!("seed{now}");
        o.source_date_epoch = Some(1_600_000_000);
        e.ok(
            "FROM busybox\nCOPY f /f\nRUN echo x > /x\nCMD [\"x\"]\n",
            &o,
        )
        .0
        .image
    };
    assert_eq!(build(1), build(2));
}

#[test]
fn run_mounts_and_network() {
    let e = env();
    e.write("data/in.txt", "ctx");
    let secret = e.ctx.join("../secret");
    fs::write(&secret, "s3cret").expect("write");
    let mut o = opts();
    o.secrets.insert("tok".into(), secret.clone());
    o.network = NetworkMode::None;
    let df = "FROM busybox\nRUN --mount=type=cache,target=/root/.cache --mount=type=bind,source=data,target=/d \
              --mount=type=secret,id=tok --mount=type=tmpfs,target=/t,size=1m --network=host echo hi\nRUN echo b\n";
    let (out, _) = e.ok(df, &o);
    let steps = e.runner.seen.lock().expect("lock").clone();
    assert_eq!(steps[0].network, NetworkMode::Host);
    assert_eq!(steps[1].network, NetworkMode::None);
    let m = &steps[0].mounts;
    assert!(
        matches!(&m[0], StepMount::Cache { id, target, .. } if id == "/root/.cache" && target == "/root/.cache")
    );
    assert!(
        matches!(&m[1], StepMount::Bind { root, source, target, readonly: true, hidden } if root == &e.ctx && source == "data" && target == "/d" && hidden.is_empty())
    );
    assert!(
        matches!(&m[2], StepMount::Secret { source, target, .. } if source == &secret && target == "/run/secrets/tok")
    );
    assert!(matches!(
        &m[3],
        StepMount::Tmpfs {
            size: Some(1_048_576),
            ..
        }
    ));
    // The secret is in no history entry.
    assert!(
        !e.history(&out.image)
            .iter()
            .any(|(h, _)| h.contains("s3cret"))
    );
    // `env=`: the secret as an environment variable, not mounted, not recorded.
    let (out, _) = e.ok(
        "FROM busybox\nRUN --mount=type=secret,id=tok,env=TOKEN echo env\n",
        &o,
    );
    let step = e.runner.last();
    assert!(step.env.contains(&"TOKEN=s3cret".to_string()));
    assert!(step.mounts.is_empty());
    assert!(
        !e.history(&out.image)
            .iter()
            .any(|(h, _)| h.contains("s3cret"))
    );
    let (r, _, _) = e.build("FROM busybox\nRUN --security=insecure echo\n", &opts());
    assert!(r.expect_err("refused").to_string().contains("insecure"));
    let (r, _, _) = e.build(
        "FROM busybox\nRUN --mount=type=secret,id=missing,required echo\n",
        &opts(),
    );
    assert!(matches!(r, Err(Error::MissingSecret(id)) if id == "missing"));
}

/// A RUN with a bind mount of the context reruns when a file under the
/// mounted directory changes (content, not mtime), and says which file;
/// files outside it do not matter. A stage source keys on the stage's image.
#[test]
fn bind_mounted_context_content_is_in_the_run_key() {
    let e = env();
    e.write("dir/a.txt", "A");
    e.write("dir/sub/b.txt", "B");
    e.write("other.txt", "O");
    let df = "FROM busybox\nRUN --mount=type=bind,source=dir,target=/x cat /x/a.txt\n";
    let mut o = opts();
    o.explain_cache = true;
    let (first, _) = e.ok(df, &o);
    assert_eq!(e.runner.count(), 1);
    // Unrelated file and mtime-only change: still cached.
    e.write("other.txt", "changed");
    filetime::set_file_mtime(
        e.ctx.join("dir/a.txt"),
        filetime::FileTime::from_unix_time(2_000_000, 0),
    )
    .expect("mtime");
    let (same, text) = e.ok(df, &o);
    assert_eq!(same.image, first.image, "{text}");
    assert_eq!(e.runner.count(), 1, "{text}");
    // A changed file under the mounted directory: a miss, explained.
    e.write("dir/sub/b.txt", "B2");
    let (r, text, events) = e.build(df, &o);
    r.expect("build");
    assert!(text.contains("Running in"), "{text}");
    assert_eq!(e.runner.count(), 2, "{text}");
    let reason = events.iter().find_map(|e| match e {
        Event::CacheMiss { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason.as_deref(),
        Some("source files changed: /x/sub/b.txt (changed)")
    );
    // A new file too.
    e.write("dir/c.txt", "C");
    e.ok(df, &o);
    assert_eq!(e.runner.count(), 3);
    e.ok(df, &o);
    assert_eq!(e.runner.count(), 3, "unchanged again: cached");

    // from=<stage>: the key follows the stage's result.
    let staged = |v: &str| {
        format!(
            "FROM busybox AS s\nRUN echo {v} > /v\nFROM busybox\nRUN --mount=type=bind,from=s,target=/s cat /s/v\n"
        )
    };
    e.ok(&staged("1"), &o);
    let n = e.runner.count();
    e.ok(&staged("1"), &o);
    assert_eq!(e.runner.count(), n, "same stage: cached");
    e.ok(&staged("2"), &o);
    assert_eq!(
        e.runner.count(),
        n + 2,
        "the stage changed, so did the RUN mounting it"
    );
}

/// `COPY --link`: the layer is made on an empty rootfs and cached without
/// the parent, so a new base image reuses it (no copy), and it is stacked
/// as its own layer; its content shows through on top of the base.
#[test]
fn copy_link_layer_does_not_depend_on_the_base() {
    let e = env();
    e.write("app/main.txt", "main");
    let df = |base: &str| {
        format!("FROM {base}\nCOPY --link --chown=app:app app /srv/\nRUN echo after\n")
    };
    let (first, text) = e.ok(&df("busybox"), &opts());
    assert_eq!(
        e.file(&first.image, "srv/main.txt").as_deref(),
        Some("main")
    );
    assert_eq!(
        e.file(&first.image, "bin/sh").as_deref(),
        Some("#!"),
        "base kept"
    );
    let img = e.backend.image(&first.image);
    assert_eq!(img.layers, 3, "base + linked COPY + RUN");
    let h = e.history(&first.image);
    assert!(
        h[0].0.starts_with("/bin/sh -c #(nop) COPY dir:") && !h[0].1,
        "{h:?}"
    );
    assert!(!text.contains("Using cache"), "{text}");
    let prepares = |e: &Env| {
        e.backend
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.starts_with("prepare"))
            .count()
    };

    // Another base: the linked COPY is not redone (only the RUN is).
    e.backend.add_base(
        "alpine",
        ContainerConfig::default(),
        &[
            ("bin/sh", "#!alpine"),
            (
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napp:x:1000:\n"),
        ],
    );
    let before = prepares(&e);
    let runs = e.runner.count();
    let (second, text) = e.ok(&df("alpine"), &opts());
    assert!(
        text.contains("COPY --link --chown=app:app app /srv/\n ---> Using cache"),
        "{text}"
    );
    assert_eq!(
        prepares(&e) - before,
        1,
        "only the RUN got a rootfs: {text}"
    );
    assert_eq!(e.runner.count(), runs + 1);
    assert_eq!(
        e.file(&second.image, "srv/main.txt").as_deref(),
        Some("main")
    );
    assert_eq!(e.file(&second.image, "bin/sh").as_deref(), Some("#!alpine"));

    // Same base again: everything cached; changed content: copied again.
    let (again, text) = e.ok(&df("alpine"), &opts());
    assert_eq!(again.image, second.image, "{text}");
    e.write("app/main.txt", "v2");
    let before = prepares(&e);
    let (third, _) = e.ok(&df("alpine"), &opts());
    assert_eq!(e.file(&third.image, "srv/main.txt").as_deref(), Some("v2"));
    assert!(prepares(&e) - before >= 2, "copied and ran again");
}

/// `RUN --mount=type=ssh`: the agent socket bound at the default or given
/// target, `SSH_AUTH_SOCK` pointing at the first; a missing agent is an
/// error only when `required`; nothing of it in history.
#[test]
fn ssh_mounts_forward_the_agent() {
    let e = env();
    let mut o = opts();
    o.ssh.insert("default".into(), "/tmp/agent.sock".into());
    o.ssh.insert("work".into(), "/tmp/work.sock".into());
    let (out, _) = e.ok(
        "FROM busybox\nRUN --mount=type=ssh --mount=type=ssh,id=work,target=/w.sock echo ssh\n",
        &o,
    );
    let step = e.runner.last();
    assert_eq!(
        step.mounts,
        vec![
            StepMount::Ssh {
                source: "/tmp/agent.sock".into(),
                target: "/run/buildkit/ssh_agent.0".into()
            },
            StepMount::Ssh {
                source: "/tmp/work.sock".into(),
                target: "/w.sock".into()
            },
        ]
    );
    assert!(
        step.env
            .contains(&"SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0".to_string())
    );
    assert!(
        !e.history(&out.image)
            .iter()
            .any(|(h, _)| h.contains("agent.sock"))
    );
    // Without an agent: skipped, unless required.
    e.ok(
        "FROM busybox\nRUN --mount=type=ssh,id=none echo optional\n",
        &o,
    );
    assert!(e.runner.last().mounts.is_empty());
    let (r, _, _) = e.build(
        "FROM busybox\nRUN --mount=type=ssh,id=none,required echo\n",
        &o,
    );
    assert!(r.expect_err("required").to_string().contains("--ssh none"));
}

#[test]
fn build_labels_scratch_and_empty_dockerfiles() {
    let e = env();
    e.write("f", "data");
    let mut o = opts();
    o.labels.insert("k".into(), "v".into());
    let (out, text) = e.ok("FROM scratch\nCOPY f /f\n", &o);
    assert!(text.contains("Step 3/3 : LABEL \"k\"='v'"), "{text}");
    assert_eq!(
        out.config
            .labels
            .clone()
            .expect("labels")
            .get("k")
            .map(String::as_str),
        Some("v")
    );
    assert_eq!(e.file(&out.image, "f").as_deref(), Some("data"));
    assert_eq!(e.backend.image(&out.image).layers, 1);
    let (r, _, _) = e.build("FROM scratch\n", &opts());
    assert!(matches!(r, Err(Error::NoImage)));
}

#[test]
fn file_index_avoids_rehashing() {
    let e = env();
    for i in 0..50 {
        e.write(&format!("f{i}"), &format!("{i}"));
    }
    let df = crate::plan::parse(b"FROM busybox\nCOPY . /c\n").expect("valid");
    let count = || {
        let ctx = ContextDir::open(&e.ctx, None, Some(&e.ctx.join("../index"))).expect("ctx");
        let log = EventLog::default();
        Builder::new(&e.backend, &e.runner, &e.cache, &log)
            .build(&df, &ctx, &opts())
            .expect("build");
        ctx.hashed_count()
    };
    assert_eq!(count(), 50);
    assert_eq!(count(), 0, "second build served from the index");
    e.write("f3", "changed!");
    assert_eq!(count(), 1);
}

/// Many files are copied on several threads: every one arrives with its
/// content, mode and mtime, in its directory.
#[test]
fn large_copies_arrive_whole() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let e = env();
    for i in 0..600 {
        e.write(
            &format!("d{}/s{}/f{i}.txt", i % 7, i % 3),
            &format!("file {i}"),
        );
    }
    fs::set_permissions(
        e.ctx.join("d0/s0/f0.txt"),
        fs::Permissions::from_mode(0o751),
    )
    .expect("chmod");
    let (out, _) = e.ok("FROM busybox\nCOPY . /c/\n", &opts());
    let tree = e.backend.image(&out.image).tree;
    for i in 0..600 {
        let rel = format!("c/d{}/s{}/f{i}.txt", i % 7, i % 3);
        assert_eq!(e.file(&out.image, &rel), Some(format!("file {i}")), "{rel}");
    }
    let m = fs::metadata(tree.join("c/d0/s0/f0.txt")).expect("stat");
    assert_eq!(m.permissions().mode() & 0o7777, 0o751);
    assert_eq!(m.mtime(), 1_000_000);
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ContextDir>();
}

/// Serves `ADD <url>` and `ADD <git url>` alike.
struct AnyFetcher;

impl Fetcher for AnyFetcher {
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BackendError> {
        FakeFetcher.fetch(url, dest)
    }

    fn fetch_git(
        &self,
        repo: &str,
        reference: Option<&str>,
        dest: &Path,
        keep_git_dir: bool,
    ) -> Result<(), BackendError> {
        FakeGit.fetch_git(repo, reference, dest, keep_git_dir)
    }
}

/// `(parent, key)` of every cache record, sorted.
fn recorded_keys(e: &Env) -> Vec<(Option<ImageId>, String)> {
    let mut keys: Vec<(Option<ImageId>, String)> = e
        .cache
        .records
        .lock()
        .expect("lock")
        .iter()
        .map(|r| (r.parent.clone(), r.key.clone()))
        .collect();
    keys.sort();
    keys
}

/// Builds `df` in `e` with a fetcher, the context's index and downloads in
/// `e`'s own directories.
fn build_fetching(e: &Env, df: &str, o: &BuildOptions) -> BuildOutcome {
    let df = crate::plan::parse(df.as_bytes()).expect("valid dockerfile");
    let ctx = ContextDir::open(&e.ctx, None, Some(&e.ctx.join("../index"))).expect("context");
    let log = EventLog::default();
    let b = Builder::new(&e.backend, &e.runner, &e.cache, &log).with_fetcher(&AnyFetcher);
    let mut o = o.clone();
    o.download_dir = Some(e.ctx.join("../downloads"));
    b.build(&df, &ctx, &o)
        .unwrap_or_else(|err| panic!("build failed: {err}\n{}", log.legacy()))
}

/// Issue #13 needs keys that mean the same on every machine: the same
/// Dockerfile and context, in two other directories (other inodes, other
/// mtimes), built into two stores with other seeds (intermediate container
/// IDs) and download directories, record the same key for every step, and
/// no key holds a host path, a seed or a container ID.
#[test]
fn cache_keys_are_the_same_on_another_machine() {
    let df = "FROM busybox AS src\n\
              RUN echo built > /built\n\
              FROM scratch AS empty\n\
              COPY a.txt /\n\
              FROM busybox\n\
              ARG V=1\n\
              ENV E=$V\n\
              WORKDIR /app\n\
              COPY . /app/\n\
              COPY --chmod=600 --chown=app a.txt /a\n\
              ADD app.tar /opt/\n\
              ADD http://example.invalid/f.txt /dl/\n\
              ADD git://example.invalid/r.git#v1 /git\n\
              COPY --link sub/ /linked/\n\
              COPY --from=src /built /b\n\
              COPY --from=empty /a.txt /e\n\
              RUN --mount=type=bind,source=sub,target=/m echo x\n\
              RUN --mount=type=bind,from=src,target=/s echo y\n\
              RUN --mount=type=cache,target=/c echo z\n\
              COPY <<EOF /h\n\
              hi $V\n\
              EOF\n\
              CMD [\"x\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "inner/file.txt", &b"abc"[..])
        .expect("append");
    let tar = tar.into_inner().expect("tar");
    let machine = |seed: &str, mtime: i64| {
        let e = env();
        e.write("a.txt", "A");
        e.write("sub/x.txt", "X");
        e.write("sub/deeper/y.txt", "Y");
        fs::write(e.ctx.join("app.tar"), &tar).expect("write");
        // Another checkout: other times (inodes differ anyway).
        for f in ["a.txt", "sub/x.txt", "sub/deeper/y.txt", "app.tar"] {
            let t = filetime::FileTime::from_unix_time(mtime, 7);
            filetime::set_file_mtime(e.ctx.join(f), t).expect("mtime");
        }
        let mut o = opts();
        o.id_seed = seed.into();
        o.build_args.insert("V".into(), "2".into());
        let out = build_fetching(&e, df, &o);
        (e, out)
    };
    let (one, out_one) = machine("seed-one", 1_000_000);
    let (two, out_two) = machine("seed-two", 1_200_000);
    let keys = recorded_keys(&one);
    assert_eq!(keys, recorded_keys(&two));
    // Every step of the three stages has its record (FROMs of images too).
    assert!(keys.len() >= 20, "{} records: {keys:#?}", keys.len());
    assert_eq!(out_one.image, out_two.image, "same parents, same keys");
    for (_, key) in &keys {
        for host in [&one._dir.path(), &two._dir.path()] {
            let host = host.to_string_lossy();
            assert!(!key.contains(host.as_ref()), "host path in {key:?}");
        }
        assert!(!key.contains("seed"), "{key:?}");
        // No image ID but the parent's (the record's other half) and a
        // stage a bind mount reads.
        assert!(
            key.contains("--mount-image=") || !key.contains("sha256:"),
            "{key:?}"
        );
        assert!(
            !key.contains("1000000") && !key.contains("1200000"),
            "{key:?}"
        );
    }
}

/// Each COPY/ADD and RUN flag, given, changes the key recorded for the
/// step (`--link` included, whose record on the parent is its stacking),
/// and a flag's expanded value does too.
#[test]
fn each_flag_gives_the_step_another_key() {
    let e = env();
    e.write("a.txt", "A");
    // FakeFetcher's content for that URL, so that the checksum matches.
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        b"content of http://example.invalid/a.txt",
    ));
    let checksum = format!("ADD --checksum=sha256:{sum} http://example.invalid/a.txt /d/");
    let variants = [
        "COPY a.txt /d/",
        "ADD a.txt /d/",
        "COPY --chown=1:1 a.txt /d/",
        "COPY --chmod=600 a.txt /d/",
        "COPY --chmod=$M a.txt /d/",
        "COPY --link a.txt /d/",
        "COPY --exclude=b a.txt /d/",
        "COPY --parents a.txt /d/",
        "COPY --from=src /a.txt /d/",
        "ADD --unpack=false a.txt /d/",
        "ADD http://example.invalid/a.txt /d/",
        &checksum,
        "ADD git://example.invalid/r.git /d/",
        "ADD --keep-git-dir=true git://example.invalid/r.git /d/",
        "RUN true",
        "RUN --network=none true",
        "RUN --mount=type=tmpfs,target=/t true",
        "RUN --mount=type=cache,target=/t true",
        "RUN --mount=type=cache,target=/t,id=$M true",
    ];
    // The records a build of `line` (in a fresh store) adds to those of
    // the same Dockerfile without it.
    let step_records = |line: &str, m: &str| {
        let e = env();
        e.write("a.txt", "A");
        let mut o = opts();
        o.build_args.insert("M".into(), m.into());
        let df = "FROM busybox AS src\nCOPY a.txt /\nFROM busybox\nARG M\n";
        build_fetching(&e, df, &o);
        let before = recorded_keys(&e);
        build_fetching(&e, &format!("{df}{line}\n"), &o);
        let mut new = recorded_keys(&e);
        new.retain(|k| !before.contains(k));
        new
    };
    let mut seen = std::collections::BTreeMap::new();
    for v in variants {
        for m in ["640", "644"] {
            if m == "644" && !v.contains("$M") {
                continue;
            }
            let new = step_records(v, m);
            assert!(!new.is_empty(), "{v} ({m}): no new record");
            seen.insert((v, m), new);
        }
    }
    let n = seen.len();
    let distinct: std::collections::BTreeSet<_> = seen.values().collect();
    assert_eq!(distinct.len(), n, "{seen:#?}");
}

/// A runner that, as the real one, exits 127 when the executable is not in
/// the rootfs, and otherwise runs the mini shell.
fn runner_checking_executables() -> FakeRunner {
    let shell = FakeRunner::mini_shell();
    FakeRunner::new(move |args, root, out| {
        let exe = args.first().cloned().unwrap_or_default();
        let there = if exe.contains('/') {
            root.join(exe.trim_start_matches('/')).is_file()
        } else {
            ["bin", "usr/bin"]
                .iter()
                .any(|d| root.join(d).join(&exe).is_file())
        };
        if !there {
            return 127;
        }
        let step = RunStep {
            container_id: "x",
            rootfs: &Rootfs {
                key: "x".into(),
                mounts: vec![MountSpec {
                    fstype: "bind".into(),
                    source: root.to_string_lossy().into_owned(),
                    options: Vec::new(),
                }],
            },
            args,
            env: &[],
            cwd: "/",
            user: "",
            network: NetworkMode::Host,
            mounts: &[],
            platform: &kiln_model::Platform::native(),
        };
        shell.run(&step, out).unwrap_or(1)
    })
}

/// `RUN` whose executable is not in the image (on `FROM scratch`, or an
/// exec form naming a missing file): Docker's container cannot start, and
/// the build fails with runc's reason (the CLI exits 1), not with 127. A
/// command that is there and exits 127 still gives 127.
#[test]
fn run_without_its_executable_fails_to_start_as_in_docker() {
    let e = env_with(runner_checking_executables());
    let not_started = |df: &str| match e.build(df, &opts()).0 {
        Err(Error::StepNotStarted { command, reason }) => (command, reason),
        other => panic!("{df}: {other:?}"),
    };
    let (command, reason) = not_started("FROM scratch\nRUN echo hi\n");
    assert_eq!(command, "/bin/sh -c echo hi");
    assert_eq!(
        reason,
        "exec: \"/bin/sh\": stat /bin/sh: no such file or directory"
    );
    let (_, reason) = not_started("FROM busybox\nRUN [\"/nonexistent\", \"x\"]\n");
    assert_eq!(
        reason,
        "exec: \"/nonexistent\": stat /nonexistent: no such file or directory"
    );
    let (_, reason) = not_started("FROM busybox\nRUN [\"nothere\"]\n");
    assert_eq!(
        reason,
        "exec: \"nothere\": executable file not found in $PATH"
    );
    let err = e
        .build("FROM scratch\nRUN echo hi\n", &opts())
        .0
        .expect_err("no shell");
    assert!(
        err.to_string()
            .contains("could not start: unable to start container process: exec: \"/bin/sh\""),
        "{err}"
    );
    // The shell is there and the command exits 127: the status stands.
    match e.build("FROM busybox\nRUN exit 127\n", &opts()).0 {
        Err(Error::StepFailed { code: 127, .. }) => {}
        other => panic!("{other:?}"),
    }
    match e
        .build(
            "FROM busybox\nRUN [\"sh\", \"-c\", \"exit 127\"]\n",
            &opts(),
        )
        .0
    {
        Err(Error::StepFailed { code: 127, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// `ADD` of a URL together with local sources, as Docker's legacy builder
/// does it: every source lands in the destination directory (the URL's
/// file with mode 0600 and the server's time), the history says `multi:`,
/// a rebuild of the same content hits the cache, another download content
/// misses, and a destination without `/` is refused.
#[test]
fn add_mixes_urls_and_local_sources() {
    let e = env();
    e.write("a.txt", "A");
    e.write("dir/b.txt", "B");
    let df = "FROM busybox\nADD a.txt http://example.invalid/dl/tool.sh dir /dest/\n";
    let out = build_fetching(&e, df, &opts());
    assert_eq!(e.file(&out.image, "dest/a.txt").as_deref(), Some("A"));
    assert_eq!(e.file(&out.image, "dest/b.txt").as_deref(), Some("B"));
    assert_eq!(
        e.file(&out.image, "dest/tool.sh").as_deref(),
        Some("content of http://example.invalid/dl/tool.sh")
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = fs::metadata(e.backend.image(&out.image).tree.join("dest/tool.sh")).expect("stat");
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(m.mtime(), 1_234_567);
    let h = e.history(&out.image);
    assert!(
        h[0].0.starts_with("/bin/sh -c #(nop) ADD multi:") && h[0].0.ends_with(" in /dest/ "),
        "{h:?}"
    );
    // Same content again: cached; a local file changed: not.
    let again = build_fetching(&e, df, &opts());
    assert_eq!(again.image, out.image);
    e.write("a.txt", "A2");
    let changed = build_fetching(&e, df, &opts());
    assert_ne!(changed.image, out.image);
    assert_eq!(e.file(&changed.image, "dest/a.txt").as_deref(), Some("A2"));
    // Several sources need a directory destination.
    let bad = crate::plan::parse(b"FROM busybox\nADD a.txt http://example.invalid/x /dest\n")
        .expect("valid");
    let ctx = ContextDir::open(&e.ctx, None, None).expect("context");
    let log = EventLog::default();
    let mut o = opts();
    o.download_dir = Some(e.ctx.join("../downloads"));
    let err = Builder::new(&e.backend, &e.runner, &e.cache, &log)
        .with_fetcher(&AnyFetcher)
        .build(&bad, &ctx, &o)
        .expect_err("not a directory");
    assert!(
        err.to_string()
            .contains("When using ADD with more than one source file, the destination must be a directory and end with a /"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(e.ctx.join("../downloads"))
            .expect("dir")
            .count(),
        0,
        "downloads removed"
    );
}
