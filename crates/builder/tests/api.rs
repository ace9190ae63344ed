//! Public-API tests: what the CLI and other tools call directly.

use kiln_builder::{
    BuildCache, CacheRecord, Chmod, DockerIgnore, Event, ImageId, JsonCache, LegacyWriter, Pattern,
    Progress, normalize_tag, parse, rfc3339,
};
use kiln_model::{ContainerConfig, Platform};

#[test]
fn parse_reports_every_error_with_its_line() {
    let err = parse(b"FROM busybox\nRUNN echo\nCOPY\n").expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.contains("RUNN"), "{msg}");
    assert!(msg.contains('\n'), "both errors are listed: {msg}");
    let df = parse(b"FROM busybox AS base\nRUN echo hi\n").expect("valid");
    assert_eq!(df.stages.len(), 1);
}

#[test]
fn legacy_writer_renders_docker_lines() {
    let w = LegacyWriter::new(Vec::new());
    w.event(Event::Step {
        number: 1,
        total: 1,
        stage: 0,
        text: "FROM busybox".into(),
    });
    w.event(Event::UsingCache);
    w.event(Event::StepImage {
        image: "0123456789ab".into(),
    });
    w.event(Event::Built {
        image: "0123456789ab".into(),
    });
    w.event(Event::Tagged {
        name: normalize_tag("test/redis"),
    });
    assert_eq!(
        String::from_utf8(w.into_inner()).expect("utf8"),
        "Step 1/1 : FROM busybox\n ---> Using cache\n ---> 0123456789ab\n\
         Successfully built 0123456789ab\nSuccessfully tagged test/redis:latest\n"
    );
}

#[test]
fn tags_dockerignore_patterns_and_modes() {
    assert_eq!(normalize_tag("test/redis:1"), "test/redis:1");
    assert_eq!(
        normalize_tag("localhost:5000/app"),
        "localhost:5000/app:latest"
    );
    let ig = DockerIgnore::parse("**/node_modules\n!keep/node_modules\n").expect("valid");
    assert!(ig.is_excluded("a/b/node_modules/x.js"));
    assert!(!ig.is_excluded("keep/node_modules"));
    assert!(
        Pattern::new("src/*.rs", false)
            .expect("valid")
            .matches("src/lib.rs")
    );
    assert_eq!(
        Chmod::parse("u+x").expect("valid").apply(0o644, false),
        0o744
    );
    assert_eq!(rfc3339(1_764_374_400), "2025-11-29T00:00:00Z");
    assert_eq!(
        "linux/amd64"
            .parse::<Platform>()
            .expect("valid")
            .to_string(),
        "linux/amd64"
    );
}

#[test]
fn image_config_round_trips_docker_json() {
    let docker = r#"{"User":"app","ExposedPorts":{"6379/tcp":{}},"Env":["PATH=/usr/bin"],"Cmd":["redis-server"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000},"Volumes":{"/data":{}},"WorkingDir":"/data","OnBuild":["RUN x"],"Labels":{"a":"b"},"StopSignal":"SIGTERM","Shell":["/bin/bash","-c"]}"#;
    let c: ContainerConfig = serde_json::from_str(docker).expect("parse");
    assert_eq!(c.on_build.as_deref(), Some(&["RUN x".to_string()][..]));
    assert_eq!(serde_json::to_string(&c).expect("json"), docker);
}

#[test]
fn json_cache_is_a_build_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = JsonCache::open(dir.path(), |_| true).expect("open");
    let rec = CacheRecord {
        parent: None,
        key: "k".into(),
        shape: "k".into(),
        files: Vec::new(),
        image: ImageId("sha256:1".into()),
    };
    let c: &dyn BuildCache = &cache;
    c.record(&rec).expect("record");
    assert_eq!(c.children(None).expect("children"), vec![rec]);
}

/// The fakes of the `testing` feature drive a whole build from outside the
/// crate: no root, no store, no runtime.
#[test]
fn fakes_drive_a_build_from_another_crate() {
    use kiln_builder::fake::{FakeBackend, FakeRunner, MemCache};
    use kiln_builder::{BuildOptions, Builder, ContextDir, EventLog};
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).expect("mkdir");
    std::fs::write(ctx.join("hello.txt"), "hello").expect("write");
    let backend = FakeBackend::new(&dir.path().join("store"));
    backend.add_base("busybox", ContainerConfig::default(), &[("bin/sh", "#!")]);
    let runner = FakeRunner::mini_shell();
    let cache = MemCache::default();
    let df = parse(b"FROM busybox\nCOPY hello.txt /\nRUN echo ran > /ran.txt\n").expect("valid");
    let context = ContextDir::open(&ctx, None, None).expect("context");
    let opts = BuildOptions {
        tags: vec!["test/fake".into()],
        now: 1_700_000_000,
        id_seed: "seed".into(),
        ignore_chown_errors: true,
        ..Default::default()
    };
    let build = || {
        let log = EventLog::default();
        let out = Builder::new(&backend, &runner, &cache, &log)
            .build(&df, &context, &opts)
            .expect("build");
        (out, log.legacy())
    };
    let (first, _) = build();
    let tree = backend.image(&first.image).tree;
    assert_eq!(
        std::fs::read_to_string(tree.join("hello.txt")).expect("copied"),
        "hello"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("ran.txt")).expect("ran"),
        "ran\n"
    );
    assert_eq!(runner.count(), 1);
    let (again, text) = build();
    assert_eq!(again.image, first.image);
    assert_eq!(text.matches("Using cache").count(), 2, "{text}");
    assert_eq!(runner.count(), 1, "the RUN was not run again");
    assert!(backend.live.lock().expect("lock").is_empty());
}
