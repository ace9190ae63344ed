//! kiln-model's image config keeps what it does not know: a base image whose
//! config carries fields kiln does not model, at the top level and inside
//! `config`, goes through `kiln build` (metadata and RUN steps) and `kiln
//! commit`, and the new images' configs still carry those fields unchanged
//! (issue #12: the builder's own config copy dropped them).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_e2e::{Sandbox, busybox_ref, run_ok};
use serde_json::{Value, json};

/// The raw config blob of image `name` in the sandbox's store.
fn raw_config(sb: &Sandbox, name: &str) -> Value {
    let out = sb.kiln_ok(["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    let id = v[0]["Id"].as_str().expect("Id is a string").to_owned();
    let hex = id.strip_prefix("sha256:").expect("sha256 ID");
    let path = find_blob(&sb.root(), hex).unwrap_or_else(|| panic!("no blob {hex} in the store"));
    serde_json::from_slice(&std::fs::read(path).expect("read config")).expect("config JSON")
}

fn find_blob(dir: &Path, hex: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let ft = entry.file_type().ok()?;
        if ft.is_dir() {
            if let Some(p) = find_blob(&path, hex) {
                return Some(p);
            }
        } else if ft.is_file()
            && entry.file_name() == hex
            && path.to_string_lossy().contains("blobs/sha256")
        {
            return Some(path);
        }
    }
    None
}

/// Loads busybox again as `name`, its config given the unknown fields.
fn load_with_unknown_fields(sb: &Sandbox, name: &str) {
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let saved = sb.work().join("base.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "--format".as_ref(),
        "docker".as_ref(),
        "-o".as_ref(),
        saved.as_os_str(),
        busybox_ref().as_ref(),
    ]);
    let dir = sb.work().join("archive");
    std::fs::create_dir(&dir).expect("mkdir");
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&saved)
            .arg("-C")
            .arg(&dir),
    );
    // Read as a plain docker-archive: only manifest.json names the image.
    for f in ["index.json", "oci-layout", "repositories"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest.json"))
            .expect("manifest JSON");
    let config_name = manifest[0]["Config"].as_str().expect("Config").to_owned();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(dir.join(&config_name)).expect("config"))
            .expect("config JSON");
    config["moby.future"] = json!({"nested": [1, 2, {"x": "y"}]});
    config["config"]["FutureField"] = json!(42);
    config["config"]["Hostname"] = json!("kept-host");
    config["config"]["Domainname"] = json!("kept.example");
    std::fs::write(
        dir.join("unknown.json"),
        serde_json::to_vec(&config).expect("serialise"),
    )
    .expect("write config");
    manifest[0]["Config"] = json!("unknown.json");
    manifest[0]["RepoTags"] = json!([name]);
    std::fs::write(
        &manifest_path,
        serde_json::to_vec(&manifest).expect("serialise"),
    )
    .expect("write manifest");
    let repacked = sb.work().join("unknown.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&repacked)
            .arg("-C")
            .arg(&dir)
            .arg("."),
    );
    sb.kiln_ok(["load".as_ref(), "-i".as_ref(), repacked.as_os_str()]);
    let loaded = raw_config(sb, name);
    assert_eq!(loaded["config"]["FutureField"], 42, "{loaded}");
}

fn assert_unknown_fields_kept(config: &Value) {
    assert_eq!(
        config["moby.future"],
        json!({"nested": [1, 2, {"x": "y"}]}),
        "{config}"
    );
    assert_eq!(config["config"]["FutureField"], 42, "{config}");
    assert_eq!(config["config"]["Hostname"], "kept-host", "{config}");
    assert_eq!(config["config"]["Domainname"], "kept.example", "{config}");
}

#[test]
fn model_unknown_config_fields_survive_build_and_commit() {
    let sb = Sandbox::new();
    load_with_unknown_fields(&sb, "model/unknown:1");

    let ctx = sb.work().join("ctx");
    std::fs::create_dir(&ctx).expect("mkdir");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM model/unknown:1\nENV MODEL_A=1\nLABEL model=yes\nRUN echo hi > /built\nCMD [\"cat\", \"/built\"]\n",
    )
    .expect("write Dockerfile");
    sb.kiln_ok([
        "build".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        "model/built:1".as_ref(),
        ctx.as_os_str(),
    ]);
    let built = raw_config(&sb, "model/built:1");
    assert_unknown_fields_kept(&built);
    // The build's own changes are there too.
    let env = built["config"]["Env"].as_array().expect("Env");
    assert!(env.iter().any(|e| e == "MODEL_A=1"), "{built}");
    assert_eq!(built["config"]["Labels"]["model"], "yes", "{built}");
    assert_eq!(built["config"]["Cmd"], json!(["cat", "/built"]), "{built}");

    sb.kiln_ok([
        "run",
        "--name",
        "model-c",
        "model/built:1",
        "touch",
        "/committed",
    ]);
    sb.kiln_ok(["commit", "model-c", "model/committed:1"]);
    let committed = raw_config(&sb, "model/committed:1");
    assert_unknown_fields_kept(&committed);
    assert_eq!(
        committed["rootfs"]["diff_ids"].as_array().map(Vec::len),
        built["rootfs"]["diff_ids"].as_array().map(|l| l.len() + 1),
        "{committed}"
    );
}
