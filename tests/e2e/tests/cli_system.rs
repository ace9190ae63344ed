//! `kiln version` and `kiln completion`: Docker's `version --format`
//! templates (`{{.Client.Version}}`, `{{.Server.Version}}`) and a bash
//! completion script that completes kiln's own commands and flags.

use std::process::Command;

use kiln_e2e::{Sandbox, kiln_bin};

#[test]
fn version_prints_the_binary_and_answers_docker_templates() {
    let sb = Sandbox::new();
    let text = sb.kiln_ok(["version"]);
    assert!(text.starts_with("Client: kiln\n"), "{text}");
    assert!(
        text.contains(&format!(
            " Version:           {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            " OS/Arch:           linux/{}\n",
            kiln_e2e::host_arch()
        )),
        "{text}"
    );
    // Scripts written for Docker ask for the server's version; kiln has no
    // daemon, so the engine is the binary itself.
    let v = sb.kiln_ok([
        "version",
        "--format",
        "{{.Client.Version}}/{{.Server.Version}}",
    ]);
    assert_eq!(v, format!("{0}/{0}\n", env!("CARGO_PKG_VERSION")));
    let out = sb
        .kiln(["version", "-f", "{{.Client"])
        .output()
        .expect("kiln runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("template parsing error"), "{stderr}");
}

/// Runs bash's completion function for `words` and returns its answers.
fn complete(words: &[&str]) -> Vec<String> {
    let script = format!(
        "source <('{}' completion bash) && COMP_WORDS=({}) && COMP_CWORD={} && _kiln kiln '{}' '{}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        kiln_bin().display(),
        words.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    assert_eq!(complete(&["kiln", "bui"]), ["build", "builder"]);
    assert_eq!(complete(&["kiln", "build", "--no-c"]), ["--no-cache"]);
    for shell in ["zsh", "fish"] {
        let out = Sandbox::new().kiln_ok(["completion", shell]);
        assert!(
            out.contains("build"),
            "{shell} script names the build command"
        );
    }
    let out = Sandbox::new()
        .kiln(["completion", "tcsh"])
        .output()
        .expect("kiln runs");
    // An unknown shell is a usage error (125, as every usage error).
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn engine_info_counts_paused_containers_as_docker() {
    // Docker's info: a paused container is counted as paused, not running.
    let sb = Sandbox::new();
    let fmt = "{{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}}";
    sb.kiln_ok(["pull", "-q", &kiln_e2e::busybox_ref()]);
    sb.kiln_ok([
        "run",
        "-d",
        "--name",
        "napper",
        &kiln_e2e::busybox_ref(),
        "sleep",
        "30",
    ]);
    sb.kiln_ok(["create", "--name", "idle", &kiln_e2e::busybox_ref(), "true"]);
    assert_eq!(sb.kiln_ok(["info", "--format", fmt]), "1 0 1\n");
    sb.kiln_ok(["pause", "napper"]);
    assert_eq!(sb.kiln_ok(["info", "--format", fmt]), "0 1 1\n");
    let text = sb.kiln_ok(["info"]);
    assert!(text.contains("  Paused: 1\n"), "{text}");
    sb.kiln_ok(["unpause", "napper"]);
    assert_eq!(sb.kiln_ok(["info", "--format", fmt]), "1 0 1\n");
    sb.kiln_ok(["rm", "-f", "napper"]);
}

#[test]
fn info_counts_this_stores_containers_and_images() {
    let sb = Sandbox::new();
    let fmt = "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}}";
    assert_eq!(sb.kiln_ok(["info", "--format", fmt]), "0 0 0 0\n");
    sb.kiln_ok(["pull", "-q", &kiln_e2e::busybox_ref()]);
    sb.kiln_ok(["create", "--name", "idle", &kiln_e2e::busybox_ref(), "true"]);
    sb.kiln_ok([
        "run",
        "-d",
        "--name",
        "busy",
        &kiln_e2e::busybox_ref(),
        "sleep",
        "30",
    ]);
    assert_eq!(sb.kiln_ok(["info", "--format", fmt]), "2 1 1 1\n");
    // The storage driver is the snapshotter this store chose.
    let chosen = std::fs::read_to_string(sb.root().join("snapshotter")).expect("store chose");
    assert_eq!(
        sb.kiln_ok(["info", "-f", "{{.Driver}}"]),
        format!("{}\n", chosen.trim())
    );
    let text = sb.kiln_ok(["info"]);
    assert!(text.contains(" Containers: 2\n  Running: 1\n"), "{text}");
    assert!(
        text.contains(&format!(" Docker Root Dir: {}\n", sb.root().display())),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sb.kiln_ok(["info", "-f", "{{json .}}"])).expect("json");
    assert_eq!(
        json["NCPU"].as_u64(),
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64)
    );
    sb.kiln_ok(["rm", "-f", "busy", "idle"]);
}
