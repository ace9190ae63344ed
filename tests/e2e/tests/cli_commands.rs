//! Docker's smaller container commands and the management forms, after
//! moby's integration-cli tests: `restart` (docker_cli_restart_test.go: a
//! running container runs again, a stopped one starts), `rename`
//! (docker_cli_rename_test.go: the old name is gone, the same name, an
//! invalid name and a name in use are refused), `port` (a container
//! without published ports lists nothing; a private port has no public
//! one: exit 1), `container prune` (docker_cli_prune_unix_test.go: only
//! stopped containers go, `[y/N]` unless `-f`), and `kiln container ...` /
//! `kiln image ...` as the top-level commands.

use std::io::Write as _;
use std::process::{Output, Stdio};

use kiln_e2e::{Sandbox, busybox_ref};

fn streams(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect(sb: &Sandbox, name: &str, field: &str) -> String {
    sb.kiln_ok(["inspect", "-f", field, name]).trim().to_owned()
}

#[test]
fn clicmd_restart_runs_a_container_again() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    sb.kiln_ok([
        "run",
        "-d",
        "--name",
        "again",
        &busybox_ref(),
        "sleep",
        "60",
    ]);
    let pid = inspect(&sb, "again", "{{.State.Pid}}");
    assert_ne!(pid, "0");
    assert_eq!(sb.kiln_ok(["restart", "-t", "1", "again"]), "again\n");
    assert_eq!(inspect(&sb, "again", "{{.State.Running}}"), "true");
    let new_pid = inspect(&sb, "again", "{{.State.Pid}}");
    assert_ne!(new_pid, pid, "a new init runs");
    assert_ne!(new_pid, "0");
    // A stopped container is started.
    sb.kiln_ok(["stop", "-t", "1", "again"]);
    assert_eq!(inspect(&sb, "again", "{{.State.Running}}"), "false");
    assert_eq!(
        sb.kiln_ok(["container", "restart", "-t", "1", "again"]),
        "again\n"
    );
    assert_eq!(inspect(&sb, "again", "{{.State.Running}}"), "true");
    // An unknown container: Docker's daemon error, exit 1.
    let out = sb.kiln(["restart", "nosuch"]).output().expect("kiln runs");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(streams(&out).1.contains("nosuch"), "{:?}", streams(&out));
    sb.kiln_ok(["rm", "-f", "again"]);
}

#[test]
fn clicmd_rename_refuses_what_docker_refuses() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    sb.kiln_ok(["create", "--name", "first", &busybox_ref(), "true"]);
    sb.kiln_ok(["create", "--name", "other", &busybox_ref(), "true"]);
    let id = inspect(&sb, "first", "{{.Id}}");
    assert_eq!(sb.kiln_ok(["rename", "first", "second"]), "");
    assert_eq!(inspect(&sb, "second", "{{.Name}}"), "/second");
    assert_eq!(inspect(&sb, "second", "{{.Id}}"), id);
    let out = sb.kiln(["inspect", "first"]).output().expect("kiln runs");
    assert_ne!(out.status.code(), Some(0), "the old name is gone");
    let refused = |args: &[&str], says: &str| {
        let out = sb.kiln(args).output().expect("kiln runs");
        let (o, e) = streams(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {o}{e}");
        assert!(e.contains(says), "{args:?}: {e}");
    };
    refused(
        &["rename", "second", "second"],
        "Renaming a container with the same name as its current name",
    );
    refused(
        &["rename", "second", "new:invalid"],
        "Invalid container name",
    );
    refused(&["rename", "second", "other"], "already in use");
    refused(&["rename", "nosuch", "x"], "no such container");
    // The management form, by ID prefix.
    assert_eq!(sb.kiln_ok(["container", "rename", &id[..12], "third"]), "");
    assert_eq!(inspect(&sb, &id, "{{.Name}}"), "/third");
}

#[test]
fn clicmd_port_lists_nothing_kiln_publishes_no_ports() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    sb.kiln_ok(["create", "--name", "noports", &busybox_ref(), "true"]);
    let out = sb.kiln(["port", "noports"]).output().expect("kiln runs");
    assert_eq!(out.status.code(), Some(0), "{:?}", streams(&out));
    assert_eq!(streams(&out).0, "");
    let out = sb
        .kiln(["port", "noports", "80/tcp"])
        .output()
        .expect("kiln runs");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
    assert!(
        streams(&out)
            .1
            .contains("Error: No public port '80/tcp' published for noports"),
        "{:?}",
        streams(&out)
    );
    let out = sb.kiln(["port", "nosuch"]).output().expect("kiln runs");
    assert_eq!(out.status.code(), Some(1), "{:?}", streams(&out));
}

#[test]
fn clicmd_container_prune_removes_only_stopped_containers() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let created = sb.kiln_ok(["create", &busybox_ref(), "true"]);
    let exited = sb.kiln_ok(["run", "-d", &busybox_ref(), "true"]);
    sb.kiln_ok(["wait", exited.trim()]);
    sb.kiln_ok([
        "run",
        "-d",
        "--name",
        "stays",
        &busybox_ref(),
        "sleep",
        "60",
    ]);
    // Without -f, Docker's question; anything but y keeps everything.
    let mut child = sb
        .kiln(["container", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"n\n")
        .expect("answer");
    let out = child.wait_with_output().expect("kiln ends");
    assert_eq!(out.status.code(), Some(0), "{:?}", streams(&out));
    assert!(
        streams(&out)
            .0
            .contains("WARNING! This will remove all stopped containers."),
        "{:?}",
        streams(&out)
    );
    assert_eq!(sb.kiln_ok(["ps", "-aq"]).lines().count(), 3);

    let text = sb.kiln_ok(["container", "prune", "-f"]);
    assert!(text.starts_with("Deleted Containers:\n"), "{text}");
    assert!(text.contains(created.trim()), "{text}");
    assert!(text.contains(exited.trim()), "{text}");
    assert!(text.contains("Total reclaimed space: "), "{text}");
    let left = sb.kiln_ok(["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left, "stays\n");
    // Nothing left to prune: only the total.
    sb.kiln_ok(["rm", "-f", "stays"]);
    assert_eq!(
        sb.kiln_ok(["container", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
}

#[test]
fn clicmd_management_forms_are_the_top_level_commands() {
    let sb = Sandbox::new();
    let pulled = sb.kiln_ok(["image", "pull", "-q", &busybox_ref()]);
    assert_eq!(pulled, sb.kiln_ok(["pull", "-q", &busybox_ref()]));
    sb.kiln_ok(["image", "tag", &busybox_ref(), "mgmt/box:1"]);
    let listed = sb.kiln_ok(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.lines().any(|l| l == "mgmt/box:1"), "{listed}");
    assert!(
        sb.kiln_ok(["image", "history", "-q", "mgmt/box:1"])
            .lines()
            .count()
            >= 1
    );
    assert_eq!(
        sb.kiln_ok(["container", "run", "--rm", "mgmt/box:1", "echo", "hi"]),
        "hi\n"
    );
    let id = sb.kiln_ok([
        "container",
        "create",
        "--name",
        "m",
        "mgmt/box:1",
        "sh",
        "-c",
        "echo from m",
    ]);
    assert_eq!(sb.kiln_ok(["container", "start", "-a", "m"]), "from m\n");
    assert_eq!(sb.kiln_ok(["container", "logs", "m"]), "from m\n");
    assert_eq!(sb.kiln_ok(["container", "wait", "m"]), "0\n");
    assert_eq!(sb.kiln_ok(["container", "rm", "m"]), "m\n");
    let out = sb.kiln(["inspect", id.trim()]).output().expect("kiln runs");
    assert_ne!(out.status.code(), Some(0), "removed");
    let saved = sb.work().join("box.tar");
    sb.kiln_ok([
        "image",
        "save",
        "-o",
        &saved.to_string_lossy(),
        "mgmt/box:1",
    ]);
    sb.kiln_ok(["image", "rm", "mgmt/box:1"]);
    let loaded = sb.kiln_ok(["image", "load", "-i", &saved.to_string_lossy()]);
    assert!(loaded.contains("mgmt/box:1"), "{loaded}");
}
