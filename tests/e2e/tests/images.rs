//! The image commands end to end: the real `kiln` binary against the real
//! registries `cargo xtask e2e` started (pull, push, tag, images, rmi,
//! inspect, history, save, load, import, login), checked where possible with
//! a tool independent of kiln (skopeo), plus the bad inputs a user meets
//! (a registry that is down, an image that does not exist, an invalid name).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kiln_e2e::{
    DockerImage, Sandbox, auth_busybox_ref, auth_credentials, auth_registry, busybox_ref,
    docker_available, docker_ok, free_port, host_arch, index_ref, registry, run_ok, skopeo_inspect,
};
use serde_json::Value;

/// kiln's exit status for its own errors (Docker's 125).
const KILN_ERROR: i32 = 125;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`, expects it to fail, and returns (exit code, stdout, stderr).
fn fails(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("cannot start kiln");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "{:?} should have failed\nstdout:\n{stdout}\nstderr:\n{stderr}",
        cmd.get_args().collect::<Vec<_>>()
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The lines kiln printed on stderr, without the one-time note on which
/// snapshotter a new store uses.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("snapshotter"))
        .collect()
}

/// `kiln image inspect NAME` parsed: the one object of the array.
fn inspect(sb: &Sandbox, name: &str) -> Value {
    let out = sb.kiln_ok(["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let arr = v.as_array().expect("inspect prints an array");
    assert_eq!(arr.len(), 1, "{v}");
    arr[0].clone()
}

fn image_id(sb: &Sandbox, name: &str) -> String {
    inspect(sb, name)["Id"]
        .as_str()
        .expect("Id is a string")
        .to_owned()
}

/// The full image IDs of `kiln images -q --no-trunc`.
fn image_ids(sb: &Sandbox) -> Vec<String> {
    sb.kiln_ok(["images", "-q", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Splits a table row printed with Docker's column layout (columns separated
/// by at least two spaces).
fn columns(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The manifest digest skopeo sees for a reference on the open registry.
fn remote_digest(reference: &str) -> String {
    let out = skopeo_inspect(reference, &["--no-creds"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    v["Digest"].as_str().expect("a Digest").to_owned()
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Files in the store's `tmp/` other than its `.active` lock file: what an
/// interrupted or failed operation would have left behind.
fn tmp_leftovers(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    files_under(&sb.root().join("tmp"))
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != ".active"))
        .collect()
}

/// A repository name no other test uses, on the open registry.
fn fresh_repo(what: &str) -> String {
    format!("{}/e2e-{what}-{}", registry(), free_port())
}

// ---------------------------------------------------------------- pull

#[test]
fn pull_by_tag_prints_progress_then_the_reference() {
    let sb = Sandbox::new();
    let out = sb.kiln_ok(["pull", &busybox_ref()]);
    assert!(out.contains("latest: Pulling from"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert_eq!(out.lines().last(), Some(busybox_ref().as_str()), "{out}");
    // The manifest digest kiln recorded is the one the registry serves.
    let digest = remote_digest(&busybox_ref());
    assert!(out.contains(&digest), "{out}\nexpected {digest}");
    let v = inspect(&sb, &busybox_ref());
    assert_eq!(v["RepoTags"], serde_json::json!([busybox_ref()]));
    // As Docker, progress lines are for layers, not for the config blob
    // (whose digest is the image ID).
    let id = v["Id"].as_str().expect("Id");
    assert!(!out.contains(&format!("{}:", &id[7..19])), "{out}");
    let layer_lines = out.lines().filter(|l| l.ends_with(": Pulling fs layer"));
    assert_eq!(layer_lines.count(), 1, "{out}");
    // A second pull finds everything in place.
    let again = sb.kiln_ok(["pull", &busybox_ref()]);
    assert!(again.contains("Status: Image is up to date for"), "{again}");
}

#[test]
fn pull_quiet_prints_only_the_reference() {
    let sb = Sandbox::new();
    let out = sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    assert_eq!(out, format!("{}\n", busybox_ref()));
}

#[test]
fn pull_by_digest_records_the_digest() {
    let sb = Sandbox::new();
    let digest = remote_digest(&busybox_ref());
    let by_digest = format!("{}/busybox@{digest}", registry());
    let out = sb.kiln_ok(["pull", "-q", &by_digest]);
    assert_eq!(out.trim(), by_digest);
    let v = inspect(&sb, &by_digest);
    let digests: Vec<&str> = v["RepoDigests"]
        .as_array()
        .expect("RepoDigests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(digests, [by_digest.as_str()], "{v}");
    // Same image as when pulled by tag.
    let sb2 = Sandbox::new();
    sb2.kiln_ok(["pull", "-q", &busybox_ref()]);
    assert_eq!(v["Id"], image_id(&sb2, &busybox_ref()));
    // The digest pull is shown with `images --digests` as <none> tag.
    let listing = sb.kiln_ok(["images", "--digests"]);
    assert!(listing.contains(&digest), "{listing}");
}

#[test]
fn pull_of_an_index_picks_the_host_platform() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &index_ref()]);
    let v = inspect(&sb, &index_ref());
    assert_eq!(v["Architecture"], host_arch(), "{v}");
    assert_eq!(v["Os"], "linux");
}

#[test]
fn pull_platform_picks_the_other_entry() {
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let sb = Sandbox::new();
    sb.kiln_ok([
        "pull",
        "-q",
        "--platform",
        &format!("linux/{other}"),
        &index_ref(),
    ]);
    let v = inspect(&sb, &index_ref());
    assert_eq!(v["Architecture"], other, "{v}");
    // Its ID differs from the host entry's (each entry has its own config).
    let host = Sandbox::new();
    host.kiln_ok(["pull", "-q", &index_ref()]);
    assert_ne!(v["Id"], image_id(&host, &index_ref()));
}

#[test]
fn pull_of_an_unknown_platform_lists_the_available_ones() {
    let sb = Sandbox::new();
    let (code, _, stderr) = fails(sb.kiln(["pull", "--platform", "linux/s390x", &index_ref()]));
    assert_eq!(code, KILN_ERROR, "{stderr}");
    assert!(stderr.contains("linux/s390x"), "{stderr}");
    assert!(stderr.contains("linux/amd64"), "{stderr}");
    assert!(stderr.contains("linux/arm64"), "{stderr}");
    assert!(image_ids(&sb).is_empty());
}

/// Docker pulls a single-platform image of another platform (there is no
/// choice to make) and warns that it does not match; a matching one, or
/// the host's entry of an index, gets no warning (issue #16, bug 8).
#[test]
fn pull_platform_of_a_single_platform_image_warns_when_it_differs() {
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let sb = Sandbox::new();
    let out = sb.kiln_ok([
        "pull",
        "--platform",
        &format!("linux/{other}"),
        &busybox_ref(),
    ]);
    let want = format!(
        "WARNING: image with reference {} was found but does not match the specified platform: wanted linux/{other}, actual: linux/{}",
        busybox_ref().trim_end_matches(":latest"),
        host_arch()
    );
    assert!(out.contains(&want), "{out}");
    assert_eq!(inspect(&sb, &busybox_ref())["Architecture"], host_arch());
    let out = sb.kiln_ok([
        "pull",
        "--platform",
        &format!("linux/{}", host_arch()),
        &busybox_ref(),
    ]);
    assert!(!out.contains("WARNING"), "{out}");
    let out = sb.kiln_ok([
        "pull",
        "--platform",
        &format!("linux/{other}"),
        &index_ref(),
    ]);
    assert!(!out.contains("WARNING"), "{out}");
}

// ---------------------------------------------------------------- images

#[test]
fn images_shows_docker_columns_quiet_ids_and_digests() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let out = sb.kiln_ok(["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        columns(lines[0]),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    );
    let row = columns(lines[1]);
    assert_eq!(row.len(), 5, "{out}");
    assert_eq!(row[0], format!("{}/busybox", registry()));
    assert_eq!(row[1], "latest");
    assert_eq!(row[2], short);
    assert!(row[3].ends_with("ago") || row[3] == "N/A", "{out}");
    assert!(row[4].ends_with("B"), "size in bytes units: {out}");
    // The header's columns line up with the row's.
    assert_eq!(lines[0].find("IMAGE ID"), lines[1].find(short), "{out}");

    assert_eq!(sb.kiln_ok(["images", "-q"]), format!("{short}\n"));
    assert_eq!(image_ids(&sb), std::slice::from_ref(&id));

    let out = sb.kiln_ok(["images", "--digests"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    );
    let row = columns(lines[1]);
    assert_eq!(row[2], remote_digest(&busybox_ref()), "{out}");
    assert_eq!(row[3], short);

    // Filtering by repository.
    let out = sb.kiln_ok(["images", &format!("{}/busybox", registry())]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = sb.kiln_ok(["images", &format!("{}/nosuch", registry())]);
    assert_eq!(out.lines().count(), 1, "{out}");
}

// ---------------------------------------------------------------- tag and push

#[test]
fn tag_push_and_pull_back_keeps_the_image_id() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    let target = format!("{}:v1", fresh_repo("pushed"));
    sb.kiln_ok(["tag", &busybox_ref(), &target]);
    assert_eq!(image_id(&sb, &target), id);
    let out = sb.kiln_ok(["push", &target]);
    assert!(out.contains("The push refers to repository"), "{out}");
    assert!(
        !out.contains(&format!("{}:", &id[7..19])),
        "no line for the config: {out}"
    );
    let last = out.lines().last().expect("push prints a summary");
    assert!(
        last.starts_with("v1: digest: sha256:") && last.contains(" size: "),
        "{out}"
    );
    let pushed_digest = last
        .split_whitespace()
        .nth(2)
        .expect("a digest after `digest:`")
        .to_owned();

    // skopeo, independent of kiln, reads what kiln pushed.
    let out = skopeo_inspect(&target, &["--no-creds"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    assert_eq!(v["Digest"], pushed_digest.as_str());
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{v}");
    let cfg = skopeo_inspect(&target, &["--no-creds", "--config"]);
    assert!(cfg.status.success(), "{}", text(&cfg.stderr));
    let cfg: Value = serde_json::from_slice(&cfg.stdout).expect("skopeo config JSON");
    assert_eq!(cfg["architecture"], host_arch());
    assert_eq!(
        cfg["rootfs"]["diff_ids"],
        inspect(&sb, &target)["RootFS"]["Layers"],
        "the pushed config is the image's config"
    );

    // A second push finds every blob in place.
    let again = sb.kiln_ok(["push", &target]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains(&format!("{}:", &id[7..19])), "{again}");

    // Pulled into a fresh store, it is the same image.
    let fresh = Sandbox::new();
    fresh.kiln_ok(["pull", "-q", &target]);
    assert_eq!(image_id(&fresh, &target), id);
    let v = inspect(&fresh, &target);
    assert_eq!(
        v["RepoDigests"],
        serde_json::json!([format!(
            "{}@{pushed_digest}",
            target.rsplit_once(':').expect("a tag").0
        )])
    );
}

#[test]
fn tag_refuses_invalid_targets() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let (code, _, stderr) = fails(sb.kiln(["tag", &busybox_ref(), "Upper/Case:1"]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("invalid reference"), "{stderr}");
    let (code, _, stderr) = fails(sb.kiln(["tag", "nosuch:1", "x/y:1"]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("no such image"), "{stderr}");
}

// ---------------------------------------------------------------- rmi

#[test]
fn rmi_untags_then_deletes() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    sb.kiln_ok(["tag", &busybox_ref(), "local/copy:1"]);

    // Removing one of two names only untags.
    let out = sb.kiln_ok(["rmi", "local/copy:1"]);
    assert_eq!(out.trim(), "Untagged: local/copy:1");
    assert_eq!(image_ids(&sb), std::slice::from_ref(&id));
    assert_eq!(
        inspect(&sb, &id)["RepoTags"],
        serde_json::json!([busybox_ref()])
    );

    // By ID with two names: refused without -f.
    sb.kiln_ok(["tag", &busybox_ref(), "local/copy:2"]);
    let (code, _, stderr) = fails(sb.kiln(["rmi", &id]));
    assert_ne!(code, 0);
    assert!(stderr.contains("must be forced"), "{stderr}");
    sb.kiln_ok(["rmi", "local/copy:2"]);

    // The last name deletes the image, its layers and blobs.
    let blobs = sb.root().join("blobs");
    assert!(!files_under(&blobs).is_empty());
    let out = sb.kiln_ok(["rmi", &busybox_ref()]);
    assert!(
        out.contains(&format!("Untagged: {}", busybox_ref())),
        "{out}"
    );
    let digest = remote_digest(&busybox_ref());
    assert!(
        out.contains(&format!("Untagged: {}/busybox@{digest}", registry())),
        "{out}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(image_ids(&sb).is_empty());
    assert!(
        files_under(&blobs).is_empty(),
        "blobs left: {:?}",
        files_under(&blobs)
    );
    let (code, _, stderr) = fails(sb.kiln(["rmi", &busybox_ref()]));
    assert_ne!(code, 0);
    assert!(stderr.contains("no such image"), "{stderr}");
}

#[test]
fn rmi_refuses_an_image_a_container_uses_unless_forced() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    let container = sb.kiln_ok(["create", &busybox_ref(), "true"]);
    let container = container.trim();
    assert!(container.len() >= 12, "{container}");

    let (code, _, stderr) = fails(sb.kiln(["rmi", &busybox_ref()]));
    assert_ne!(code, 0);
    // Docker's wording (moby's ImageDelete): the name is what is refused.
    assert!(
        stderr.contains(&format!(
            "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image",
            busybox_ref(),
            &container[..12]
        )),
        "{stderr}"
    );
    assert_eq!(image_ids(&sb), std::slice::from_ref(&id));

    let out = sb.kiln_ok(["rmi", "-f", &busybox_ref()]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(image_ids(&sb).is_empty());
    // The container is still listed and can be removed.
    let ps = sb.kiln_ok(["ps", "-a", "-q"]);
    assert!(ps.contains(&container[..12]), "{ps}");
    sb.kiln_ok(["rm", container]);
}

// ---------------------------------------------------------------- ID prefixes

/// `tar -C tree -cf tar .` with the system tar (independent of kiln's code).
fn tar_dir(tree: &Path, tar: &Path) {
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(tree)
            .arg("-cf")
            .arg(tar)
            .arg("."),
    );
}

/// A one-file rootfs tarball whose file content is `tag`.
fn tiny_tarball(dir: &Path, tag: &str) -> std::path::PathBuf {
    let tree = dir.join(format!("tree-{tag}"));
    std::fs::create_dir_all(&tree).expect("mkdir");
    std::fs::write(tree.join("marker"), tag).expect("write marker");
    let tar = dir.join(format!("{tag}.tar"));
    tar_dir(&tree, &tar);
    tar
}

#[test]
fn id_prefixes_resolve_when_unique_and_list_candidates_when_ambiguous() {
    let sb = Sandbox::new();
    // 17 images have two IDs sharing a first hex digit (pigeonhole).
    let mut ids: Vec<String> = Vec::new();
    for i in 0..17 {
        let tar = tiny_tarball(&sb.work(), &format!("img{i}"));
        let out = sb.kiln_ok([
            "import".as_ref(),
            tar.as_os_str(),
            format!("local/prefix:{i}").as_ref(),
        ]);
        let id = out.trim().to_owned();
        assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
        ids.push(id);
    }
    let hex: Vec<&str> = ids.iter().map(|i| &i["sha256:".len()..]).collect();
    // The shortest prefix of ids[0] no other ID shares works, bare and with sha256:.
    let unique_len = (1..=64)
        .find(|&n| hex[1..].iter().all(|h| h[..n] != hex[0][..n]))
        .expect("IDs differ");
    let prefix = &hex[0][..unique_len];
    assert_eq!(image_id(&sb, prefix), ids[0]);
    assert_eq!(image_id(&sb, &format!("sha256:{prefix}")), ids[0]);
    let hist = sb.kiln_ok(["history", "-q", prefix]);
    assert!(hist.starts_with(&hex[0][..12]), "{hist}");

    // A first digit two IDs share is ambiguous: the error lists both.
    let (a, b) = (0..hex.len())
        .flat_map(|i| (i + 1..hex.len()).map(move |j| (i, j)))
        .find(|&(i, j)| hex[i][..1] == hex[j][..1])
        .expect("pigeonhole");
    let (code, _, stderr) = fails(sb.kiln(["history", &hex[a][..1]]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("ambiguous"), "{stderr}");
    for id in [hex[a], hex[b]] {
        assert!(stderr.contains(&id[..12]), "{id} missing from: {stderr}");
    }
    let (_, _, stderr) = fails(sb.kiln(["rmi", &hex[a][..1]]));
    assert!(stderr.contains("ambiguous"), "{stderr}");
    assert_eq!(image_ids(&sb).len(), 17, "nothing removed");
    // A prefix matching nothing.
    let absent = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| hex.iter().all(|h| !h.starts_with(d.as_str())))
        .unwrap_or_else(|| "ffffffffffffffffffff0".to_owned());
    let long_absent = format!("{absent}{}", "0".repeat(11));
    let (code, _, stderr) = fails(sb.kiln(["history", &long_absent]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("no such image"), "{stderr}");
}

// ---------------------------------------------------------------- inspect and history

#[test]
fn inspect_shows_docker_fields() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let v = inspect(&sb, &busybox_ref());
    let id = v["Id"].as_str().expect("Id");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{v}");
    assert_eq!(v["RepoTags"], serde_json::json!([busybox_ref()]));
    let digest = remote_digest(&busybox_ref());
    assert_eq!(
        v["RepoDigests"],
        serde_json::json!([format!("{}/busybox@{digest}", registry())])
    );
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["sh"]), "{v}");
    assert!(v["Config"]["Env"].to_string().contains("PATH="), "{v}");
    assert_eq!(v["RootFS"]["Type"], "layers");
    let layers = v["RootFS"]["Layers"].as_array().expect("RootFS.Layers");
    assert_eq!(layers.len(), 1, "{v}");
    assert!(layers[0].as_str().is_some_and(|l| l.starts_with("sha256:")));
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["Os"], "linux");
    assert!(v["Size"].as_u64().is_some_and(|s| s > 100_000), "{v}");
    assert!(v["Created"].as_str().is_some_and(|c| !c.is_empty()), "{v}");

    // `kiln inspect` (any object) finds the image too; several names give several objects.
    let out = sb.kiln_ok(["inspect", &busybox_ref(), id]);
    let both: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(both.as_array().map(Vec::len), Some(2));
    assert_eq!(both[1]["Id"], id);

    // An unknown name: non-zero, the known one still printed.
    let out = sb
        .kiln(["image", "inspect", &busybox_ref(), "nosuch:latest"])
        .output()
        .expect("run kiln");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed.as_array().map(Vec::len), Some(1));
}

#[test]
fn history_lists_the_layers() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    let out = sb.kiln_ok(["history", &busybox_ref()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    );
    assert!(lines.len() >= 2, "{out}");
    // The newest entry is the image itself.
    assert!(lines[1].starts_with(&id[7..19]), "{out}");
    let q = sb.kiln_ok(["history", "-q", "--no-trunc", &busybox_ref()]);
    assert_eq!(q.lines().next(), Some(id.as_str()), "{q}");

    // An imported image: one entry with the import message as comment.
    let tar = tiny_tarball(&sb.work(), "hist");
    sb.kiln_ok([
        "import".as_ref(),
        "-m".as_ref(),
        "made for history".as_ref(),
        tar.as_os_str(),
        "local/hist:1".as_ref(),
    ]);
    let out = sb.kiln_ok(["history", "local/hist:1"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("made for history"), "{out}");
}

// ---------------------------------------------------------------- save, load, import

fn save_load_roundtrip(format: &str, skopeo_transport: &str) {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_id(&sb, &busybox_ref());
    let file = sb.work().join(format!("saved-{format}.tar"));
    sb.kiln_ok([
        "save".as_ref(),
        "--format".as_ref(),
        format.as_ref(),
        "-o".as_ref(),
        file.as_os_str(),
        busybox_ref().as_ref(),
    ]);
    assert!(file.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(sb.work())
        .expect("work dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // skopeo reads the archive (independent check).
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("{skopeo_transport}:{}", file.display()))
        .output()
        .expect("cannot run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {skopeo_transport}: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{v}");

    // Loaded into a fresh store: same ID and name, and it runs.
    let fresh = Sandbox::new();
    let out = fresh.kiln_ok(["load".as_ref(), "-i".as_ref(), file.as_os_str()]);
    assert!(
        out.contains(&format!("Loaded image: {}", busybox_ref())),
        "{out}"
    );
    assert_eq!(image_id(&fresh, &busybox_ref()), id);
    let out = fresh.kiln_ok(["run", "--rm", &busybox_ref(), "echo", "loaded"]);
    assert_eq!(out, "loaded\n");

    // Loading from stdin works too.
    let stdin_store = Sandbox::new();
    let out = run_ok(
        stdin_store
            .kiln(["load", "-q"])
            .stdin(std::fs::File::open(&file).expect("open archive")),
    );
    assert_eq!(text(&out.stdout).trim(), busybox_ref());
    assert_eq!(image_id(&stdin_store, &busybox_ref()), id);
}

#[test]
fn save_docker_archive_then_load() {
    save_load_roundtrip("docker", "docker-archive");
}

#[test]
fn save_oci_archive_then_load() {
    save_load_roundtrip("oci", "oci-archive");
}

#[test]
fn save_to_stdout_and_of_an_unknown_image() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let file = sb.work().join("stdout.tar");
    run_ok(
        sb.kiln(["save", &busybox_ref()])
            .stdout(std::fs::File::create(&file).expect("create")),
    );
    let fresh = Sandbox::new();
    fresh.kiln_ok(["load".as_ref(), "-i".as_ref(), file.as_os_str()]);
    assert_eq!(
        image_id(&fresh, &busybox_ref()),
        image_id(&sb, &busybox_ref())
    );

    let out_file = sb.work().join("never.tar");
    let (code, _, stderr) = fails(sb.kiln([
        "save".as_ref(),
        "-o".as_ref(),
        out_file.as_os_str(),
        "nosuch:1".as_ref(),
    ]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("no such image"), "{stderr}");
    assert!(!out_file.exists());

    let (code, _, stderr) = fails(sb.kiln(["save", "--format", "zip", &busybox_ref()]));
    assert_eq!(code, KILN_ERROR);
    assert!(stderr.contains("--format"), "{stderr}");
}

#[test]
fn load_of_a_file_that_is_not_an_archive_fails_cleanly() {
    let sb = Sandbox::new();
    let junk = sb.work().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all").expect("write");
    let (code, _, stderr) = fails(sb.kiln(["load".as_ref(), "-i".as_ref(), junk.as_os_str()]));
    assert_eq!(code, KILN_ERROR);
    assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
    assert!(image_ids(&sb).is_empty());
    assert!(tmp_leftovers(&sb).is_empty());
}

/// A root filesystem tarball with the host's static busybox as /bin/sh.
fn busybox_rootfs_tarball(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("rootfs");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("copy /bin/busybox (package busybox-static)");
    for applet in ["sh", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(tree.join("etc/imported"), "from a tarball\n").expect("write");
    let tar = dir.join("rootfs.tar");
    tar_dir(&tree, &tar);
    tar
}

#[test]
fn import_a_rootfs_tarball_then_run_it() {
    let sb = Sandbox::new();
    let tar = busybox_rootfs_tarball(&sb.work());
    let out = sb.kiln_ok([
        "import".as_ref(),
        "--change".as_ref(),
        "ENV GREETING=imported".as_ref(),
        tar.as_os_str(),
        "local/imported:1".as_ref(),
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:"), "{out}");
    let v = inspect(&sb, "local/imported:1");
    assert_eq!(v["Id"], id);
    assert_eq!(v["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["Architecture"], host_arch());
    assert!(
        v["Config"]["Env"].to_string().contains("GREETING=imported"),
        "{v}"
    );

    let out = sb.kiln_ok([
        "run",
        "--rm",
        "local/imported:1",
        "/bin/sh",
        "-c",
        "cat /etc/imported; echo $GREETING",
    ]);
    assert_eq!(out, "from a tarball\nimported\n");

    // From stdin, without a name: a dangling image listed as <none>.
    let out = run_ok(
        sb.kiln(["import", "-"])
            .stdin(std::fs::File::open(&tar).expect("open tarball")),
    );
    let id2 = text(&out.stdout).trim().to_owned();
    assert!(id2.starts_with("sha256:"), "{id2}");
    let listing = sb.kiln_ok(["images"]);
    assert!(listing.contains("<none>"), "{listing}");
    assert_eq!(image_ids(&sb).len(), 2);
}

// ---------------------------------------------------------------- login and auth

#[test]
fn pulling_from_the_auth_registry_without_login_says_to_log_in() {
    let sb = Sandbox::new();
    let (code, _, stderr) = fails(sb.kiln(["pull", &auth_busybox_ref()]));
    assert_eq!(code, KILN_ERROR, "{stderr}");
    let lines = error_lines(&stderr);
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.contains("kiln login"), "{stderr}");
    assert!(last.contains(&auth_registry()), "{stderr}");
    assert!(image_ids(&sb).is_empty());
    assert!(tmp_leftovers(&sb).is_empty());
}

#[test]
fn login_then_pull_and_push_on_the_auth_registry() {
    let sb = Sandbox::new();
    let (user, pass) = auth_credentials();

    // A wrong password is refused and nothing is written.
    let mut child = sb
        .kiln(["login", "-u", &user, "--password-stdin", &auth_registry()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"wrong\n")
        .expect("write password");
    let out = child.wait_with_output().expect("kiln login");
    assert!(!out.status.success(), "a wrong password must fail");
    let config = sb.home().join(".docker/config.json");
    let stored = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(!stored.contains(&auth_registry()), "{stored}");

    let mut child = sb
        .kiln(["login", "-u", &user, "--password-stdin", &auth_registry()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pass}\n").as_bytes())
        .expect("write password");
    let out: Output = child.wait_with_output().expect("kiln login");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Login Succeeded"));
    // The credentials are in Docker's config file.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config.json written"))
            .expect("config.json is JSON");
    assert!(cfg["auths"][auth_registry()]["auth"].is_string(), "{cfg}");

    sb.kiln_ok(["pull", "-q", &auth_busybox_ref()]);
    let target = format!("{}/e2e-auth-push:1", auth_registry());
    sb.kiln_ok(["tag", &auth_busybox_ref(), &target]);
    sb.kiln_ok(["push", "-q", &target]);
    let out = skopeo_inspect(&target, &["--creds", &format!("{user}:{pass}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // After logout, the registry refuses again.
    let out = sb.kiln_ok(["logout", &auth_registry()]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let fresh_store = Sandbox::new();
    std::fs::create_dir_all(fresh_store.home().join(".docker")).expect("mkdir");
    std::fs::copy(&config, fresh_store.home().join(".docker/config.json")).expect("copy config");
    let (_, _, stderr) = fails(fresh_store.kiln(["pull", &target]));
    assert!(stderr.contains("kiln login"), "{stderr}");
}

// ---------------------------------------------------------------- bad input

#[test]
fn a_registry_that_is_down_gives_one_clear_line() {
    let sb = Sandbox::new();
    let down = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = fails(sb.kiln(["pull", &format!("{down}/busybox:latest")]));
    assert_eq!(code, KILN_ERROR, "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(lines[0].contains(&down), "{stderr}");
    assert!(lines[0].contains("cannot reach"), "{stderr}");
    assert!(!stdout.contains("Downloaded"), "{stdout}");
    assert!(image_ids(&sb).is_empty());
    assert!(tmp_leftovers(&sb).is_empty(), "{:?}", tmp_leftovers(&sb));
    assert!(files_under(&sb.root().join("blobs")).is_empty());

    // Pushing there fails the same way.
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let target = format!("{down}/busybox:latest");
    sb.kiln_ok(["tag", &busybox_ref(), &target]);
    let (code, _, stderr) = fails(sb.kiln(["push", &target]));
    assert_eq!(code, KILN_ERROR, "{stderr}");
    assert!(stderr.contains(&down), "{stderr}");
}

#[test]
fn a_missing_image_is_reported_as_not_found() {
    let sb = Sandbox::new();
    let missing = format!("{}/nosuch-repo:latest", registry());
    let (code, _, stderr) = fails(sb.kiln(["pull", &missing]));
    assert_eq!(code, KILN_ERROR);
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("image not found"), "{stderr}");
    assert!(lines[0].contains("nosuch-repo"), "{stderr}");

    // An existing repository without that tag.
    let missing_tag = format!("{}/busybox:no-such-tag", registry());
    let (_, _, stderr) = fails(sb.kiln(["pull", &missing_tag]));
    assert!(stderr.contains("image not found"), "{stderr}");
    assert!(stderr.contains("no-such-tag"), "{stderr}");

    // A digest the registry does not have.
    let missing_digest = format!("{}/busybox@sha256:{}", registry(), "0".repeat(64));
    let (_, _, stderr) = fails(sb.kiln(["pull", &missing_digest]));
    assert!(stderr.contains("image not found"), "{stderr}");
    assert!(tmp_leftovers(&sb).is_empty());

    // Local commands on an image the store does not have.
    for args in [
        vec!["history", "nosuch:1"],
        vec!["rmi", "nosuch:1"],
        vec!["push", "nosuch:1"],
    ] {
        let (code, _, stderr) = fails(sb.kiln(&args));
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains("no such image"), "{args:?}: {stderr}");
    }
}

#[test]
fn an_invalid_reference_is_a_clear_error() {
    let sb = Sandbox::new();
    let upper = format!("{}/BusyBox:latest", registry());
    let (code, _, stderr) = fails(sb.kiln(["pull", &upper]));
    assert_eq!(code, KILN_ERROR);
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("invalid reference"), "{stderr}");
    assert!(lines[0].contains("BusyBox"), "{stderr}");
    assert!(lines[0].contains("lowercase"), "{stderr}");
    for bad in ["busybox:bad tag", "busybox:-dash", "busybox@sha256:xyz"] {
        let (code, _, stderr) = fails(sb.kiln(["pull", bad]));
        assert_eq!(code, KILN_ERROR, "{bad}");
        assert!(stderr.contains("invalid reference"), "{bad}: {stderr}");
    }
    assert!(files_under(&sb.root().join("blobs")).is_empty());
}

// ---------------------------------------------------------------- prune and df

#[test]
fn image_prune_removes_dangling_images_and_df_reports_usage() {
    let sb = Sandbox::new();
    let first = tiny_tarball(&sb.work(), "first");
    let second = tiny_tarball(&sb.work(), "second");
    let old = sb.kiln_ok([
        "import".as_ref(),
        first.as_os_str(),
        "local/prune:1".as_ref(),
    ]);
    // The name moves to the new image; the old one is left dangling.
    let new = sb.kiln_ok([
        "import".as_ref(),
        second.as_os_str(),
        "local/prune:1".as_ref(),
    ]);
    let (old, new) = (old.trim().to_owned(), new.trim().to_owned());
    assert_ne!(old, new);
    assert_eq!(image_ids(&sb).len(), 2);
    assert_eq!(inspect(&sb, &old)["RepoTags"], serde_json::json!([]));

    let df = sb.kiln_ok(["system", "df"]);
    let header = df.lines().next().expect("a header");
    assert_eq!(columns(header), ["TYPE", "TOTAL", "SIZE", "RECLAIMABLE"]);
    let images_row = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .map(columns)
        .unwrap_or_else(|| panic!("no Images row: {df}"));
    assert_eq!(images_row[1], "2", "{df}");

    let out = sb.kiln_ok(["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(image_ids(&sb), std::slice::from_ref(&new));

    // -a removes tagged images no container uses.
    sb.kiln_ok(["image", "prune", "-a", "-f"]);
    assert!(image_ids(&sb).is_empty());
    assert!(files_under(&sb.root().join("blobs")).is_empty());
}

// ---------------------------------------------------------------- compression and Docker interop

/// A one-layer busybox image made with `kiln import` (kept uncompressed,
/// as kiln keeps local layers), with an environment value no other test
/// uses so no daemon has it already; returns the kiln image ID.
fn imported_image(sb: &Sandbox, name: &str, marker: &str) -> String {
    let tar = busybox_rootfs_tarball(&sb.work());
    let out = sb.kiln_ok([
        "import".as_ref(),
        "-c".as_ref(),
        format!("ENV MARKER={marker}").as_ref(),
        "-c".as_ref(),
        r#"CMD ["/bin/sh", "-c", "cat /etc/imported; echo $MARKER"]"#.as_ref(),
        tar.as_os_str(),
        name.as_ref(),
    ]);
    out.trim().to_owned()
}

/// The raw manifest skopeo reads for `reference` on the open registry.
fn remote_manifest(reference: &str) -> Value {
    let out = skopeo_inspect(reference, &["--no-creds", "--raw"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON manifest")
}

/// The first bytes of a blob on the open registry (plain HTTP GET).
fn remote_blob_head(repo_ref: &str, digest: &str) -> Vec<u8> {
    let (host, rest) = repo_ref.split_once('/').expect("host/repo");
    let repo = rest.split(':').next().expect("repo");
    let port: u16 = host
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let req = format!("GET /v2/{repo}/blobs/{digest} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect registry");
    s.write_all(req.as_bytes()).expect("send");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut all).expect("read");
    let mut body = match all.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => all.split_off(i + 4),
        None => panic!("no HTTP body: {}", text(&all)),
    };
    // A redirect (to storage) is not expected of a filesystem registry.
    assert!(
        all.starts_with(b"HTTP/1.") && text(&all).contains(" 200 "),
        "{}",
        text(&all)
    );
    body.truncate(8);
    body
}

#[test]
fn push_compresses_plain_layers_once_and_the_image_pulls_back() {
    let sb = Sandbox::new();
    let repo = fresh_repo("gzip");
    let target = format!("{repo}:1");
    let id = imported_image(&sb, &target, "gz");
    // Stored locally as a plain tar (kiln keeps local layers uncompressed).
    let local = inspect(&sb, &target);
    let diff_id = local["RootFS"]["Layers"][0]
        .as_str()
        .expect("a diff id")
        .to_owned();

    let out = sb.kiln_ok(["push", &target]);
    let pushed = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("a digest line")
        .to_owned();
    let m = remote_manifest(&target);
    let layer = &m["layers"][0];
    assert_eq!(
        layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{m}"
    );
    let layer_digest = layer["digest"].as_str().expect("digest").to_owned();
    assert_ne!(
        layer_digest, diff_id,
        "the pushed blob is the compressed one"
    );
    assert_eq!(
        m["config"]["digest"],
        id.as_str(),
        "same config: same image ID"
    );
    assert_eq!(
        &remote_blob_head(&target, &layer_digest)[..2],
        &[0x1f, 0x8b]
    );
    assert_eq!(remote_digest(&target), pushed);
    // The pushed digest is the image's repository digest.
    assert!(
        inspect(&sb, &target)["RepoDigests"]
            .to_string()
            .contains(&format!("{repo}@{pushed}")),
        "{}",
        inspect(&sb, &target)
    );

    // A second push (another tag) reuses the compressed copy: same blob,
    // same manifest digest, and the registry has the layer already.
    let target2 = format!("{repo}:2");
    sb.kiln_ok(["tag", &target, &target2]);
    let again = sb.kiln_ok(["push", &target2]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert_eq!(remote_digest(&target2), pushed);

    // Pulled into a fresh store: same image ID, and it runs.
    let fresh = Sandbox::new();
    fresh.kiln_ok(["pull", "-q", &target]);
    assert_eq!(image_id(&fresh, &target), id);
    assert_eq!(
        fresh.kiln_ok(["run", "--rm", &target]),
        "from a tarball\ngz\n"
    );

    // zstd and none on request.
    let zst = format!("{}:1", fresh_repo("zstd"));
    sb.kiln_ok(["tag", &target, &zst]);
    sb.kiln_ok(["push", "-q", "--compression", "zstd", &zst]);
    assert_eq!(
        remote_manifest(&zst)["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let plain = format!("{}:1", fresh_repo("plain"));
    sb.kiln_ok(["tag", &target, &plain]);
    sb.kiln_ok(["push", "-q", "--compression", "none", &plain]);
    let m = remote_manifest(&plain);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(m["layers"][0]["digest"], diff_id.as_str());
    let (code, _, err) = fails(sb.kiln(["push", "--compression", "lz4", &plain]));
    assert_eq!(code, KILN_ERROR);
    assert!(err.contains("invalid --compression"), "{err}");
}

#[test]
fn save_oci_layout_with_gzip_compresses_plain_layers() {
    let sb = Sandbox::new();
    let name = "local/ocigz:1";
    let id = imported_image(&sb, name, "oci");
    let file = sb.work().join("gz.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "--format".as_ref(),
        "oci".as_ref(),
        "--compression".as_ref(),
        "gzip".as_ref(),
        "-o".as_ref(),
        file.as_os_str(),
        name.as_ref(),
    ]);
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", file.display())),
    );
    let m: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{m}"
    );
    // skopeo copies it to the registry, and kiln pulls and runs it.
    let target = format!("{}:1", fresh_repo("ocigz"));
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--dest-no-creds"])
            .arg(format!("oci-archive:{}", file.display()))
            .arg(format!("docker://{target}")),
    );
    let fresh = Sandbox::new();
    fresh.kiln_ok(["pull", "-q", &target]);
    assert_eq!(image_id(&fresh, &target), id);
    assert_eq!(
        fresh.kiln_ok(["run", "--rm", &target]),
        "from a tarball\noci\n"
    );
}

#[test]
fn docker_loads_and_runs_what_kiln_saves() {
    if !docker_available("docker_loads_and_runs_what_kiln_saves") {
        return;
    }
    let sb = Sandbox::new();
    let marker = format!("saved{}", free_port());
    let name = format!("kiln-e2e/saved:{marker}");
    let id = imported_image(&sb, &name, &marker);
    let kiln_out = sb.kiln_ok(["run", "--rm", &name]);
    assert_eq!(kiln_out, format!("from a tarball\n{marker}\n"));
    let file = sb.work().join("docker.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        file.as_os_str(),
        name.as_ref(),
    ]);
    let _cleanup = DockerImage(name.clone());
    let out = docker_ok(&["load", "-i", &file.to_string_lossy()]);
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", &name]).trim(),
        id,
        "Docker computes the same image ID"
    );
    let docker_out = docker_ok(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(
        docker_out, kiln_out,
        "docker run prints what kiln run prints"
    );
    // Docker's view of the config matches kiln's.
    let env = docker_ok(&["image", "inspect", "-f", "{{json .Config.Env}}", &name]);
    assert!(env.contains(&format!("MARKER={marker}")), "{env}");
}

#[test]
fn docker_pulls_and_runs_what_kiln_pushes() {
    if !docker_available("docker_pulls_and_runs_what_kiln_pushes") {
        return;
    }
    let sb = Sandbox::new();
    let marker = format!("pushed{}", free_port());
    let target = format!("{}:1", fresh_repo("docker"));
    let id = imported_image(&sb, &target, &marker);
    let kiln_out = sb.kiln_ok(["run", "--rm", &target]);
    sb.kiln_ok(["push", "-q", &target]);
    let _cleanup = DockerImage(target.clone());
    // Docker speaks plain HTTP to 127.0.0.0/8 registries.
    docker_ok(&["pull", &target]);
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", &target]).trim(),
        id
    );
    let pushed = inspect(&sb, &target)["RepoDigests"][0]
        .as_str()
        .expect("a repo digest")
        .rsplit('@')
        .next()
        .expect("digest")
        .to_owned();
    let docker_digests = docker_ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &target]);
    assert!(
        docker_digests.contains(&pushed),
        "{docker_digests} vs {pushed}"
    );
    let docker_out = docker_ok(&["run", "--rm", "--network", "none", &target]);
    assert_eq!(docker_out, kiln_out);
}

// ---------------------------------------------------------------- sizes

/// Docker's size of the layer `busybox_rootfs_tarball` makes: every
/// non-directory's size, a symlink counting its target (`busybox`).
fn busybox_rootfs_size() -> u64 {
    let busybox = std::fs::metadata("/bin/busybox")
        .expect("/bin/busybox")
        .len();
    busybox + 3 * "busybox".len() as u64 + "from a tarball\n".len() as u64
}

#[test]
fn images_history_and_inspect_show_unpacked_sizes() {
    let sb = Sandbox::new();
    let name = format!("kiln-e2e/sized:{}", free_port());
    imported_image(&sb, &name, "sized");
    let want = busybox_rootfs_size();
    assert_eq!(
        inspect(&sb, &name)["Size"],
        want,
        "inspect Size is unpacked"
    );
    let row = sb
        .kiln_ok(["images", &name])
        .lines()
        .nth(1)
        .map(columns)
        .expect("a row");
    let shown = row.last().expect("SIZE column").clone();
    let history = sb.kiln_ok(["history", &name]);
    let hist_row = columns(history.lines().nth(1).expect("a history row"));
    assert!(hist_row.contains(&shown), "{history} vs {shown}");

    // Pushed (gzip) and pulled into a fresh store: the same unpacked size,
    // not the compressed one.
    let target = format!("{}:1", fresh_repo("sized"));
    sb.kiln_ok(["tag", &name, &target]);
    sb.kiln_ok(["push", "-q", &target]);
    let fresh = Sandbox::new();
    fresh.kiln_ok(["pull", "-q", &target]);
    assert_eq!(inspect(&fresh, &target)["Size"], want);

    // The reference Docker shows the same figures, when there is one.
    if !docker_available("images_history_and_inspect_show_unpacked_sizes (docker part)") {
        return;
    }
    let file = sb.work().join("sized.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        file.as_os_str(),
        name.as_ref(),
    ]);
    let _cleanup = DockerImage(name.clone());
    docker_ok(&["load", "-i", &file.to_string_lossy()]);
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Size}}", &name]).trim(),
        want.to_string()
    );
    assert_eq!(
        docker_ok(&["images", "--format", "{{.Size}}", &name]).trim(),
        shown
    );
}

// ---------------------------------------------------------------- freeing snapshots

/// The snapshot directories of the sandbox's store (whichever snapshotter
/// it picked), sorted.
fn snapshot_dirs(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for kind in ["overlay", "copy"] {
        let dir = sb.root().join("snapshots").join(kind).join("snapshots");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn rmi_and_prunes_free_snapshots_but_keep_shared_ones() {
    let sb = Sandbox::new();
    // busybox and the index's host entry share one layer: one snapshot.
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let base = snapshot_dirs(&sb);
    assert_eq!(base.len(), 1, "{base:?}");
    sb.kiln_ok(["pull", "-q", &index_ref()]);
    assert_eq!(
        snapshot_dirs(&sb),
        base,
        "the shared layer is unpacked once"
    );

    // rmi of one keeps the snapshot the other uses; rmi of both frees it.
    sb.kiln_ok(["rmi", &busybox_ref()]);
    assert_eq!(snapshot_dirs(&sb), base, "still used by {}", index_ref());
    sb.kiln_ok(["rmi", &index_ref()]);
    assert_eq!(snapshot_dirs(&sb), Vec::<std::path::PathBuf>::new());

    // Two imports of one tarball share their layer; image prune of the
    // dangling one keeps it, prune -a frees it.
    let tar = busybox_rootfs_tarball(&sb.work());
    let import = |changes: &str, name: &str| {
        sb.kiln_ok([
            "import".as_ref(),
            "-c".as_ref(),
            changes.as_ref(),
            tar.as_os_str(),
            name.as_ref(),
        ])
        .trim()
        .to_owned()
    };
    import("ENV A=1", "local/snap:1");
    import("ENV A=2", "local/snap:2");
    let shared = snapshot_dirs(&sb);
    assert_eq!(shared.len(), 1, "{shared:?}");
    // Moving the tag leaves A=1 dangling.
    import("ENV A=3", "local/snap:1");
    sb.kiln_ok(["image", "prune", "-f"]);
    assert_eq!(image_ids(&sb).len(), 2);
    assert_eq!(snapshot_dirs(&sb), shared);
    sb.kiln_ok(["image", "prune", "-a", "-f"]);
    assert!(image_ids(&sb).is_empty());
    assert_eq!(snapshot_dirs(&sb), Vec::<std::path::PathBuf>::new());

    // system prune -a frees an image's snapshots too.
    import("ENV A=4", "local/snap:4");
    assert_eq!(snapshot_dirs(&sb).len(), 1);
    sb.kiln_ok(["system", "prune", "-a", "-f"]);
    assert!(image_ids(&sb).is_empty());
    assert_eq!(snapshot_dirs(&sb), Vec::<std::path::PathBuf>::new());
}

// ---------------------------------------------------------------- insecure registries

/// `kiln ARGS` in `sb`, in a private mount namespace whose `/etc/hosts`
/// maps `kiln-insecure.test` to 127.0.0.1: a registry name that is not a
/// loopback literal, so kiln's rule "127.0.0.0/8 and localhost speak plain
/// HTTP" does not apply and only `--insecure-registry` or the config file
/// make kiln use HTTP for it.
fn kiln_with_named_registry(sb: &Sandbox, args: &[&str], config: Option<&Path>) -> Output {
    let hosts = sb.work().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost kiln-insecure.test\n::1 localhost\n",
    )
    .expect("write hosts");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(&hosts)
        .arg(kiln_e2e::kiln_bin())
        .args(args)
        .env("KILN_ROOT", sb.root())
        .env("HOME", sb.home())
        .env_remove("DOCKER_CONFIG");
    match config {
        Some(c) => cmd.env("KILN_CONFIG", c),
        None => cmd.env("KILN_CONFIG", sb.work().join("no-config.json")),
    };
    cmd.output().expect("cannot run unshare")
}

#[test]
fn insecure_registry_flag_and_config_file_allow_plain_http_to_a_named_host() {
    let port = registry().rsplit(':').next().expect("a port").to_owned();
    let host = format!("kiln-insecure.test:{port}");
    let image = format!("{host}/busybox:latest");
    let reference_id = {
        let sb = Sandbox::new();
        sb.kiln_ok(["pull", "-q", &busybox_ref()]);
        image_id(&sb, &busybox_ref())
    };

    // By default a named registry is spoken to over HTTPS, which this
    // plain-HTTP registry does not answer.
    let sb = Sandbox::new();
    let out = kiln_with_named_registry(&sb, &["pull", "-q", &image], None);
    assert_eq!(out.status.code(), Some(KILN_ERROR), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("kiln-insecure.test"),
        "{}",
        text(&out.stderr)
    );
    assert!(image_ids(&sb).is_empty());

    // --insecure-registry HOST:PORT: plain HTTP, the pull works.
    let out = kiln_with_named_registry(
        &sb,
        &["--insecure-registry", &host, "pull", "-q", &image],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(image_id(&sb, &image), reference_id);

    // The config file's insecure-registries list works the same, for a
    // push too (checked at the loopback address with skopeo).
    let cfg = sb.work().join("config.json");
    std::fs::write(&cfg, format!(r#"{{"insecure-registries": ["{host}"]}}"#))
        .expect("write config");
    let fresh = Sandbox::new();
    let out = kiln_with_named_registry(&fresh, &["pull", "-q", &image], Some(&cfg));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(image_id(&fresh, &image), reference_id);
    let repo = format!("e2e-insecure-{}", free_port());
    let target = format!("{host}/{repo}:1");
    let out = kiln_with_named_registry(&fresh, &["tag", &image, &target], Some(&cfg));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kiln_with_named_registry(&fresh, &["push", "-q", &target], Some(&cfg));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = skopeo_inspect(&format!("{}/{repo}:1", registry()), &["--no-creds"]);
    assert!(seen.status.success(), "{}", text(&seen.stderr));
}
