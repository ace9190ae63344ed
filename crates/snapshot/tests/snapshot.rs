//! Public-API tests of kiln-snapshot that need no root: the snapshot
//! lifecycle on both snapshotters, overlay mount descriptions (long chains
//! through short links), crash leftovers, copy fidelity, and unpacking and
//! diffing layers through the copy snapshotter.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::{fingerprint, names};
use kiln_layer::{ApplyOptions, Compression, DiffOptions, LayerWriter, WhiteoutMode, apply_layer};
use kiln_snapshot::{
    CopySnapshotter, DiffSource, Error, Kind, OverlaySnapshotter, Snapshotter, copy_tree,
};

fn lifecycle(sn: &dyn Snapshotter) {
    let m = sn.prepare("a-tmp", None).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].fstype, "bind");
    assert!(m[0].options.contains(&"rw".to_owned()));
    let target = sn.apply_target("a-tmp").unwrap();
    assert!(target.dir.is_dir());
    fs::write(target.dir.join("f"), b"a").unwrap();
    assert!(matches!(
        sn.prepare("a-tmp", None),
        Err(Error::AlreadyExists { .. })
    ));
    sn.commit("layer-a", "a-tmp").unwrap();
    assert!(!sn.exists("a-tmp").unwrap());
    assert_eq!(sn.stat("layer-a").unwrap().kind, Kind::Committed);
    assert!(matches!(sn.mounts("layer-a"), Err(Error::WrongKind { .. })));
    assert!(matches!(
        sn.apply_target("layer-a"),
        Err(Error::WrongKind { .. })
    ));

    sn.prepare("b-tmp", Some("layer-a")).unwrap();
    sn.commit("layer-b", "b-tmp").unwrap();
    sn.prepare("ctr", Some("layer-b")).unwrap();
    sn.view("ro", Some("layer-a")).unwrap();
    assert!(matches!(
        sn.prepare("bad", Some("ctr")),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        sn.prepare("bad", Some("nope")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(sn.commit("x", "ro"), Err(Error::WrongKind { .. })));
    assert!(matches!(
        sn.prepare("", None),
        Err(Error::InvalidKey { .. })
    ));

    let list: Vec<(String, Option<String>, Kind)> = sn
        .list()
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.parent, i.kind))
        .collect();
    assert_eq!(
        list,
        [
            ("ctr".into(), Some("layer-b".into()), Kind::Active),
            ("layer-a".into(), None, Kind::Committed),
            ("layer-b".into(), Some("layer-a".into()), Kind::Committed),
            ("ro".into(), Some("layer-a".into()), Kind::View),
        ]
    );
    match sn.remove("layer-a") {
        Err(Error::HasChildren { children, .. }) => assert_eq!(children, ["layer-b", "ro"]),
        other => panic!("expected HasChildren, got {other:?}"),
    }
    assert!(sn.usage("layer-a").unwrap().inodes >= 1);
    for k in ["ctr", "ro", "layer-b", "layer-a"] {
        sn.remove(k).unwrap();
    }
    assert!(sn.list().unwrap().is_empty());
    assert!(matches!(sn.remove("ctr"), Err(Error::NotFound { .. })));
}

#[test]
fn overlay_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    lifecycle(&OverlaySnapshotter::new(tmp.path()).unwrap());
    assert!(names(&tmp.path().join("snapshots")).is_empty());
    assert!(names(&tmp.path().join("l")).is_empty());
}

#[test]
fn copy_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    lifecycle(&CopySnapshotter::new(tmp.path()).unwrap());
    assert!(names(&tmp.path().join("snapshots")).is_empty());
}

/// Commits a chain of `n` empty layers named `l0..l{n-1}`.
fn chain(sn: &dyn Snapshotter, n: usize) {
    let mut parent: Option<String> = None;
    for i in 0..n {
        sn.prepare("tmp", parent.as_deref()).unwrap();
        sn.commit(&format!("l{i}"), "tmp").unwrap();
        parent = Some(format!("l{i}"));
    }
}

#[test]
fn overlay_mounts_list_lowers_top_first_through_short_links() {
    let tmp = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(tmp.path()).unwrap();
    chain(&sn, 3);
    let m = sn.prepare("ctr", Some("l2")).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].fstype.as_str(), m[0].source.as_str()),
        ("overlay", "overlay")
    );
    let opt = |prefix: &str| {
        m[0].options
            .iter()
            .find_map(|o| o.strip_prefix(prefix))
            .unwrap()
            .to_owned()
    };
    let lowers: Vec<String> = opt("lowerdir=").split(':').map(str::to_owned).collect();
    assert_eq!(lowers.len(), 3);
    // Top (l2) first; each short link leads to that layer's tree.
    for (i, lower) in lowers.iter().enumerate() {
        let layer = format!("l{}", 2 - i);
        assert!(lower.starts_with(&tmp.path().join("l").display().to_string()));
        // Write through the link, read back through the layer's diff source.
        fs::write(Path::new(lower).join("m"), layer.as_bytes()).unwrap();
        let DiffSource::OverlayUpper { upper } = sn.diff_source(&layer).unwrap() else {
            panic!("overlay diff source")
        };
        assert_eq!(fs::read(upper.join("m")).unwrap(), layer.as_bytes());
    }
    let upper = opt("upperdir=");
    let work = opt("workdir=");
    assert!(Path::new(&upper).is_dir() && Path::new(&work).is_dir());
    assert_eq!(
        sn.apply_target("ctr").unwrap().dir,
        Path::new(&upper).to_path_buf()
    );
    assert_eq!(
        sn.apply_target("ctr").unwrap().whiteouts,
        WhiteoutMode::Overlay
    );
    assert_eq!(sn.mounts("ctr").unwrap(), m);

    // Views: one layer is a read-only bind, more are an upper-less overlay.
    let v1 = sn.view("v1", Some("l0")).unwrap();
    assert_eq!(v1[0].fstype, "bind");
    assert!(v1[0].options.contains(&"ro".to_owned()));
    let v3 = sn.view("v3", Some("l2")).unwrap();
    assert_eq!(v3[0].fstype, "overlay");
    assert!(v3[0].options.contains(&"ro".to_owned()));
    assert!(!v3[0].options.iter().any(|o| o.starts_with("upperdir=")));
}

#[test]
fn overlay_mount_options_fit_a_page_for_128_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(tmp.path()).unwrap();
    chain(&sn, 128);
    let m = sn.prepare("ctr", Some("l127")).unwrap();
    let len: usize = m[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(len < 4096, "{len}");
    // The same list with the layers' real paths would not have fit.
    let lowers = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    let long: usize = lowers
        .split(':')
        .map(|l| fs::canonicalize(l).unwrap().display().to_string().len() + 1)
        .sum();
    assert!(long > 4096, "{long}");
}

#[test]
fn metadata_survives_reopen_and_crash_leftovers_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let sn = OverlaySnapshotter::new(tmp.path()).unwrap();
        chain(&sn, 2);
    }
    // What an interrupted prepare leaves: a temp dir and an unrecorded dir.
    fs::create_dir_all(tmp.path().join("snapshots/tmp-99/fs")).unwrap();
    fs::create_dir_all(tmp.path().join("snapshots/77/fs")).unwrap();
    symlink("../snapshots/77/fs", tmp.path().join("l/77")).unwrap();
    fs::remove_dir_all(tmp.path().join("snapshots/77")).unwrap();
    fs::create_dir_all(tmp.path().join("snapshots/78/fs")).unwrap();
    let sn = OverlaySnapshotter::new(tmp.path()).unwrap();
    assert_eq!(sn.stat("l1").unwrap().parent.as_deref(), Some("l0"));
    assert_eq!(names(&tmp.path().join("snapshots")), ["0", "1"]);
    assert_eq!(names(&tmp.path().join("l")), ["0", "1"]);
    // A corrupt metadata file is an error, not an empty snapshotter.
    fs::write(tmp.path().join("metadata.json"), b"{not json").unwrap();
    assert!(matches!(sn.list(), Err(Error::Metadata { .. })));
}

fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/sub")).unwrap();
    fs::write(dir.join("etc/a"), b"aaa").unwrap();
    fs::write(dir.join("etc/sub/big"), vec![9u8; 300_000]).unwrap();
    fs::hard_link(dir.join("etc/a"), dir.join("etc/a-link")).unwrap();
    symlink("/etc/a", dir.join("abs")).unwrap();
    fs::write(dir.join("suid"), b"x").unwrap();
    fs::set_permissions(dir.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    xattr::set(dir.join("etc/a"), "user.k", b"v").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn copy_tree_preserves_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    sample_tree(&a);
    copy_tree(&a, &b).unwrap();
    assert_eq!(fingerprint(&a), fingerprint(&b));
}

fn layer_of(dir_tree: impl Fn(&Path), lower: Option<&Path>) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("u");
    fs::create_dir(&upper).unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    if let Some(l) = lower {
        copy_tree(l, &upper).unwrap();
    }
    dir_tree(&upper);
    let w = LayerWriter::new(Vec::new(), Compression::Gzip).unwrap();
    let w =
        kiln_layer::diff_dirs(lower.unwrap_or(&empty), &upper, &DiffOptions::default(), w).unwrap();
    w.finish().unwrap().1
}

#[test]
fn copy_snapshotter_unpacks_a_chain_and_diffs_a_container() {
    let tmp = tempfile::tempdir().unwrap();
    let sn = CopySnapshotter::new(tmp.path().join("sn")).unwrap();
    let expect = tmp.path().join("expect");
    fs::create_dir(&expect).unwrap();
    sample_tree(&expect);
    let layer1 = layer_of(sample_tree, None);
    let layer2 = layer_of(
        |d| {
            fs::remove_file(d.join("etc/a-link")).unwrap();
            fs::remove_dir_all(d.join("etc/sub")).unwrap();
            fs::write(d.join("etc/new"), b"n").unwrap();
        },
        Some(&expect),
    );
    let opts = |w| ApplyOptions {
        whiteouts: w,
        preserve_owners: false,
        allow_devices: false,
        expected_diff_id: None,
    };
    let mut parent: Option<&str> = None;
    for (name, layer) in [("l1", &layer1), ("l2", &layer2)] {
        sn.prepare("unpack", parent).unwrap();
        let t = sn.apply_target("unpack").unwrap();
        assert_eq!(t.whiteouts, WhiteoutMode::Delete);
        apply_layer(
            layer.as_slice(),
            Compression::Gzip,
            &t.dir,
            &opts(t.whiteouts),
        )
        .unwrap();
        sn.commit(name, "unpack").unwrap();
        parent = Some(name);
    }
    sn.prepare("ctr", Some("l2")).unwrap();
    let dir = sn.apply_target("ctr").unwrap().dir;
    assert_eq!(names(&dir.join("etc")), ["a", "new"]);
    fs::write(dir.join("added"), b"+").unwrap();
    fs::remove_file(dir.join("etc/new")).unwrap();
    let src = sn.diff_source("ctr").unwrap();
    let tar = src
        .write_layer(&DiffOptions::default(), Vec::new())
        .unwrap();
    let mut paths: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["added", "etc", "etc/.wh.new"]);
    // A view shares its parent's tree read-only.
    let v = sn.view("v", Some("l1")).unwrap();
    assert!(Path::new(&v[0].source).join("etc/sub/big").is_file());
    assert!(v[0].options.contains(&"ro".to_owned()));
}

#[test]
fn overlay_chain_deeper_than_overlay_stacks_is_refused_without_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(tmp.path()).unwrap();
    let mut parent: Option<String> = None;
    let mut depth = 0;
    let err = loop {
        match sn.prepare("tmp", parent.as_deref()) {
            Ok(_) => {}
            Err(e) => break e,
        }
        sn.commit(&format!("l{depth}"), "tmp").unwrap();
        parent = Some(format!("l{depth}"));
        depth += 1;
        assert!(depth < 1000, "no limit reached");
    };
    assert!(
        matches!(
            err,
            Error::ChainTooDeep {
                depth: 501,
                max: 500,
                ..
            }
        ),
        "{err}"
    );
    // 501 committed layers: a snapshot on the 500th still stacked 500
    // lowers below its own upper dir; one on the 501st would stack 501.
    assert_eq!(depth, kiln_snapshot::MAX_LOWER_LAYERS + 1);
    assert!(
        !sn.exists("tmp").unwrap(),
        "failed prepare left its snapshot"
    );
    assert_eq!(sn.list().unwrap().len(), depth);
    // A view stacks its parent's chain only: 500 layers fit, 501 do not.
    let v = sn.view("v", Some("l499")).unwrap();
    let lowers = v[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    assert_eq!(lowers.split(':').count(), kiln_snapshot::MAX_LOWER_LAYERS);
    let err = sn.view("v2", parent.as_deref()).unwrap_err();
    assert!(matches!(err, Error::ChainTooDeep { .. }), "{err}");
    assert!(!sn.exists("v2").unwrap());
}

fn usage_of_own_data(sn: &dyn Snapshotter) {
    sn.prepare("base-tmp", None).unwrap();
    let base = sn.apply_target("base-tmp").unwrap().dir;
    fs::write(base.join("big"), vec![1u8; 1 << 20]).unwrap();
    sn.commit("base", "base-tmp").unwrap();
    let base_usage = sn.usage("base").unwrap();
    assert_eq!(base_usage.inodes, 1);
    assert!(base_usage.size >= 1 << 20, "{base_usage:?}");

    sn.prepare("ctr", Some("base")).unwrap();
    let dir = sn.apply_target("ctr").unwrap().dir;
    fs::create_dir(dir.join("d")).unwrap();
    fs::write(dir.join("d/half"), vec![2u8; 512 << 10]).unwrap();
    // A second name of the same inode is not counted again.
    fs::hard_link(dir.join("d/half"), dir.join("d/half-again")).unwrap();
    let u = sn.usage("ctr").unwrap();
    if matches!(
        sn.diff_source("ctr").unwrap(),
        DiffSource::OverlayUpper { .. }
    ) {
        // Only the upper dir: the parent's 1 MiB is not the container's.
        assert_eq!(u.inodes, 2, "{u:?}");
        assert!(u.size >= 512 << 10 && u.size < 1 << 20, "{u:?}");
    } else {
        // The copy snapshotter's snapshot holds its own copy of the parent
        // (a reflink may share the blocks, so only the inodes are exact).
        assert_eq!(u.inodes, 3, "{u:?}");
        assert!(u.size >= 512 << 10, "{u:?}");
    }
    assert!(matches!(sn.usage("nope"), Err(Error::NotFound { .. })));
}

#[test]
fn usage_counts_a_snapshots_own_data_once_per_inode() {
    let tmp = tempfile::tempdir().unwrap();
    usage_of_own_data(&OverlaySnapshotter::new(tmp.path().join("ov")).unwrap());
    usage_of_own_data(&CopySnapshotter::new(tmp.path().join("cp")).unwrap());
}
