//! Root-only tests: real overlay mounts of what the overlay snapshotter
//! describes, layers made from an overlay upper dir re-applied with delete
//! whiteouts, copy and overlay snapshotters agreeing on the same layers, and
//! `umoci raw unpack` agreeing with kiln on kiln-made layers.
//! Run with `cargo test -p kiln-snapshot --features privileged-tests` as root.

#![cfg(feature = "privileged-tests")]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fingerprint;
use kiln_layer::{ApplyOptions, Compression, DiffOptions, LayerDigests, LayerWriter, apply_layer};
use kiln_snapshot::{
    CopySnapshotter, DiffSource, Mount, OverlaySnapshotter, Snapshotter, copy_tree,
    overlay_supported,
};
use kiln_sys::MountOps as _;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Uid};
use rustix::mount::{MountFlags, UnmountFlags};

/// A layer's digests and blob.
type Layer = (LayerDigests, Vec<u8>);

/// Performs the described mounts on `target` (what the runtime would do).
fn mount_all(mounts: &[Mount], target: &Path) {
    for m in mounts {
        match m.fstype.as_str() {
            "overlay" => {
                // As the runtime mounts: mount(2) when the options fit a
                // page, fsconfig with one `lowerdir+` per layer when not.
                kiln_sys::LinuxSys
                    .mount_with_options(
                        Some(Path::new(&m.source)),
                        target,
                        "overlay",
                        kiln_sys::MountFlags::NONE,
                        &m.options,
                    )
                    .unwrap();
            }
            "bind" => {
                rustix::mount::mount_bind_recursive(m.source.as_str(), target).unwrap();
                if m.options.iter().any(|o| o == "ro") {
                    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
                        .unwrap();
                }
            }
            other => panic!("unexpected fstype {other}"),
        }
    }
}

fn umount(target: &Path) {
    rustix::mount::unmount(target, UnmountFlags::empty()).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn base_tree(d: &Path) {
    for sub in [
        "etc/ssl",
        "usr/bin",
        "var/lib/app",
        "dev",
        "doomed/deep",
        "reborn/old",
    ] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(d.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(d.join("etc/ssl/cert"), vec![3u8; 50_000]).unwrap();
    fs::write(d.join("usr/bin/tool"), b"\x7fELF").unwrap();
    fs::set_permissions(d.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(d.join("usr/bin/tool"), d.join("usr/bin/tool-alias")).unwrap();
    fs::write(d.join("usr/bin/ping"), b"ping").unwrap();
    // security.capability v2: cap_net_raw permitted + effective.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(d.join("usr/bin/ping"), "security.capability", &cap).unwrap();
    fs::write(d.join("var/lib/app/data"), b"app").unwrap();
    chown(&d.join("var/lib/app"), 1000, 1000);
    chown(&d.join("var/lib/app/data"), 1000, 1001);
    symlink("../etc/hosts", d.join("usr/hosts-link")).unwrap();
    chown(&d.join("usr/hosts-link"), 7, 7);
    // An xattr on the symlink itself (the xattr crate's `set` does not follow).
    xattr::set(d.join("usr/hosts-link"), "trusted.kiln.link", b"on-link").unwrap();
    rustix::fs::mknodat(
        CWD,
        d.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::chmodat(
        CWD,
        d.join("dev/null"),
        Mode::from_raw_mode(0o666),
        AtFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        d.join("dev/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    fs::write(d.join("doomed/deep/f"), b"f").unwrap();
    fs::write(d.join("reborn/old/f"), b"f").unwrap();
    fs::set_permissions(d.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
}

fn second_change(d: &Path) {
    fs::remove_file(d.join("etc/hosts")).unwrap();
    fs::write(d.join("etc/ssl/cert"), b"rotated").unwrap();
    fs::remove_dir_all(d.join("doomed")).unwrap();
    fs::remove_dir_all(d.join("reborn")).unwrap();
    fs::create_dir(d.join("reborn")).unwrap();
    fs::write(d.join("reborn/new"), b"n").unwrap();
    // (chown on usr/bin/ping would drop its file capability: kernel rule.)
    chown(&d.join("etc/ssl/cert"), 0, 1234);
}

fn write_layer(src: &DiffSource, c: Compression) -> Layer {
    let w = LayerWriter::new(Vec::new(), c).unwrap();
    let w = src.write_layer(&DiffOptions::default(), w).unwrap();
    w.finish().unwrap()
}

/// The two base layers, made with diff_dirs from real trees.
fn base_layers(tmp: &Path, second: Compression) -> Vec<Layer> {
    let (empty, one, two) = (tmp.join("empty"), tmp.join("one"), tmp.join("two"));
    fs::create_dir(&empty).unwrap();
    fs::create_dir(&one).unwrap();
    fs::create_dir(&two).unwrap();
    base_tree(&one);
    copy_tree(&one, &two).unwrap();
    second_change(&two);
    let l1 = write_layer(
        &DiffSource::Dirs {
            lower: empty,
            upper: one.clone(),
        },
        Compression::Gzip,
    );
    let l2 = write_layer(
        &DiffSource::Dirs {
            lower: one,
            upper: two,
        },
        second,
    );
    vec![l1, l2]
}

fn unpack(sn: &dyn Snapshotter, layers: &[Layer]) -> String {
    let mut parent: Option<String> = None;
    for (i, (d, blob)) in layers.iter().enumerate() {
        sn.prepare("unpack", parent.as_deref()).unwrap();
        let t = sn.apply_target("unpack").unwrap();
        let opts = ApplyOptions {
            whiteouts: t.whiteouts,
            expected_diff_id: Some(d.diff_id.clone()),
            ..ApplyOptions::default()
        };
        apply_layer(blob.as_slice(), d.compression, &t.dir, &opts).unwrap();
        let name = format!("chain-{i}");
        sn.commit(&name, "unpack").unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

fn mounted_fingerprint(sn: &dyn Snapshotter, key: &str, parent: &str, mnt: &Path) -> common::Print {
    let m = sn.view(key, Some(parent)).unwrap();
    mount_all(&m, mnt);
    let print = fingerprint(mnt);
    umount(mnt);
    sn.remove(key).unwrap();
    print
}

#[test]
fn overlay_probe_succeeds_as_root() {
    let tmp = tempfile::tempdir().unwrap();
    overlay_supported(tmp.path()).unwrap();
    assert!(common::names(tmp.path()).is_empty(), "probe cleaned up");
}

#[test]
fn copy_and_overlay_snapshotters_give_identical_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = base_layers(tmp.path(), Compression::Zstd);
    let ov = OverlaySnapshotter::new(tmp.path().join("ov")).unwrap();
    let cp = CopySnapshotter::new(tmp.path().join("cp")).unwrap();
    let top_ov = unpack(&ov, &layers);
    let top_cp = unpack(&cp, &layers);
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let a = mounted_fingerprint(&ov, "v", &top_ov, &mnt);
    let b = mounted_fingerprint(&cp, "v", &top_cp, &mnt);
    assert_eq!(a, b);
    // And both equal the tree the layers were made from.
    let want = fingerprint(&tmp.path().join("two"));
    assert_eq!(a, want);
    assert!(a.contains_key("reborn/new") && !a.contains_key("reborn/old"));
    assert!(a["usr/bin/ping"].contains("security.capability"));
    assert!(a["usr/hosts-link"].contains("trusted.kiln.link"));
}

/// Mounts a container snapshot on the overlay chain, changes it through the
/// mount, and returns the layer diffed from the upper dir, the merged tree as
/// seen through the mount, and the layers below.
fn container_layer(tmp: &Path, second: Compression) -> (Vec<Layer>, Layer, common::Print) {
    let layers = base_layers(tmp, second);
    let ov = OverlaySnapshotter::new(tmp.join("ov")).unwrap();
    let top = unpack(&ov, &layers);
    let mounts = ov.prepare("ctr", Some(&top)).unwrap();
    let mnt = tmp.join("mnt");
    fs::create_dir(&mnt).unwrap();
    mount_all(&mounts, &mnt);
    fs::write(mnt.join("added"), b"added").unwrap();
    fs::write(mnt.join("usr/bin/tool"), b"\x7fELF v2").unwrap(); // copy-up of a hardlinked file
    fs::remove_file(mnt.join("usr/hosts-link")).unwrap();
    fs::remove_dir_all(mnt.join("var/lib")).unwrap();
    fs::remove_dir_all(mnt.join("reborn")).unwrap();
    fs::create_dir(mnt.join("reborn")).unwrap();
    fs::write(mnt.join("reborn/again"), b"a").unwrap();
    fs::set_permissions(mnt.join("etc/ssl"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::hard_link(mnt.join("added"), mnt.join("added-link")).unwrap();
    symlink("/added", mnt.join("etc/new-link")).unwrap();
    fs::create_dir_all(mnt.join("new/dir/deep")).unwrap();
    fs::write(mnt.join("new/dir/deep/f"), vec![1u8; 100_000]).unwrap();
    let want = fingerprint(&mnt);
    umount(&mnt);
    let src = ov.diff_source("ctr").unwrap();
    assert!(matches!(src, DiffSource::OverlayUpper { .. }));
    let layer = write_layer(&src, Compression::Gzip);
    (layers, layer, want)
}

#[test]
fn overlay_upper_diff_reapplied_with_delete_whiteouts_matches_the_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let (layers, (d, blob), want) = container_layer(tmp.path(), Compression::Zstd);
    let paths: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for p in [
        "reborn/.wh..wh..opq",
        "usr/.wh.hosts-link",
        "var/.wh.lib",
        "added-link",
    ] {
        assert!(paths.contains(&p.to_owned()), "{p} missing from {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("overlay")));
    // Apply onto a copy of the lower tree, deleting for whiteouts.
    let cp = CopySnapshotter::new(tmp.path().join("cp")).unwrap();
    let top = unpack(&cp, &layers);
    cp.prepare("ctr", Some(&top)).unwrap();
    let t = cp.apply_target("ctr").unwrap();
    let opts = ApplyOptions {
        whiteouts: t.whiteouts,
        expected_diff_id: Some(d.diff_id.clone()),
        ..ApplyOptions::default()
    };
    apply_layer(blob.as_slice(), Compression::Gzip, &t.dir, &opts).unwrap();
    assert_eq!(fingerprint(&t.dir), want);
}

fn sha256_of(bytes: &[u8]) -> String {
    let mut w = LayerWriter::new(Vec::new(), Compression::None).unwrap();
    std::io::Write::write_all(&mut w, bytes).unwrap();
    w.finish().unwrap().0.digest
}

/// Writes an OCI image layout with `layers` and returns its directory.
fn oci_layout(dir: &Path, layers: &[&Layer]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let digest = sha256_of(bytes);
        fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    };
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (d, blob) in layers {
        let digest = put(blob);
        assert_eq!(digest, d.digest);
        layer_descs.push(serde_json::json!({
            "mediaType": d.compression.oci_media_type(),
            "digest": digest,
            "size": blob.len(),
        }));
        diff_ids.push(d.diff_id.clone());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_owned()
}

#[test]
fn umoci_unpacks_kiln_layers_to_the_same_tree() {
    // `cargo xtask e2e` installs umoci: a missing one is a broken setup, not a pass.
    assert!(
        Path::new("/usr/bin/umoci").exists(),
        "umoci is not installed: run these tests through `cargo xtask e2e`, which installs it"
    );
    let tmp = tempfile::tempdir().unwrap();
    // umoci reads gzip but not zstd layers.
    let (layers, layer, want) = container_layer(tmp.path(), Compression::Gzip);
    let image = oci_layout(&tmp.path().join("image"), &[&layers[0], &layers[1], &layer]);
    let rootfs = tmp.path().join("rootfs");
    let out = Command::new("umoci")
        .arg("raw")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", image.display()))
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fingerprint(&rootfs), want);
}

/// Commits a chain of `depth` one-file layers (`f000`, `f001`, ...) and
/// mounts it read-write and as a view, checking that every layer shows.
fn mount_deep_chain(root: &Path, mnt: &Path, depth: usize) -> usize {
    let sn = OverlaySnapshotter::new(root).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..depth {
        sn.prepare("tmp", parent.as_deref()).unwrap();
        let dir = sn.apply_target("tmp").unwrap().dir;
        fs::write(dir.join(format!("f{i:03}")), format!("{i}")).unwrap();
        sn.commit(&format!("sha256:{i:064}"), "tmp").unwrap();
        parent = Some(format!("sha256:{i:064}"));
    }
    let top = parent.unwrap();
    fs::create_dir(mnt).unwrap();
    let mut option_bytes = 0;
    for (key, writable) in [("ctr", true), ("view", false)] {
        let mounts = if writable {
            sn.prepare(key, Some(&top)).unwrap()
        } else {
            sn.view(key, Some(&top)).unwrap()
        };
        option_bytes = mounts[0].options.iter().map(|o| o.len() + 1).sum();
        mount_all(&mounts, mnt);
        let seen = common::names(mnt);
        let want: Vec<String> = (0..depth).map(|i| format!("f{i:03}")).collect();
        let write = fs::write(mnt.join("new"), b"n");
        let first = fs::read_to_string(mnt.join("f000"));
        umount(mnt);
        assert_eq!(seen, want, "{key}");
        assert_eq!(first.unwrap(), "0", "{key}");
        assert_eq!(write.is_ok(), writable, "{key}: {write:?}");
    }
    option_bytes
}

#[test]
fn a_128_layer_chain_mounts_through_short_links() {
    let tmp = tempfile::tempdir().unwrap();
    // A short root (~20 bytes): through the `l/` links 128 lowers fit the
    // one-page limit of mount(2), their real paths would not.
    let root = tmp.path().join("ov");
    let bytes = mount_deep_chain(&root, &tmp.path().join("mnt"), 128);
    assert!(
        bytes <= kiln_sys::MOUNT_DATA_MAX,
        "{bytes} bytes of options"
    );
    let real: usize = fs::read_dir(root.join("l"))
        .unwrap()
        .map(|l| {
            fs::canonicalize(l.unwrap().path())
                .unwrap()
                .as_os_str()
                .len()
                + 1
        })
        .sum();
    assert!(real > 4096, "real lower paths take {real} bytes");
}

#[test]
fn overlays_deepest_chain_mounts_under_a_long_root_through_fsconfig() {
    let tmp = tempfile::tempdir().unwrap();
    // A root longer than kiln's default, and overlay's full 500 layers:
    // ~35 KB of options, far over mount(2)'s page.
    let root = tmp
        .path()
        .join("var-lib-kiln-snapshots-overlay-of-a-longer-root");
    let depth = kiln_snapshot::MAX_LOWER_LAYERS;
    let bytes = mount_deep_chain(&root, &tmp.path().join("mnt"), depth);
    assert!(
        bytes > 8 * kiln_sys::MOUNT_DATA_MAX,
        "{bytes} bytes of options"
    );
}

/// (path, uid, gid) of every entry of an uncompressed layer tar.
fn tar_owners(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let p = e.path().unwrap().display().to_string();
            (p, h.uid().unwrap(), h.gid().unwrap())
        })
        .collect()
}

#[test]
fn id_mapped_diff_sources_write_container_ids_for_both_snapshotters() {
    let tmp = tempfile::tempdir().unwrap();
    let range = |host_id| kiln_model::IdRange {
        container_id: 0,
        host_id,
        size: 65_536,
    };
    let ids = kiln_model::IdMap {
        uids: vec![range(1_000_000_000)],
        gids: vec![range(1_000_000_000)],
    };
    let copy = CopySnapshotter::new(tmp.path().join("copy")).unwrap();
    let overlay = OverlaySnapshotter::new(tmp.path().join("overlay")).unwrap();
    for sn in [&copy as &dyn Snapshotter, &overlay] {
        sn.prepare("ctr", None).unwrap();
        let dir = sn.apply_target("ctr").unwrap().dir;
        fs::write(dir.join("new"), b"n").unwrap();
        fs::write(dir.join("hosts"), b"h").unwrap();
        chown(&dir.join("new"), 1_000_000_000, 1_000_000_012);
        chown(&dir.join("hosts"), 4242, 4243);
        let src = sn.diff_source("ctr").unwrap();
        let plain = tar_owners(
            &src.write_layer(&DiffOptions::default(), Vec::new())
                .unwrap(),
        );
        assert!(plain.contains(&("new".to_owned(), 1_000_000_000, 1_000_000_012)));
        // A second map replaces the first.
        let wrong = kiln_model::IdMap::default();
        let mapped = src.with_id_map(wrong).with_id_map(ids.clone());
        assert!(matches!(&mapped, DiffSource::IdMapped { source, .. }
            if !matches!(**source, DiffSource::IdMapped { .. })));
        let got = tar_owners(
            &mapped
                .write_layer(&DiffOptions::default(), Vec::new())
                .unwrap(),
        );
        assert_eq!(
            got,
            [("hosts".to_owned(), 4242, 4243), ("new".to_owned(), 0, 12)],
            "{}",
            sn.name()
        );
    }
}

#[test]
fn a_failed_directory_removal_keeps_the_record_so_remove_can_be_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = CopySnapshotter::new(tmp.path().join("copy")).unwrap();
    let overlay = OverlaySnapshotter::new(tmp.path().join("overlay")).unwrap();
    for sn in [&copy as &dyn Snapshotter, &overlay] {
        sn.prepare("busy", None).unwrap();
        let dir = sn.apply_target("busy").unwrap().dir;
        fs::write(dir.join("file"), b"f").unwrap();
        // A mount point inside the tree: rmdir fails with EBUSY.
        let mnt = dir.join("mnt");
        fs::create_dir(&mnt).unwrap();
        rustix::mount::mount("tmpfs", &mnt, "tmpfs", MountFlags::empty(), None).unwrap();
        let err = sn.remove("busy").unwrap_err();
        assert!(
            matches!(err, kiln_snapshot::Error::Io { op: "removing", .. }),
            "{}: {err:?}",
            sn.name()
        );
        assert!(sn.exists("busy").unwrap(), "{}", sn.name());
        assert!(mnt.is_dir());
        umount(&mnt);
        sn.remove("busy").unwrap();
        assert!(!sn.exists("busy").unwrap());
        assert!(!dir.exists(), "{}", sn.name());
        assert!(sn.list().unwrap().is_empty());
    }
}
