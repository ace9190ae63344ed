//! A minimal program for the privileged tests: it is the runtime's init
//! binary (its `main` calls `kiln_runtime::init_entry()` first), and with
//! `run REQUEST.json` it runs a container in the foreground the way a CLI
//! would, exiting with the container's status (used to test that signals
//! sent to the caller reach the container); with `detach REQUEST.json LOG`
//! it starts it detached and exits (the container must outlive it).

use std::process::ExitCode;

fn main() -> ExitCode {
    kiln_runtime::init_entry();
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "run" {
        return run(&args[2], None);
    }
    if args.len() == 4 && args[1] == "detach" {
        return run(&args[2], Some(&args[3]));
    }
    eprintln!("usage: kiln-runtime-harness run CONFIG.json | detach CONFIG.json LOG");
    ExitCode::from(2)
}

#[derive(serde::Deserialize)]
struct Request {
    id: String,
    spec: kiln_runtime::oci_spec::runtime::Spec,
    rootfs: String,
    state_dir: String,
    init: bool,
    cgroup_parent: String,
}

fn run(path: &str, detach_log: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("read {path}: {e}");
            return ExitCode::from(125);
        }
    };
    let req: Request = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parse {path}: {e}");
            return ExitCode::from(125);
        }
    };
    let Ok(id) = req.id.parse() else {
        return ExitCode::from(125);
    };
    let config = kiln_runtime::ContainerConfig {
        id,
        spec: req.spec,
        rootfs: vec![kiln_runtime::RootfsMount::bind(req.rootfs)],
        state_dir: req.state_dir.into(),
        user: None,
        init: req.init,
    };
    let runtime = kiln_runtime::Runtime::new(kiln_runtime::RuntimeConfig {
        cgroup_parent: req.cgroup_parent,
        ..Default::default()
    });
    if let Some(log) = detach_log {
        return match runtime.start_detached(&config, std::path::Path::new(log)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kiln-runtime-harness: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        };
    }
    match runtime.run(&config, kiln_runtime::StdioConfig::inherit()) {
        Ok(st) => ExitCode::from(st.code() as u8),
        Err(e) => {
            eprintln!("kiln-runtime-harness: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
