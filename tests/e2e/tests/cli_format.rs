//! `--format` (Docker's Go-template subset) on the kiln binary: what
//! Docker's `docker inspect -f` prints for the same templates
//! (moby's integration-cli `docker_cli_inspect_test.go` uses `{{.Id}}`,
//! `{{json .Config}}`, `{{range}}` and `{{index}}` the same way).

use kiln_e2e::{Sandbox, busybox_ref};
use serde_json::Value;

#[test]
fn inspect_format_renders_go_templates_over_the_inspect_object() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let full: Value = serde_json::from_str(&sb.kiln_ok(["image", "inspect", &busybox_ref()]))
        .expect("inspect prints JSON");
    let id = full[0]["Id"]
        .as_str()
        .expect("inspect has an Id")
        .to_owned();

    // One rendered line per object, as Docker prints.
    assert_eq!(
        sb.kiln_ok(["inspect", "-f", "{{.Id}}", &busybox_ref()]),
        format!("{id}\n")
    );
    assert_eq!(
        sb.kiln_ok([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Id}}",
            &busybox_ref(),
            &id
        ]),
        format!("{id} {id}\n{id} {id}\n")
    );
    // `json` prints the sub-object as compact JSON, equal to the full inspect's.
    let cmd = sb.kiln_ok(["inspect", "-f", "{{json .Config.Cmd}}", &busybox_ref()]);
    let cmd: Value = serde_json::from_str(cmd.trim()).expect("json renders JSON");
    assert_eq!(cmd, full[0]["Config"]["Cmd"]);
    // range over a list, index into a list, len, and Go's printing of lists.
    let layers = full[0]["RootFS"]["Layers"]
        .as_array()
        .expect("RootFS.Layers")
        .clone();
    let want: String = layers
        .iter()
        .map(|l| format!("{};", l.as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        sb.kiln_ok([
            "inspect",
            "-f",
            "{{range .RootFS.Layers}}{{.}};{{end}}",
            &busybox_ref()
        ]),
        format!("{want}\n")
    );
    assert_eq!(
        sb.kiln_ok([
            "inspect",
            "-f",
            "{{len .RootFS.Layers}} {{index .RootFS.Layers 0}}",
            &busybox_ref()
        ]),
        format!(
            "{} {}\n",
            layers.len(),
            layers[0].as_str().unwrap_or_default()
        )
    );
    // A missing key prints Go's `<no value>`; an unknown function is an error.
    assert_eq!(
        sb.kiln_ok(["inspect", "-f", "{{.NoSuchKey}}", &busybox_ref()]),
        "<no value>\n"
    );
    let out = sb
        .kiln(["inspect", "-f", "{{nosuch .Id}}", &busybox_ref()])
        .output()
        .expect("kiln runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("function \"nosuch\" not defined"),
        "{stderr}"
    );
    // A broken template is refused before anything is printed.
    let out = sb
        .kiln(["inspect", "-f", "{{.Id", &busybox_ref()])
        .output()
        .expect("kiln runs");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("template parsing error"));
}

#[test]
fn images_format_prints_docker_fields_and_tables() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    sb.kiln_ok(["tag", &busybox_ref(), "kiln-test/fmt:v1"]);
    let short = sb.kiln_ok(["images", "-q"]);
    let short = short.lines().next().expect("one image").to_owned();
    // One line per name, fields as Docker names them.
    let lines = sb.kiln_ok(["images", "--format", "{{.Repository}}|{{.Tag}}|{{.ID}}"]);
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort_unstable();
    let registry_repo = busybox_ref().trim_end_matches(":latest").to_owned();
    let mut want = vec![
        format!("kiln-test/fmt|v1|{short}"),
        format!("{registry_repo}|latest|{short}"),
    ];
    want.sort_unstable();
    assert_eq!(lines, want);
    // `table` prints Docker's headers over aligned columns (width of the
    // widest cell plus three spaces, at least 10).
    let table = sb.kiln_ok([
        "images",
        "--format",
        "table {{.Tag}}\\t{{.ID}}",
        "kiln-test/fmt",
    ]);
    assert_eq!(table, format!("TAG       IMAGE ID\nv1        {short}\n"));
    let created = sb.kiln_ok(["images", "--format", "{{.CreatedAt}}", "kiln-test/fmt"]);
    assert!(created.trim_end().ends_with(" +0000 UTC"), "{created}");
}

/// `kiln ps` lines, sorted, for comparing sets of names.
fn ps_names(sb: &Sandbox, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "--format", "{{.Names}}"];
    args.extend_from_slice(extra);
    let mut names: Vec<String> = sb.kiln_ok(args).lines().map(str::to_owned).collect();
    names.sort_unstable();
    names
}

#[test]
fn ps_format_and_filters_follow_docker() {
    let sb = Sandbox::new();
    let image = busybox_ref();
    sb.kiln_ok(["pull", "-q", &image]);
    sb.kiln_ok([
        "create", "--name", "fresh", "--label", "team=a", &image, "true",
    ]);
    sb.kiln_ok(["run", "--name", "ok", "--label", "team=b", &image, "true"]);
    let out = sb
        .kiln(["run", "--name", "bad", &image, "sh", "-c", "exit 3"])
        .output()
        .expect("kiln runs");
    assert_eq!(out.status.code(), Some(3));
    sb.kiln_ok([
        "run", "-d", "--name", "up", "--label", "team=a", &image, "sleep", "30",
    ]);

    // Without -a only running containers, as Docker.
    assert_eq!(ps_names(&sb, &[]), ["up"]);
    assert_eq!(ps_names(&sb, &["-a"]), ["bad", "fresh", "ok", "up"]);
    // A status filter shows every state it names (moby: TestPsListContainersFilterStatus).
    assert_eq!(ps_names(&sb, &["--filter", "status=exited"]), ["bad", "ok"]);
    assert_eq!(ps_names(&sb, &["-f", "status=created"]), ["fresh"]);
    assert_eq!(ps_names(&sb, &["-a", "-f", "exited=3"]), ["bad"]);
    // Same key: any value; different keys: all of them.
    assert_eq!(
        ps_names(&sb, &["-a", "-f", "label=team=a"]),
        ["fresh", "up"]
    );
    assert_eq!(
        ps_names(&sb, &["-a", "-f", "label=team"]),
        ["fresh", "ok", "up"]
    );
    assert_eq!(
        ps_names(&sb, &["-a", "-f", "name=ok", "-f", "name=bad"]),
        ["bad", "ok"]
    );
    assert_eq!(
        ps_names(&sb, &["-a", "-f", "label=team=a", "-f", "status=running"]),
        ["up"]
    );
    assert_eq!(
        ps_names(&sb, &["-a", "-f", &format!("ancestor={image}")]).len(),
        4
    );
    let id = sb.kiln_ok(["ps", "-q", "-f", "name=up"]);
    assert_eq!(
        ps_names(&sb, &["-a", "-f", &format!("id={}", &id.trim()[..6])]),
        ["up"]
    );
    // A bad filter is refused with Docker's words.
    let out = sb
        .kiln(["ps", "-f", "status=sleeping"])
        .output()
        .expect("kiln runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid filter 'status=sleeping'"));

    // Docker's fields and table headers.
    let line = sb.kiln_ok([
        "ps",
        "--format",
        "{{.Names}} {{.State}} {{.Label \"team\"}} {{.Labels}}",
    ]);
    assert_eq!(line, "up running a team=a\n");
    let table = sb.kiln_ok([
        "ps",
        "-a",
        "-f",
        "name=fresh",
        "--format",
        "table {{.Names}}\\t{{.State}}",
    ]);
    assert_eq!(table, "NAMES     STATE\nfresh     created\n");
    sb.kiln_ok(["rm", "-f", "up", "ok", "bad", "fresh"]);
}
