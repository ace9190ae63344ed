//! Root-only tests: a real busybox image imported, unpacked with the overlay
//! snapshotter, changed through a real overlay mount and committed, unpacked
//! again elsewhere and run with chroot; its saved archives are checked with
//! skopeo and umoci (both from Debian, at /usr/bin).

#![cfg(feature = "privileged-tests")]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_content::{Reference, Store};
use kiln_image::{
    CommitOptions, Format, ImportOptions, SaveImage, Timestamp, UnpackOptions, commit_layer,
    ensure_unpacked, import, load, read_image, save,
};
use kiln_layer::{Compression, DiffOptions};
use kiln_model::History;
use kiln_snapshot::{Mount, OverlaySnapshotter, Snapshotter};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Performs the described mounts (what the runtime would do).
fn mount(mounts: &[Mount], target: &Path) {
    for m in mounts {
        let mut cmd = Command::new("mount");
        if m.fstype == "bind" {
            cmd.arg("--bind");
        } else {
            cmd.args(["-t", &m.fstype]);
        }
        if !m.options.is_empty() {
            cmd.arg("-o").arg(m.options.join(","));
        }
        run(cmd.arg(&m.source).arg(target));
    }
}

fn umount(target: &Path) {
    run(Command::new("umount").arg(target));
}

fn busybox_rootfs(dir: &Path) -> Vec<u8> {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "data/sub"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "rm", "ls"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/removeme"), "old\n").unwrap();
    fs::write(root.join("data/sub/file"), "deep\n").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &root).unwrap();
    b.into_inner().unwrap()
}

fn opts_for(created_by: &str, tag: &str) -> CommitOptions {
    CommitOptions {
        compression: Compression::Gzip,
        diff: DiffOptions {
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        },
        history: History {
            created: Some(Timestamp::from_unix(1_700_000_000).to_string()),
            created_by: Some(created_by.to_owned()),
            ..Default::default()
        },
        tags: vec![Reference::parse(tag).unwrap()],
        skip_empty_layer: true,
        commit_snapshot: true,
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: Store,
    id: kiln_model::Digest,
}

/// Imports busybox, changes it through an overlay mount, commits the change.
fn layered_image() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let store = Store::open(dir.join("store")).unwrap();
    let tar = busybox_rootfs(&dir);
    let base = import(
        &store,
        tar.as_slice(),
        Some(&Reference::parse("kiln-test/busybox:1").unwrap()),
        &[r#"CMD ["sh"]"#.to_owned()],
        &ImportOptions {
            created: Timestamp::from_unix(1_700_000_000),
            ..ImportOptions::default()
        },
    )
    .unwrap();

    let ov = OverlaySnapshotter::new(dir.join("ov")).unwrap();
    let top = ensure_unpacked(&store, &ov, &base.id, &UnpackOptions::default())
        .unwrap()
        .unwrap();
    let mounts = ov.prepare("ctr", Some(&top)).unwrap();
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).unwrap();
    mount(&mounts, &mnt);
    run(Command::new("chroot").arg(&mnt).args([
        "/bin/sh",
        "-c",
        "echo built > /built.txt && rm /etc/removeme && rm -r /data && echo x > /etc/added",
    ]));
    umount(&mnt);
    let img = read_image(&store, &base.id).unwrap();
    let c = commit_layer(
        &store,
        &ov,
        "ctr",
        img.config.clone(),
        img.manifest.layers.clone(),
        &opts_for("/bin/sh -c echo built > /built.txt ...", "kiln-test/app:2"),
    )
    .unwrap();
    assert!(c.layer.is_some());
    assert!(ov.exists(c.top_snapshot.as_deref().unwrap()).unwrap());
    Setup {
        _tmp: tmp,
        dir,
        store,
        id: c.record.id,
    }
}

#[test]
fn overlay_unpack_of_a_committed_image_runs() {
    let s = layered_image();
    let ov2 = OverlaySnapshotter::new(s.dir.join("ov2")).unwrap();
    let top = ensure_unpacked(&s.store, &ov2, &s.id, &UnpackOptions::default())
        .unwrap()
        .unwrap();
    let mounts = ov2.prepare("run", Some(&top)).unwrap();
    let mnt = s.dir.join("mnt2");
    fs::create_dir(&mnt).unwrap();
    mount(&mounts, &mnt);
    let out = Command::new("chroot")
        .arg(&mnt)
        .args([
            "/bin/sh",
            "-c",
            "cat /built.txt /etc/added; ls /etc; ls /data 2>&1 || true",
        ])
        .output()
        .unwrap();
    let removeme = mnt.join("etc/removeme").exists();
    let data = mnt.join("data").exists();
    umount(&mnt);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("built\nx\n"), "{stdout}");
    assert!(!removeme, "whiteout of a file");
    assert!(!data, "whiteout of a directory");
}

#[test]
fn saved_archives_satisfy_skopeo_and_umoci() {
    let s = layered_image();
    let images = [SaveImage {
        id: s.id,
        tags: vec![Reference::parse("kiln-test/app:2").unwrap()],
    }];
    let oci = s.dir.join("app-oci.tar");
    let da = s.dir.join("app-docker.tar");
    save(
        &s.store,
        &images,
        Format::OciLayout,
        fs::File::create(&oci).unwrap(),
    )
    .unwrap();
    save(
        &s.store,
        &images,
        Format::DockerArchive,
        fs::File::create(&da).unwrap(),
    )
    .unwrap();

    for src in [
        format!("oci-archive:{}", oci.display()),
        format!("oci-archive:{}:2", oci.display()),
        format!("docker-archive:{}", da.display()),
    ] {
        let out = run(Command::new("skopeo").args(["inspect", "--raw", &src]));
        let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            manifest["layers"].as_array().unwrap().len(),
            2,
            "{src}: {out}"
        );
        let out = run(Command::new("skopeo").args(["inspect", "--config", &src]));
        let config: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]), "{src}");
    }
    let docker_inspect =
        run(Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", da.display())]));
    let v: serde_json::Value = serde_json::from_str(&docker_inspect).unwrap();
    assert_eq!(v["RepoTags"], serde_json::json!([]), "{docker_inspect}");

    // umoci unpacks what skopeo copied out of each archive.
    for (i, src) in [
        format!("oci-archive:{}:2", oci.display()),
        format!("docker-archive:{}", da.display()),
    ]
    .iter()
    .enumerate()
    {
        let layout = s.dir.join(format!("layout{i}"));
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            src,
            &format!("oci:{}:app", layout.display()),
        ]));
        let bundle = s.dir.join(format!("bundle{i}"));
        run(Command::new("umoci").args([
            "unpack",
            "--image",
            &format!("{}:app", layout.display()),
            bundle.to_str().unwrap(),
        ]));
        let rootfs = bundle.join("rootfs");
        assert_eq!(fs::read(rootfs.join("built.txt")).unwrap(), b"built\n");
        assert!(rootfs.join("bin/busybox").is_file());
        assert!(!rootfs.join("etc/removeme").exists());
        assert!(!rootfs.join("data").exists());
    }

    // umoci also reads the saved layout directly, once untarred.
    let unpacked = s.dir.join("untarred");
    tar::Archive::new(fs::File::open(&oci).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let bundle = s.dir.join("bundle-direct");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:2", unpacked.display()),
        bundle.to_str().unwrap(),
    ]));
    assert!(bundle.join("rootfs/etc/added").is_file());

    // And both archives load back into a fresh store as the same image.
    for file in [&oci, &da] {
        let other = Store::open(s.dir.join(format!(
            "reload-{}",
            file.file_name().unwrap().to_string_lossy()
        )))
        .unwrap();
        let loaded = load(&other, fs::File::open(file).unwrap()).unwrap();
        assert_eq!(loaded[0].id, s.id);
    }
}

/// An archive skopeo writes from kiln's OCI archive loads into kiln.
#[test]
fn skopeo_written_archives_load() {
    let s = layered_image();
    let images = [SaveImage {
        id: s.id,
        tags: vec![Reference::parse("kiln-test/app:2").unwrap()],
    }];
    let oci = s.dir.join("app-oci.tar");
    save(
        &s.store,
        &images,
        Format::OciLayout,
        fs::File::create(&oci).unwrap(),
    )
    .unwrap();
    let da = s.dir.join("from-skopeo-docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci-archive:{}", oci.display()),
        &format!("docker-archive:{}:kiln-test/fromskopeo:1", da.display()),
    ]));
    let other = Store::open(s.dir.join("from-skopeo")).unwrap();
    let loaded = load(&other, fs::File::open(&da).unwrap()).unwrap();
    assert_eq!(loaded[0].repo_tags, ["kiln-test/fromskopeo:1"]);
    let ov = OverlaySnapshotter::new(s.dir.join("ov3")).unwrap();
    ensure_unpacked(&other, &ov, &loaded[0].id, &UnpackOptions::default())
        .unwrap()
        .unwrap();
}
