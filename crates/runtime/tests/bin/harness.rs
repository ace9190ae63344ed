//! A minimal program for the privileged tests: it is the runtime's init
//! binary (its `main` calls `kiln_runtime::init_entry()` first), and with
//! `run REQUEST.json` it runs a container in the foreground the way a CLI
//! would, exiting with the container's status (used to test that signals
//! sent to the caller reach the container); with `detach REQUEST.json LOG`
//! it starts it detached and exits (the container must outlive it); with
//! `bench ROOTFS STATE_DIR N [sealed]` it runs `true` N times (network none,
//! Docker's defaults; `sealed`: from a sealed copy of the binary) and prints
//! the wall time of each run and the median.

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
    if (args.len() == 5 || args.len() == 6) && args[1] == "bench" {
        let sealed = args.get(5).is_some_and(|a| a == "sealed");
        return bench(&args[2], &args[3], args[4].parse().unwrap_or(20), sealed);
    }
    eprintln!(
        "usage: kiln-runtime-harness run CONFIG.json | detach CONFIG.json LOG | bench ROOTFS STATE_DIR N [sealed]"
    );
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
    let config = kiln_runtime::LaunchConfig {
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

fn bench(rootfs: &str, state_dir: &str, n: usize, sealed: bool) -> ExitCode {
    let runtime = kiln_runtime::Runtime::new(kiln_runtime::RuntimeConfig {
        sealed_binary: sealed,
        ..Default::default()
    });
    let mut times = Vec::new();
    for i in 0..n {
        let t = std::time::Instant::now();
        let dir = std::path::Path::new(state_dir).join(format!("c{i}"));
        let etc = match kiln_runtime::write_etc_files(&dir.join("etc"), "bench", None) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(125);
            }
        };
        let opts = kiln_runtime::DockerSpecOptions {
            args: vec!["true".into()],
            hostname: "bench".into(),
            etc_files: Some(etc),
            ..Default::default()
        };
        let spec = match kiln_runtime::docker_spec(&opts) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(125);
            }
        };
        let Ok(id) = format!("bench-{i}").parse() else {
            return ExitCode::from(125);
        };
        let config = kiln_runtime::LaunchConfig {
            id,
            spec,
            rootfs: vec![kiln_runtime::RootfsMount::bind(rootfs)],
            state_dir: dir.join("state"),
            user: None,
            init: false,
        };
        let result = runtime.run(&config, kiln_runtime::StdioConfig::inherit());
        let _ = runtime.delete(&config.state_dir, true);
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(st) if st.code() == 0 => {}
            Ok(st) => {
                eprintln!("run {i}: exit {}", st.code());
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("run {i}: {e}");
                return ExitCode::from(1);
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    println!(
        "runs: {}",
        times
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("median ms: {median:.2}");
    ExitCode::SUCCESS
}
