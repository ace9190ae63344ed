//! `kiln cp`'s library under random trees of hostile symlinks: random
//! `archive_path` calls (any path, trailing `/` or `/.`, `-L` targets)
//! whose archives are then extracted with `extract_copy` into another
//! tree and back into the same one. Nothing outside the trees may be
//! created, changed or removed, and no archive may hold the host marker's
//! content.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use kiln_layer::{CopyOwner, Root, archive_path, extract_copy, link_target, stat_path};
use proptest::prelude::*;

const SECRET: &[u8] = b"HOST-MARKER-cp-7d2e-never-in-an-archive";

/// Link targets that try to leave: the outside by absolute path, by a
/// `..` chain, the marker file, `/`, a loop, and harmless ones.
fn targets(outside: &Path) -> Vec<String> {
    vec![
        outside.display().to_string(),
        outside.join("secret").display().to_string(),
        "../../../../../../outside".to_owned(),
        "../../../../../../outside/secret".to_owned(),
        "/".to_owned(),
        "..".to_owned(),
        "l0".to_owned(),
        "d0".to_owned(),
        "/d1/f2".to_owned(),
        "nowhere/x".to_owned(),
    ]
}

/// Every path below `dir` with what it is (content, mode, times, link).
fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let m = fs::symlink_metadata(dir).unwrap();
    let what = if m.file_type().is_symlink() {
        format!("link {:?}", fs::read_link(dir).unwrap())
    } else if m.is_file() {
        format!("file {:?}", fs::read(dir).unwrap())
    } else {
        "dir".to_owned()
    };
    out.insert(
        dir.to_path_buf(),
        format!(
            "{what} {:o} {} {} {}",
            m.mode(),
            m.uid(),
            m.mtime(),
            m.ctime()
        ),
    );
    if m.is_dir() {
        for e in fs::read_dir(dir).unwrap() {
            snapshot(&e.unwrap().path(), out);
        }
    }
}

fn run(shape: &[(u8, u8, u8)], picks: &[(u8, u8, u8)]) {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    let (rootp, destp) = (tmp.path().join("root"), tmp.path().join("dest"));
    fs::create_dir_all(&rootp).unwrap();
    fs::create_dir_all(&destp).unwrap();
    let targets = targets(&outside);
    let dirs = ["", "d0", "d1", "d0/d2"];
    // The container's tree: directories, files and hostile links.
    for (i, &(kind, at, t)) in shape.iter().enumerate() {
        let parent = rootp.join(dirs[at as usize % dirs.len()]);
        let _ = fs::create_dir_all(&parent);
        let _ = match kind % 3 {
            0 => fs::create_dir(parent.join(format!("d{}", i % 3))),
            1 => fs::write(parent.join(format!("f{i}")), format!("in {i}")),
            _ => symlink(
                &targets[t as usize % targets.len()],
                parent.join(format!("l{}", i % 4)),
            ),
        };
    }
    let mut before = BTreeMap::new();
    snapshot(&outside, &mut before);
    let root = Root::open(&rootp).unwrap();
    let dest = Root::open(&destp).unwrap();
    let names = [
        "", "d0", "d1", "d0/d2", "l0", "l1", "l2", "l3", "f0", "f1", "d0/l1",
    ];
    let ends = ["", "/", "/."];
    for &(n, e, mode) in picks {
        let path = format!(
            "/{}{}",
            names[n as usize % names.len()],
            ends[e as usize % ends.len()]
        );
        let path = if mode % 4 == 3 {
            // `-L`: the link's target, resolved inside the root.
            match link_target(&root, &path) {
                Ok(t) => t,
                Err(_) => continue,
            }
        } else {
            path
        };
        let _ = stat_path(&root, &path);
        let Ok(tar) = archive_path(&root, &path, "top", &[], None, Vec::new()) else {
            continue;
        };
        assert!(
            !tar.windows(SECRET.len()).any(|w| w == SECRET),
            "the host marker got into an archive of {path}"
        );
        if tar.len() > 64 << 10 {
            // A tree copied into itself again and again: enough.
            continue;
        }
        // Out to another tree, and back into the container's own tree
        // (where its links could try to lead the writes out).
        let into = if mode % 2 == 0 { &dest } else { &root };
        let owner = CopyOwner::Caller;
        let _ = extract_copy(tar.as_slice(), into, owner, None, false);
        if let Ok(sub) = root.subdir("d0") {
            let _ = extract_copy(tar.as_slice(), &sub, owner, None, false);
        }
    }
    let mut after = BTreeMap::new();
    snapshot(&outside, &mut after);
    assert_eq!(before, after, "something outside the trees changed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn random_copies_stay_inside_their_trees(
        shape in proptest::collection::vec(any::<(u8, u8, u8)>(), 0..24),
        picks in proptest::collection::vec(any::<(u8, u8, u8)>(), 1..12),
    ) {
        run(&shape, &picks);
    }
}

/// The shapes that matter, on purpose: links to the outside at the top
/// and in subdirectories, archived with and without following.
#[test]
fn hand_picked_copies_stay_inside_their_trees() {
    let shape = [
        (2, 0, 0),
        (2, 0, 1),
        (2, 1, 2),
        (2, 2, 3),
        (0, 0, 0),
        (1, 1, 0),
    ];
    let picks: Vec<(u8, u8, u8)> = (0..11u8)
        .flat_map(|n| (0..3u8).flat_map(move |e| (0..4u8).map(move |m| (n, e, m))))
        .collect();
    run(&shape, &picks);
}
