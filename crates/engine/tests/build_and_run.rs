//! Privileged test (root; `cargo test -p kiln-engine --features
//! privileged-tests`, run by `cargo xtask e2e`): the engine alone, without
//! the CLI, builds an image from a Dockerfile (FROM scratch, a COPY of the
//! host's static busybox, a RUN step in a real container) and runs a
//! container from it, whose output is read back through a pipe.
//!
//! A plain `main` (no libtest harness): the container's init is this test
//! binary run again, so `kiln_runtime::init_entry()` must come first, as in
//! any front end's `main`.

use std::io::Read as _;
use std::process::ExitCode;

use kiln_engine::container::ContainerRecord;
use kiln_engine::{Engine, Options};

/// Where Debian's busybox-static (CI installs it) puts the binary.
const BUSYBOX: &str = "/bin/busybox";

fn main() -> ExitCode {
    kiln_runtime::init_entry();
    if kiln_sys::process::geteuid() != 0 {
        eprintln!("build_and_run: needs root (mounts, namespaces); run it through cargo xtask e2e");
        return ExitCode::FAILURE;
    }
    let started = std::time::Instant::now();
    engine_builds_and_runs_an_image_without_the_cli();
    println!(
        "test engine_builds_and_runs_an_image_without_the_cli ... ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn engine_builds_and_runs_an_image_without_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let context = tmp.path().join("context");
    std::fs::create_dir(&context).expect("mkdir context");
    std::fs::copy(BUSYBOX, context.join("busybox"))
        .unwrap_or_else(|e| panic!("{BUSYBOX} (Debian's busybox-static) is needed: {e}"));
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built by a RUN step > /built\"]\n\
         ENV GREETING=hello\n\
         CMD [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING; cat /built\"]\n",
    )
    .expect("write Dockerfile");

    let mut options = Options::new(tmp.path().join("store"));
    options.notice = |line| eprintln!("engine: {line}");
    let mut engine = Engine::open(options).expect("open the engine");
    let dockerfile =
        Engine::parse_dockerfile(&std::fs::read(context.join("Dockerfile")).expect("read"))
            .expect("parse");
    let ctx = engine.open_context(&context, None).expect("context");
    let build_options = kiln_builder::BuildOptions {
        tags: vec![kiln_builder::normalize_tag("engine-test:latest")],
        ..kiln_builder::BuildOptions::default()
    };
    let built = engine
        .build(
            &dockerfile,
            &ctx,
            &build_options,
            kiln_layer::Compression::None,
            &kiln_builder::NoProgress,
        )
        .unwrap_or_else(|e| panic!("build: {}", kiln_engine::chain(&e)));
    let id: kiln_model::Digest = built.image.0.parse().expect("an image id");
    let record = engine
        .store
        .resolve_image("engine-test:latest")
        .expect("the tag names the built image");
    assert_eq!(record.id, id);

    let top = engine.ensure_unpacked(&id).expect("unpack");
    let config = kiln_image::image_config(&engine.store, &id)
        .expect("config")
        .config
        .unwrap_or_default();
    let rec = ContainerRecord::from_image("engine-test:latest", id, &config, &[])
        .expect("a container of the image");
    engine
        .create_container(&rec, top.as_deref())
        .expect("create");
    assert_eq!(
        engine.find_container(&rec.name).expect("found by name").id,
        rec.id
    );
    let (mut out_r, out_w) = std::io::pipe().expect("pipe");
    let stdio = kiln_runtime::StdioConfig {
        stdin: kiln_runtime::Stdio::Null,
        stdout: kiln_runtime::Stdio::Fd(out_w.into()),
        ..kiln_runtime::StdioConfig::default()
    };
    let exited = engine
        .run_container(&rec, stdio)
        .unwrap_or_else(|e| panic!("run: {}", kiln_engine::chain(&e)));
    let mut output = String::new();
    out_r.read_to_string(&mut output).expect("read the output");
    assert!(exited.error.is_none(), "{:?}", exited.error);
    assert_eq!(exited.code, 0);
    assert_eq!(output, "hello\nbuilt by a RUN step\n");
    assert!(!engine.container_running(&rec));

    // A second container runs another command; then both go with their
    // snapshots.
    let rec2 = ContainerRecord::from_image(
        "engine-test:latest",
        id,
        &config,
        &[
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            "exit 3".into(),
        ],
    )
    .expect("second container");
    engine
        .create_container(&rec2, top.as_deref())
        .expect("create");
    let exited = engine
        .run_container(&rec2, kiln_runtime::StdioConfig::default())
        .expect("run");
    assert_eq!(exited.code, 3);
    for r in [&rec, &rec2] {
        engine.remove_container(r, false).expect("remove");
        assert!(engine.find_container(&r.id).is_err(), "record gone");
        assert!(
            !engine
                .snapshotter()
                .expect("snapshotter")
                .exists(&r.snapshot)
                .expect("exists"),
            "snapshot gone"
        );
    }
}
