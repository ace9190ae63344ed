//! Public-API tests of kiln-image against a temporary store and the copy
//! snapshotter: committing changes as layers, unpacking images into fresh
//! snapshotters, reuse, concurrency, and bad input. No root needed.

mod archive;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_content::{Reference, Store};
use kiln_image::{
    CommitOptions, Timestamp, UnpackOptions, commit_layer, ensure_unpacked, history, read_image,
};
use kiln_layer::{Compression, DiffOptions};
use kiln_model::{Digest, History, ImageConfig};
use kiln_snapshot::{CopySnapshotter, Snapshotter};

pub(crate) struct Env {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) store: Store,
    pub(crate) sn: CopySnapshotter,
}

pub(crate) fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let store = Store::open(dir.join("store")).unwrap();
    let sn = CopySnapshotter::new(dir.join("snap")).unwrap();
    Env {
        _tmp: tmp,
        dir,
        store,
        sn,
    }
}

pub(crate) fn rootless() -> UnpackOptions {
    UnpackOptions {
        preserve_owners: false,
        allow_devices: false,
        skip_devices: false,
    }
}

pub(crate) fn opts(created_by: &str, tags: &[&str]) -> CommitOptions {
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
        tags: tags.iter().map(|t| Reference::parse(t).unwrap()).collect(),
        skip_empty_layer: false,
        commit_snapshot: true,
    }
}

fn tree_dir(sn: &dyn Snapshotter, key: &str) -> PathBuf {
    sn.apply_target(key).unwrap().dir
}

/// A two-layer image: layer 1 adds /etc/motd, /bin/tool and /gone; layer 2
/// removes /gone and adds /etc/second. Returns (base id, top id).
pub(crate) fn two_layer_image(e: &Env) -> (Digest, Digest) {
    e.sn.prepare("step1", None).unwrap();
    let root = tree_dir(&e.sn, "step1");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("etc/motd"), b"hello\n").unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::write(root.join("gone"), b"to be removed").unwrap();
    let mut cfg = ImageConfig::new("linux", "amd64");
    cfg.created = Some(Timestamp::from_unix(1_700_000_000).to_string());
    let base = commit_layer(
        &e.store,
        &e.sn,
        "step1",
        cfg,
        vec![],
        &opts("/bin/sh -c #(nop) ADD file:base in / ", &["test/base:1"]),
    )
    .unwrap();
    let parent = base.top_snapshot.clone().unwrap();
    assert!(!e.sn.exists("step1").unwrap(), "key consumed by commit");

    e.sn.prepare("step2", Some(&parent)).unwrap();
    let root = tree_dir(&e.sn, "step2");
    fs::remove_file(root.join("gone")).unwrap();
    fs::write(root.join("etc/second"), b"two\n").unwrap();
    let base_img = read_image(&e.store, &base.record.id).unwrap();
    let mut cfg = base_img.config.clone();
    cfg.container_config_mut().cmd = Some(vec!["cat".into(), "/etc/motd".into()]);
    let top = commit_layer(
        &e.store,
        &e.sn,
        "step2",
        cfg,
        base_img.manifest.layers.clone(),
        &opts(
            "/bin/sh -c rm /gone && echo two > /etc/second",
            &["test/top:1"],
        ),
    )
    .unwrap();
    (base.record.id, top.record.id)
}

fn view_dir(sn: &dyn Snapshotter, key: &str, parent: &str) -> PathBuf {
    let mounts = sn.view(key, Some(parent)).unwrap();
    PathBuf::from(&mounts[0].source)
}

#[test]
fn committed_image_unpacks_elsewhere_to_the_same_tree() {
    let e = env();
    let (_base, top) = two_layer_image(&e);
    let img = read_image(&e.store, &top).unwrap();
    assert_eq!(img.manifest.layers.len(), 2);
    assert_eq!(img.config.history.len(), 2);
    assert_eq!(img.record.repo_tags, ["test/top:1"]);
    assert_eq!(
        img.manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The commit kept the snapshot: unpacking in the same snapshotter is free.
    let chain = img.chain_ids().unwrap();
    let again = ensure_unpacked(&e.store, &e.sn, &top, &rootless()).unwrap();
    assert_eq!(again.as_deref(), Some(chain[1].to_string().as_str()));

    // A fresh snapshotter unpacks both layers from the blobs.
    let other = CopySnapshotter::new(e.dir.join("snap2")).unwrap();
    let top_key = ensure_unpacked(&e.store, &other, &top, &rootless())
        .unwrap()
        .unwrap();
    assert_eq!(top_key, chain[1].to_string());
    let dir = view_dir(&other, "look", &top_key);
    assert_eq!(fs::read(dir.join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(fs::read(dir.join("etc/second")).unwrap(), b"two\n");
    assert!(fs::read(dir.join("bin/tool")).is_ok());
    assert!(!dir.join("gone").exists(), "whiteout applied");
    let committed: Vec<String> = other
        .list()
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == kiln_snapshot::Kind::Committed)
        .map(|i| i.name)
        .collect();
    assert_eq!(committed.len(), 2, "{committed:?}");
    assert!(committed.contains(&chain[0].to_string()));

    // Running it again creates nothing new.
    let before = other.list().unwrap().len();
    ensure_unpacked(&e.store, &other, &top, &rootless()).unwrap();
    assert_eq!(other.list().unwrap().len(), before);
}

#[test]
fn same_inputs_give_the_same_image_id() {
    let a = env();
    let b = env();
    let (base_a, top_a) = two_layer_image(&a);
    let (base_b, top_b) = two_layer_image(&b);
    assert_eq!(base_a, base_b);
    assert_eq!(top_a, top_b);
}

#[test]
fn concurrent_unpacks_of_one_image_agree() {
    let e = env();
    let (_base, top) = two_layer_image(&e);
    let root = e.dir.join("shared");
    let sn: Arc<dyn Snapshotter> = Arc::new(CopySnapshotter::new(&root).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = e.store.clone();
            let sn = Arc::clone(&sn);
            std::thread::spawn(move || ensure_unpacked(&store, &*sn, &top, &rootless()))
        })
        .collect();
    let keys: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]));
    // Only the two committed layers remain: every losing copy was removed.
    assert_eq!(sn.list().unwrap().len(), 2, "{:?}", sn.list().unwrap());
}

#[test]
fn empty_change_can_be_an_empty_history_entry() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let img = read_image(&e.store, &base).unwrap();
    let parent = img.chain_ids().unwrap().last().unwrap().to_string();
    e.sn.prepare("noop", Some(&parent)).unwrap();
    let mut o = opts("/bin/sh -c true", &[]);
    o.skip_empty_layer = true;
    let c = commit_layer(
        &e.store,
        &e.sn,
        "noop",
        img.config.clone(),
        img.manifest.layers.clone(),
        &o,
    )
    .unwrap();
    assert!(c.layer.is_none());
    assert_eq!(c.top_snapshot.as_deref(), Some(parent.as_str()));
    assert!(!e.sn.exists("noop").unwrap());
    let new = read_image(&e.store, &c.record.id).unwrap();
    assert_eq!(new.manifest.layers.len(), 1);
    assert!(new.config.history.last().unwrap().empty_layer);
    let rows = history(&e.store, &c.record.id).unwrap();
    assert_eq!(rows[0].size, 0);
    assert!(rows[0].empty_layer);

    // Without skipping, the empty change is a real (empty) layer.
    e.sn.prepare("noop2", Some(&parent)).unwrap();
    let mut o = opts("/bin/sh -c true", &[]);
    o.compression = Compression::None;
    let c = commit_layer(
        &e.store,
        &e.sn,
        "noop2",
        img.config.clone(),
        img.manifest.layers.clone(),
        &o,
    )
    .unwrap();
    let (_desc, diff_id) = c.layer.unwrap();
    assert_eq!(diff_id.to_string(), kiln_image::EMPTY_LAYER_DIFF_ID);
}

#[test]
fn commit_without_snapshot_commit_keeps_the_key_active() {
    let e = env();
    e.sn.prepare("ctr", None).unwrap();
    fs::write(tree_dir(&e.sn, "ctr").join("file"), b"x").unwrap();
    let mut o = opts("commit", &["test/committed"]);
    o.commit_snapshot = false;
    let c = commit_layer(
        &e.store,
        &e.sn,
        "ctr",
        ImageConfig::new("linux", "amd64"),
        vec![],
        &o,
    )
    .unwrap();
    assert!(e.sn.exists("ctr").unwrap());
    assert_eq!(c.top_snapshot, None);
    assert_eq!(
        e.store.resolve_image("test/committed").unwrap().id,
        c.record.id
    );
}

#[test]
fn a_wrong_diff_id_is_refused_and_leaves_nothing() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    // Re-record the base image with a config claiming another diff ID.
    let img = read_image(&e.store, &base).unwrap();
    let mut cfg = img.config.clone();
    cfg.rootfs.diff_ids[0] = Digest::of(b"other").to_string();
    let rec = kiln_image::write_image(&e.store, &cfg, img.manifest.layers.clone(), &[]).unwrap();
    let fresh = CopySnapshotter::new(e.dir.join("snap3")).unwrap();
    let err = ensure_unpacked(&e.store, &fresh, &rec.id, &rootless()).unwrap_err();
    let chain = format!("{err:?}");
    assert!(chain.contains("DiffIdMismatch"), "{chain}");
    assert!(fresh.list().unwrap().is_empty(), "partial snapshot removed");
}

#[test]
fn unknown_layer_media_type_is_refused() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let img = read_image(&e.store, &base).unwrap();
    let mut layers = img.manifest.layers.clone();
    layers[0].media_type = "application/x-unknown".into();
    let rec = kiln_image::write_image(&e.store, &img.config, layers, &[]).unwrap();
    let fresh = CopySnapshotter::new(e.dir.join("snap4")).unwrap();
    let err = ensure_unpacked(&e.store, &fresh, &rec.id, &rootless()).unwrap_err();
    assert!(err.to_string().contains("application/x-unknown"), "{err}");
}

#[test]
fn rootless_unpack_can_skip_device_nodes() {
    let e = env();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    b.append_data(&mut h, "dev-null", &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(2);
    b.append_data(&mut h, "file", &b"hi"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    // Stored as a blob only to get its sha256: the diffID of a plain layer.
    let diff_id = e.store.write_blob(&bytes).unwrap();
    let layer = kiln_image::LayerRef {
        chain_id: diff_id,
        diff_id,
        compression: Compression::None,
        label: "layer-x".into(),
    };
    let refuse = CopySnapshotter::new(e.dir.join("devices-refused")).unwrap();
    let err =
        kiln_image::unpack_layer(&refuse, None, &layer, bytes.as_slice(), &rootless()).unwrap_err();
    let chain = format!("{err:?}");
    assert!(err.to_string().contains("layer-x"), "{err}");
    assert!(chain.contains("Device"), "refused for its device: {chain}");
    assert!(refuse.list().unwrap().is_empty());
    let skip = CopySnapshotter::new(e.dir.join("devices-skipped")).unwrap();
    let opts = UnpackOptions {
        skip_devices: true,
        ..rootless()
    };
    let name = kiln_image::unpack_layer(&skip, None, &layer, bytes.as_slice(), &opts).unwrap();
    let mounts = skip.view("look", Some(&name)).unwrap();
    let dir = PathBuf::from(&mounts[0].source);
    assert_eq!(fs::read(dir.join("file")).unwrap(), b"hi");
    assert!(dir.join("dev-null").symlink_metadata().is_err());
}

#[test]
fn unpack_layer_streams_from_any_reader() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let img = read_image(&e.store, &base).unwrap();
    let chain = img.chain_ids().unwrap();
    let layer = kiln_image::LayerRef {
        chain_id: chain[0],
        diff_id: img.diff_ids().unwrap()[0],
        compression: Compression::Gzip,
        label: "in-memory".into(),
    };
    let bytes = e.store.read_blob(&img.manifest.layers[0].digest).unwrap();
    let fresh = CopySnapshotter::new(e.dir.join("stream")).unwrap();
    let name =
        kiln_image::unpack_layer(&fresh, None, &layer, bytes.as_slice(), &rootless()).unwrap();
    assert_eq!(name, chain[0].to_string());
    // Present now: the reader is not even read.
    let name = kiln_image::unpack_layer(&fresh, None, &layer, &b""[..], &rootless()).unwrap();
    assert_eq!(name, chain[0].to_string());
    // A truncated stream fails and leaves no snapshot behind.
    let other = CopySnapshotter::new(e.dir.join("stream2")).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let err = kiln_image::unpack_layer(&other, None, &layer, cut, &rootless()).unwrap_err();
    assert!(err.to_string().contains("in-memory"), "{err}");
    assert!(other.list().unwrap().is_empty());
}

#[test]
fn unpack_layer_verified_commits_only_when_the_stream_checks_out() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let img = read_image(&e.store, &base).unwrap();
    let chain = img.chain_ids().unwrap();
    let layer = kiln_image::LayerRef {
        chain_id: chain[0],
        diff_id: img.diff_ids().unwrap()[0],
        compression: Compression::Gzip,
        label: "download".into(),
    };
    let bytes = e.store.read_blob(&img.manifest.layers[0].digest).unwrap();

    // The layer applies and its diff ID matches, but the download's own
    // check fails: nothing is committed and the partial snapshot is gone.
    let sn = CopySnapshotter::new(e.dir.join("verified")).unwrap();
    let mut reader = bytes.as_slice();
    let err = kiln_image::unpack_layer_verified(
        &sn,
        None,
        &layer,
        &mut reader,
        &rootless(),
        Some(&e.store),
        |_| {
            Err(kiln_image::Error::ReadBlob {
                digest: "download".into(),
                source: std::io::Error::other("digest mismatch"),
            })
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("download"), "{err}");
    assert!(sn.list().unwrap().is_empty());

    // When it checks out, the snapshot is committed, the reader is handed
    // back to be drained, and the layer's size is remembered.
    let mut reader = bytes.as_slice();
    let mut left = None;
    let name = kiln_image::unpack_layer_verified(
        &sn,
        None,
        &layer,
        &mut reader,
        &rootless(),
        Some(&e.store),
        |r| {
            let mut rest = Vec::new();
            std::io::Read::read_to_end(r, &mut rest).unwrap();
            left = Some(rest.len());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(name, chain[0].to_string());
    assert!(left.is_some());
    assert!(sn.exists(&name).unwrap());
    let one = kiln_image::Image {
        manifest: {
            let mut m = img.manifest.clone();
            m.layers.truncate(1);
            m
        },
        ..img.clone()
    };
    assert!(kiln_image::layer_sizes(&e.store, &one).unwrap()[0].is_some());
}

#[test]
fn prune_frees_only_unused_layer_snapshots() {
    let e = env();
    let (base, top) = two_layer_image(&e);
    let chain = read_image(&e.store, &top).unwrap().chain_ids().unwrap();
    let (l1, l2) = (chain[0].to_string(), chain[1].to_string());
    assert!(
        kiln_image::prune_snapshots(&e.store, &e.sn)
            .unwrap()
            .is_empty()
    );

    // A container on the top layer keeps it even when its image goes.
    e.sn.prepare("container", Some(&l2)).unwrap();
    e.store.remove_image(&top).unwrap();
    assert!(
        kiln_image::prune_snapshots(&e.store, &e.sn)
            .unwrap()
            .is_empty()
    );
    e.sn.remove("container").unwrap();
    assert_eq!(
        kiln_image::prune_snapshots(&e.store, &e.sn).unwrap(),
        std::slice::from_ref(&l2)
    );
    assert!(e.sn.exists(&l1).unwrap(), "the base image still uses it");

    e.store.remove_image(&base).unwrap();
    assert_eq!(kiln_image::prune_snapshots(&e.store, &e.sn).unwrap(), [l1]);
    assert!(e.sn.list().unwrap().is_empty());
}
