//! The containment harness shared by `tests/containment.rs` (proptest) and
//! the fuzz target `tree_ops` (`fuzz/fuzz_targets/tree_ops.rs` includes this
//! file): arbitrary bytes become a program of [`kiln_fs::Root`] operations
//! on a tree of hostile symlinks, run inside a root that sits beside a
//! marker directory and a marker file; afterwards nothing outside the root
//! may have been created, changed (content, mode, owner, times, ctime) or
//! removed, and no read may have returned the marker's content.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_fs::{FileType, FinalLink, Root, at};

/// The marker file's content: never in anything read through the root.
pub(crate) const SECRET: &[u8] = b"HOST-MARKER-3b1f0c9e-never-read-through-a-root";

/// What a path outside the root looked like.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

/// Everything under `dir` except `skip` (the root), by path.
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Seen>) {
    let meta = fs::symlink_metadata(dir).expect("stat outside");
    out.insert(dir.to_path_buf(), seen(dir, &meta));
    if !meta.is_dir() {
        return;
    }
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("list outside")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in names {
        if p == skip {
            // The root's own inode: its listing is inside, but it must stay
            // where it is, a directory.
            let m = fs::symlink_metadata(&p).expect("root still there");
            assert!(m.is_dir(), "the root was replaced");
            continue;
        }
        snapshot(&p, skip, out);
    }
}

fn seen(p: &Path, m: &fs::Metadata) -> Seen {
    Seen {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        content: m.is_file().then(|| fs::read(p).expect("read outside")),
        link: m
            .file_type()
            .is_symlink()
            .then(|| fs::read_link(p).expect("readlink outside")),
    }
}

/// Reads bytes of the program one at a time (zeros once exhausted).
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

const NAMES: &[&str] = &[
    "a", "b", "c", "etc", "passwd", "abs", "up", "slash", "loop", "..", ".", "x",
];

struct World {
    outside: PathBuf,
}

impl World {
    fn path(&self, c: &mut Cursor<'_>) -> PathBuf {
        let n = 1 + usize::from(c.byte() % 4);
        let mut p = PathBuf::new();
        if c.byte() & 1 == 1 {
            p.push("/");
        }
        for _ in 0..n {
            p.push(NAMES[usize::from(c.byte()) % NAMES.len()]);
        }
        p
    }

    /// A symlink target: the outside marker by absolute host path, `/`,
    /// climbing chains, loops, or a path of names.
    fn target(&self, c: &mut Cursor<'_>) -> PathBuf {
        match c.byte() % 9 {
            0 => self.outside.clone(),
            1 => self.outside.join("secret"),
            2 => PathBuf::from("/"),
            3 => PathBuf::from("../../../../../../.."),
            4 => PathBuf::from("../outside"),
            5 => PathBuf::from("a/../../../outside/dir"),
            6 => PathBuf::from("loop"),
            7 => self.outside.parent().expect("parent").join("marker"),
            _ => self.path(c),
        }
    }
}

fn last(c: &mut Cursor<'_>) -> FinalLink {
    match c.byte() % 3 {
        0 => FinalLink::Follow,
        1 => FinalLink::NoFollow,
        _ => FinalLink::Refuse,
    }
}

fn check_read(data: &[u8]) {
    assert!(
        !data.windows(SECRET.len()).any(|w| w == SECRET),
        "read the host marker through the root"
    );
}

/// Runs the program `data` and checks containment. Panics on a breach.
pub(crate) fn run(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("dir")).expect("mkdir outside");
    fs::write(outside.join("secret"), SECRET).expect("write secret");
    fs::write(outside.join("dir/file"), SECRET).expect("write secret");
    fs::write(tmp.path().join("marker"), SECRET).expect("write marker");
    let root_path = tmp.path().join("root");
    fs::create_dir(&root_path).expect("mkdir root");
    let mut before = BTreeMap::new();
    snapshot(tmp.path(), &root_path, &mut before);

    let root = Root::open(&root_path).expect("open root");
    let world = World { outside };
    let mut c = Cursor { data, pos: 0 };
    // Hostile links from the start, then whatever the program does.
    for (t, name) in [
        (world.outside.clone(), "abs"),
        (PathBuf::from("../../../.."), "up"),
        (PathBuf::from("/"), "slash"),
        (PathBuf::from("loop"), "loop"),
    ] {
        root.symlink(t, name).expect("plant link");
    }
    let mut steps = 0;
    while !c.done() && steps < 64 {
        steps += 1;
        step(&root, &world, &mut c);
    }
    drop(root);

    let mut after = BTreeMap::new();
    snapshot(tmp.path(), &root_path, &mut after);
    // The temporary directory's own times change when nothing else does
    // not; compare everything else exactly.
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "something was created or removed outside the root"
    );
    for (p, b) in &before {
        assert_eq!(Some(b), after.get(p), "{} changed", p.display());
    }
}

fn step(root: &Root, w: &World, c: &mut Cursor<'_>) {
    let op = c.byte() % 24;
    let p = w.path(c);
    // Errors are expected (missing parents, loops, names that are links):
    // only what happens outside matters.
    match op {
        0 => drop(root.mkdir_all(&p, 0o755)),
        1 => drop(root.write(&p, &[c.byte(); 8], 0o644)),
        2 => {
            let t = w.target(c);
            drop(root.symlink(t, &p));
        }
        3 => drop(root.remove_all(&p)),
        4 => drop(root.remove(&p)),
        5 => {
            let q = w.path(c);
            drop(root.rename(&p, &q));
        }
        6 => {
            let q = w.path(c);
            drop(root.hard_link(&p, &q));
        }
        7 => {
            let l = last(c);
            drop(root.chmod(&p, 0o4777, l));
        }
        8 => {
            let l = last(c);
            let (uid, gid) = (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            );
            drop(root.chown(&p, uid, gid, l));
        }
        9 => {
            let l = last(c);
            drop(root.set_times(&p, 12345, 0, l));
        }
        10 => {
            if let Ok(d) = root.read(&p) {
                check_read(&d);
            }
        }
        11 => drop(root.mknod(&p, FileType::Fifo, 0o644, 0, 0)),
        12 => {
            if let Ok(mut f) = root.create(&p, 0o600) {
                use std::io::Write;
                let _ = f.write_all(b"created");
            }
        }
        13 => {
            let _ = root.walk(&p, &mut |_, _| Ok(true));
        }
        14 => {
            let l = last(c);
            let _ = root.stat(&p, l);
            let _ = root.lstat(&p);
            let _ = root.readlink(&p);
            let _ = root.list(&p);
        }
        15 => drop(root.mkdir(&p, 0o700)),
        16 => {
            let l = last(c);
            if let Ok(mut f) = root.open_file(&p, l) {
                let mut d = Vec::new();
                let _ = std::io::Read::read_to_end(&mut f, &mut d);
                check_read(&d);
            }
        }
        17 => {
            let uid = rustix::process::geteuid().as_raw();
            drop(root.mkdir_all_owned(&p, 0o750, uid, uid));
        }
        18 => {
            // A directory inside as a root of its own: one nested step.
            if let Ok(sub) = root.subdir(&p) {
                step(&sub, w, c);
            }
        }
        19 => {
            if let Ok(d) = root.read_limited(&p, 64) {
                check_read(&d);
            }
        }
        20 => drop(root.ensure_dir(&p, 0o755)),
        21 => {
            let l = last(c);
            if let Ok(rel) = root.canonical(&p, l) {
                assert!(
                    rel.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "canonical path {} is not a plain relative path",
                    rel.display()
                );
            }
        }
        22 => {
            // Single-name operations in a directory resolved inside the root.
            let name = NAMES[usize::from(c.byte()) % NAMES.len()];
            let name = std::ffi::OsStr::new(name);
            if let Ok(dir) = root.resolve_dir(&p) {
                let _ = at::chmod(&dir, name, 0o700);
                let _ = at::chown(
                    &dir,
                    name,
                    rustix::process::geteuid().as_raw(),
                    rustix::process::getegid().as_raw(),
                );
                let _ = at::set_times(&dir, name, 1, 0);
                let t = w.target(c);
                let _ = at::symlink(&t, &dir, name);
                let _ = at::mkdir(&dir, name, 0o755);
                if let Ok(mut f) = at::create(&dir, name, 0o644) {
                    use std::io::Write;
                    let _ = f.write_all(b"at");
                }
                let _ = at::readlink(&dir, name);
            }
        }
        _ => {
            if let Ok(dir) = root.resolve_dir(&p) {
                let name = NAMES[usize::from(c.byte()) % NAMES.len()];
                let _ = at::remove_all(&dir, std::ffi::OsStr::new(name));
            }
        }
    }
}
