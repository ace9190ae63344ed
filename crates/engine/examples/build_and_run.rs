//! Builds an image from a Dockerfile and runs a container from it through
//! kiln-engine alone (no CLI): what an API server or another front end
//! does. Run as root:
//!
//! ```text
//! cargo run -p kiln-engine --example build_and_run -- STORE CONTEXT [COMMAND...]
//! ```
//!
//! STORE is a kiln store directory (created if missing), CONTEXT a build
//! context holding a `Dockerfile`; the container runs COMMAND (default: the
//! image's) with its output on this program's stdout and stderr, and this
//! program exits with the container's status.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_engine::container::ContainerRecord;
use kiln_engine::{Engine, Options};

fn main() -> ExitCode {
    // A container's init is this program run again: the runtime takes over
    // here when that is what this process is.
    kiln_runtime::init_entry();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(store), Some(context)) = (args.first(), args.get(1)) else {
        eprintln!("usage: build_and_run STORE CONTEXT [COMMAND...]");
        return ExitCode::from(2);
    };
    match run(store.into(), context.into(), &args[2..]) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(125)),
        Err(e) => {
            eprintln!("build_and_run: {}", kiln_engine::chain(&e));
            ExitCode::from(125)
        }
    }
}

fn run(store: PathBuf, context: PathBuf, command: &[String]) -> kiln_engine::Result<i32> {
    let mut engine = Engine::open(Options::new(store))?;
    let dockerfile = std::fs::read(context.join("Dockerfile"))?;
    let dockerfile = Engine::parse_dockerfile(&dockerfile)?;
    let ctx = engine.open_context(&context, None)?;
    let options = kiln_builder::BuildOptions {
        tags: vec![kiln_builder::normalize_tag("engine-example:latest")],
        ..kiln_builder::BuildOptions::default()
    };
    let built = engine.build(
        &dockerfile,
        &ctx,
        &options,
        kiln_layer::Compression::None,
        &kiln_builder::NoProgress,
    )?;
    eprintln!("built {}", built.image);
    let id: kiln_model::Digest = built.image.0.parse()?;
    let top = engine.ensure_unpacked(&id)?;
    let config = kiln_image::image_config(&engine.store, &id)?
        .config
        .unwrap_or_default();
    let rec = ContainerRecord::from_image("engine-example:latest", id, &config, command)?;
    engine.create_container(&rec, top.as_deref())?;
    let exited = engine.run_container(&rec, kiln_runtime::StdioConfig::default());
    engine.remove_container(&rec, true)?;
    let exited = exited?;
    if let Some(e) = exited.error {
        eprintln!("build_and_run: {e}");
    }
    Ok(exited.code)
}
