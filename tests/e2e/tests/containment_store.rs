//! The store and its files under attack or accident (issue 11, points 3, 8,
//! 10, 11, 12; issue 16, points 5 and 13), through the real binary: `save
//! -o` never writes through a link or over a device, `rmi -f` never takes
//! an image a running container uses, a `kill -9` in the middle of a load
//! or a build leaves nothing that the next command does not reclaim, an
//! archive cannot fill the store's disk, and bad names and archives are
//! refused before anything is recorded. Host marker files stand for what
//! must never be touched. Every test is named `cstore_*`.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_e2e::{Sandbox, busybox_ref, run_ok};

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

fn image_ids(sb: &Sandbox) -> Vec<String> {
    let mut ids: Vec<String> = sb
        .kiln_ok(["images", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Every file under `dir` (recursively), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Names in `dir` (not recursive), sorted; empty when it does not exist.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Mount points under `dir`, from this process's mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The snapshotter's records: (key, kind).
fn snapshots(sb: &Sandbox) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in ["overlay", "copy"] {
        let p = sb.root().join("snapshots").join(s).join("metadata.json");
        if let Ok(bytes) = std::fs::read(&p) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("metadata json");
            if let Some(m) = v["snapshots"].as_object() {
                for (k, r) in m {
                    out.push((k.clone(), r["kind"].as_str().unwrap_or("").to_owned()));
                }
            }
        }
    }
    out
}

fn active_snapshots(sb: &Sandbox) -> Vec<String> {
    snapshots(sb)
        .into_iter()
        .filter(|(_, k)| k != "committed")
        .map(|(n, _)| n)
        .collect()
}

/// A host file and directory the tests must leave exactly as they were.
struct Markers {
    file: PathBuf,
    dir: PathBuf,
}

impl Markers {
    fn new(base: &Path) -> Markers {
        let file = base.join("host-marker.txt");
        let dir = base.join("host-marker-dir");
        std::fs::write(&file, "HOST-MARKER-CONTENT\n").expect("marker");
        std::fs::create_dir_all(&dir).expect("marker dir");
        std::fs::write(dir.join("keep"), "keep\n").expect("marker dir file");
        Markers { file, dir }
    }

    fn check(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.file).expect("the marker file is still there"),
            "HOST-MARKER-CONTENT\n"
        );
        assert!(std::fs::symlink_metadata(&self.file).unwrap().is_file());
        assert_eq!(names_in(&self.dir), ["keep"]);
    }
}

/// `script` gives the command a terminal on stdin and stdout, as a user
/// typing it would have.
fn on_a_terminal(sb: &Sandbox, kiln_args: &str) -> Output {
    let cmd = format!("timeout 20 {} {kiln_args}", kiln_e2e::kiln_bin().display());
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("KILN_ROOT", sb.root())
        .env("HOME", sb.home())
        .stdin(Stdio::null());
    c.output().expect("cannot run script (package bsdutils)")
}

// ---------------------------------------------------------------- save -o

#[test]
fn cstore_save_output_never_writes_through_links_devices_or_directories() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let w = sb.work();
    let markers = Markers::new(&w);
    // A character device of our own (the numbers of /dev/full), never the
    // real one.
    let dev = w.join("full");
    run_ok(Command::new("mknod").arg(&dev).args(["c", "1", "7"]));
    let link = w.join("link.tar");
    std::os::unix::fs::symlink(&markers.file, &link).expect("symlink");
    let dir_link = w.join("dirlink.tar");
    std::os::unix::fs::symlink(&markers.dir, &dir_link).expect("symlink");
    let fifo = w.join("fifo.tar");
    run_ok(Command::new("mkfifo").arg(&fifo));
    // Files an older kiln would have clobbered as its temporary name.
    let partial = w.join("out.kiln-partial");
    std::fs::write(&partial, "unrelated\n").expect("write");
    let partial2 = w.join("out.tar.kiln-partial");
    std::fs::write(&partial2, "unrelated too\n").expect("write");

    let cases: [(&Path, &str); 5] = [
        (&dev, "cannot write to a character device file"),
        (&link, "cannot write to a symbolic link directly"),
        (&dir_link, "cannot write to a symbolic link directly"),
        (&markers.dir, "cannot write to a directory"),
        (&fifo, "cannot write to a named pipe (FIFO)"),
    ];
    for (path, want) in cases {
        let (code, _, stderr) = fails(sb.kiln([
            "save".as_ref(),
            "-o".as_ref(),
            path.as_os_str(),
            busybox_ref().as_ref(),
        ]));
        assert_eq!(code, 125, "{stderr}");
        assert!(
            stderr.contains(&format!("failed to save image: {want}")),
            "{}: {stderr}",
            path.display()
        );
    }
    let m = std::fs::symlink_metadata(&dev).expect("the device is still there");
    assert!(m.file_type().is_char_device(), "{m:?}");
    assert_eq!(m.rdev(), std::fs::metadata("/dev/full").unwrap().rdev());
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    markers.check();

    // A plain path works; nothing else appears next to it, and the
    // unrelated *.kiln-partial files are untouched.
    let before = names_in(&w);
    let out = w.join("out.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        busybox_ref().as_ref(),
    ]);
    let mut after = names_in(&w);
    after.retain(|n| !before.contains(n));
    assert_eq!(after, ["out.tar"]);
    assert_eq!(std::fs::read_to_string(&partial).unwrap(), "unrelated\n");
    assert_eq!(
        std::fs::read_to_string(&partial2).unwrap(),
        "unrelated too\n"
    );
    // Saved over an existing regular file: replaced whole.
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        busybox_ref().as_ref(),
    ]);
    let fresh = Sandbox::new();
    fresh.kiln_ok(["load".as_ref(), "-i".as_ref(), out.as_os_str()]);
    assert_eq!(image_ids(&fresh), image_ids(&sb));

    // A failing save leaves nothing behind.
    let never = w.join("never.tar");
    fails(sb.kiln([
        "save".as_ref(),
        "-o".as_ref(),
        never.as_os_str(),
        "nosuch:1".as_ref(),
    ]));
    assert_eq!(names_in(&w), {
        let mut v = before.clone();
        v.push("out.tar".to_owned());
        v.sort();
        v
    });
    // A directory that does not exist.
    let (_, _, stderr) = fails(sb.kiln([
        "save".as_ref(),
        "-o".as_ref(),
        w.join("nodir/x.tar").as_os_str(),
        busybox_ref().as_ref(),
    ]));
    assert!(stderr.contains("invalid output path"), "{stderr}");

    // `-o -` is stdout; a terminal on stdout is refused with Docker's text.
    let streamed = sb
        .kiln(["save", "-o", "-", &busybox_ref()])
        .output()
        .expect("save");
    assert!(streamed.status.success());
    assert_eq!(streamed.stdout, std::fs::read(&out).unwrap());
    assert!(!w.join("-").exists());
    let tty = on_a_terminal(&sb, &format!("save {}", busybox_ref()));
    let shown = text(&tty.stdout);
    assert!(
        shown.contains("cowardly refusing to save to a terminal. Use the -o flag or redirect"),
        "{shown}"
    );
    markers.check();
}

// ---------------------------------------------------------------- load

#[test]
fn cstore_load_without_input_on_a_terminal_refuses_at_once() {
    let sb = Sandbox::new();
    let started = Instant::now();
    let out = on_a_terminal(&sb, "load");
    let shown = text(&out.stdout);
    assert!(
        shown.contains("requested load from stdin, but stdin is empty"),
        "{shown}"
    );
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(15), "it waited");
}

/// `kiln save`'s archive with its manifest.json's RepoTags replaced.
fn archive_with_repo_tags(sb: &Sandbox, tags: &[&str]) -> PathBuf {
    let saved = sb.work().join("orig.tar");
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        saved.as_os_str(),
        busybox_ref().as_ref(),
    ]);
    let tree = sb.work().join("unpacked");
    std::fs::create_dir_all(&tree).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-xf")
            .arg(&saved),
    );
    let mpath = tree.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m[0]["RepoTags"] = serde_json::json!(tags);
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = sb.work().join("edited.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&out)
            .arg("."),
    );
    out
}

#[test]
fn cstore_load_refuses_digest_references_in_repo_tags() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let zeros = "0".repeat(64);
    let bad = format!("evil/app@sha256:{zeros}");
    let archive = archive_with_repo_tags(&sb, &["good/app:1", &bad]);
    let fresh = Sandbox::new();
    let (code, _, stderr) =
        fails(fresh.kiln(["load".as_ref(), "-i".as_ref(), archive.as_os_str()]));
    assert_eq!(code, 125);
    assert!(
        stderr.contains(&format!("invalid tag \"{bad}\"")),
        "{stderr}"
    );
    assert!(image_ids(&fresh).is_empty(), "nothing recorded");
    assert!(
        fresh.kiln_ok(["images"]).lines().count() <= 1,
        "no evil/app:latest"
    );
    // The same archive with proper tags loads.
    let ok = archive_with_repo_tags(&sb, &["good/app:1"]);
    fresh.kiln_ok(["load".as_ref(), "-i".as_ref(), ok.as_os_str()]);
    assert_eq!(image_ids(&fresh), image_ids(&sb));
}

// ---------------------------------------------------------------- tag

#[test]
fn cstore_tag_refuses_what_docker_refuses() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let cases = [
        (
            "Upper:tag".to_owned(),
            "Error parsing reference: \"Upper:tag\" is not a valid repository/tag: invalid reference format: repository name (library/Upper) must be lowercase".to_owned(),
        ),
        (
            "user/Upper:1".to_owned(),
            "invalid reference format: repository name (user/Upper) must be lowercase".to_owned(),
        ),
        (
            format!("sha256:{}", "0".repeat(64)),
            "refusing to create an ambiguous tag using digest algorithm as name".to_owned(),
        ),
        (
            "a".repeat(64),
            format!(
                "invalid repository name ({}), cannot specify 64-byte hexadecimal strings",
                "a".repeat(64)
            ),
        ),
        (
            format!("x/y@sha256:{}", "0".repeat(64)),
            "refusing to create a tag with a digest reference".to_owned(),
        ),
    ];
    for (target, want) in &cases {
        let (code, _, stderr) = fails(sb.kiln(["tag", &busybox_ref(), target]));
        assert_eq!(code, 125, "{stderr}");
        assert!(stderr.contains(want.as_str()), "{target}: {stderr}");
    }
    let listed = sb.kiln_ok(["images"]);
    assert_eq!(listed.lines().count(), 2, "only busybox: {listed}");
    assert!(!listed.contains("sha256 "), "{listed}");
    // An upper-case first component is a registry host for Docker
    // (distribution/reference), so Docker accepts this one; so does kiln.
    sb.kiln_ok(["tag", &busybox_ref(), "Upper/case:tag"]);
    assert!(sb.kiln_ok(["images"]).contains("Upper/case"));
}

// ---------------------------------------------------------------- import

/// A tar with one good file and one member written raw (name and link
/// target as given, which GNU tar and the tar crate would refuse to write).
/// A ustar header, written by hand (names and links as given).
fn header(name: &[u8], kind: u8, size: u64, link: Option<&[u8]>) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    if let Some(l) = link {
        h[157..157 + l.len()].copy_from_slice(l);
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn raw_tar(path: &Path, name: &[u8], link: Option<&[u8]>) {
    let mut out = Vec::new();
    out.extend_from_slice(&header(b"ok.txt", b'0', 3, None));
    let mut data = [0u8; 512];
    data[..3].copy_from_slice(b"hi\n");
    out.extend_from_slice(&data);
    match link {
        Some(l) => out.extend_from_slice(&header(name, b'1', 0, Some(l))),
        None => {
            out.extend_from_slice(&header(name, b'0', 3, None));
            out.extend_from_slice(&data);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, out).expect("write tar");
}

#[test]
fn cstore_import_refuses_members_outside_the_root_and_records_nothing() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    let cases: [(&[u8], Option<&[u8]>); 3] = [
        (b"../host-marker.txt", None),
        (b"a/../../../host-marker-dir/keep", None),
        (b"hard", Some(b"../../host-marker.txt")),
    ];
    for (name, link) in cases {
        let tar = sb.work().join("evil.tar");
        raw_tar(&tar, name, link);
        let (code, _, stderr) =
            fails(sb.kiln(["import".as_ref(), tar.as_os_str(), "evil/import:1".as_ref()]));
        assert_eq!(code, 125);
        assert!(
            stderr.contains("outside the image's root"),
            "{}: {stderr}",
            String::from_utf8_lossy(name)
        );
        assert!(image_ids(&sb).is_empty());
        assert!(files_under(&sb.root().join("blobs")).is_empty());
        assert!(active_snapshots(&sb).is_empty());
        markers.check();
    }
    // The control: the same tar without the bad member imports.
    let tar = sb.work().join("good.tar");
    raw_tar(&tar, b"also-ok.txt", None);
    sb.kiln_ok(["import".as_ref(), tar.as_os_str(), "good/import:1".as_ref()]);
    assert_eq!(image_ids(&sb).len(), 1);
}

// ---------------------------------------------------------------- rmi -f

#[test]
fn cstore_rmi_force_never_deletes_an_image_a_running_container_uses() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let id = image_ids(&sb).remove(0);
    let hex = id.trim_start_matches("sha256:").to_owned();
    let c = sb.kiln_ok(["run", "-d", &busybox_ref(), "sleep", "300"]);
    let c = c.trim().to_owned();

    // By ID, forced: Docker's hard conflict, exit 1, nothing changes.
    let (code, _, stderr) = fails(sb.kiln(["rmi", "-f", &id]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
            &hex[..12],
            &c[..12]
        )),
        "{stderr}"
    );
    assert_eq!(image_ids(&sb), std::slice::from_ref(&id));

    // By name, forced: the name goes, the image stays (dangling) while the
    // container runs, as in Docker.
    let out = sb.kiln_ok(["rmi", "-f", &busybox_ref()]);
    assert!(
        out.contains(&format!("Untagged: {}", busybox_ref())),
        "{out}"
    );
    assert!(!out.contains("Deleted"), "{out}");
    assert_eq!(image_ids(&sb), std::slice::from_ref(&id));
    // The container still works: its commit finds its image.
    sb.kiln_ok(["exec", &c, "touch", "/made-by-exec"]);
    let committed = sb.kiln_ok(["commit", &c, "after/rmi:1"]);
    assert!(committed.trim().starts_with("sha256:"), "{committed}");
    sb.kiln_ok(["rmi", "after/rmi:1"]);

    // Stopped: rmi -f by ID deletes it (a soft conflict).
    sb.kiln_ok(["stop", "-t", "1", &c]);
    let out = sb.kiln_ok(["rmi", "-f", &id]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(image_ids(&sb).is_empty());
    sb.kiln_ok(["rm", &c]);
}

// ---------------------------------------------------------------- recovery

/// Waits (up to 60 s) until `ready` holds, checking every 2 ms; panics with
/// `what` when the child ends first or time runs out.
fn wait_for(child: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("kiln ended ({status}) before {what}: {err}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// After a `kill -9`: any kiln command reclaims what the killed one left,
/// and the store can then be deleted (no mount, nothing busy).
fn assert_recovered(sb: &Sandbox) {
    sb.kiln_ok(["images"]);
    assert!(
        mounts_under(&sb.root()).is_empty(),
        "{:?}",
        mounts_under(&sb.root())
    );
    assert!(active_snapshots(sb).is_empty(), "{:?}", snapshots(sb));
    assert!(names_in(&sb.root().join("build/steps")).is_empty());
    assert!(names_in(&sb.root().join("build/mnt")).is_empty());
    assert!(names_in(&sb.root().join("owners")).is_empty());
    let copy = sb.path().join("store-copy-check");
    std::fs::rename(sb.root(), &copy).expect("the store can be moved");
    std::fs::remove_dir_all(&copy).expect("rm -rf of the store works");
    std::fs::create_dir(sb.root()).unwrap();
}

fn spawn(sb: &Sandbox, args: &[&str]) -> std::process::Child {
    sb.kiln(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln")
}

#[test]
fn cstore_kill_during_run_step_is_reclaimed_by_the_next_command() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let ctx = sb.work().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nRUN dd if=/dev/zero of=/big bs=1M count=20 && sleep 120\n",
            busybox_ref()
        ),
    )
    .unwrap();
    let mut child = spawn(&sb, &["build", "-t", "killed/run:1", ctx.to_str().unwrap()]);
    let steps = sb.root().join("build/steps");
    wait_for(&mut child, "the RUN step started", || {
        !names_in(&steps).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !active_snapshots(&sb).is_empty(),
        "the step's snapshot is left"
    );
    assert_recovered(&sb);
}

#[test]
fn cstore_kill_during_copy_is_reclaimed_by_the_next_command() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let ctx = sb.work().join("ctx");
    std::fs::create_dir_all(ctx.join("tree")).unwrap();
    // Many files, so that the COPY (and its host mount) lasts.
    for d in 0..40 {
        let dir = ctx.join("tree").join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..250 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}\n")).unwrap();
        }
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY tree /tree\n", busybox_ref()),
    )
    .unwrap();
    let mut child = spawn(
        &sb,
        &["build", "-t", "killed/copy:1", ctx.to_str().unwrap()],
    );
    let root = sb.root();
    let mnt = root.join("build/mnt");
    wait_for(&mut child, "the COPY mount", || {
        !mounts_under(&mnt).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !mounts_under(&mnt).is_empty(),
        "the killed build's mount is left"
    );
    assert_recovered(&sb);
}

#[test]
fn cstore_kill_during_load_unpack_is_reclaimed_by_the_next_command() {
    // An image with one big layer, saved by one store, loaded by another.
    let maker = Sandbox::new();
    let tree = maker.work().join("rootfs");
    std::fs::create_dir_all(&tree).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..6 {
        let mut f = std::fs::File::create(tree.join(format!("big{i}"))).unwrap();
        for n in 0..64u32 {
            chunk
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (j as u32 ^ n ^ i) as u8);
            std::io::Write::write_all(&mut f, &chunk).unwrap();
        }
    }
    let tar = maker.work().join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    maker.kiln_ok(["import".as_ref(), tar.as_os_str(), "big/one:1".as_ref()]);
    let archive = maker.work().join("big.tar");
    maker.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
        "big/one:1".as_ref(),
    ]);

    let sb = Sandbox::new();
    let mut child = spawn(&sb, &["load", "-i", archive.to_str().unwrap()]);
    wait_for(&mut child, "an unpack snapshot", || {
        active_snapshots(&sb)
            .iter()
            .any(|k| k.starts_with("unpack-"))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        active_snapshots(&sb)
            .iter()
            .any(|k| k.starts_with("unpack-"))
    );
    // `system df` does not count it once any command ran: it is gone.
    sb.kiln_ok(["system", "df"]);
    assert_recovered(&sb);
}

// ---------------------------------------------------------------- free space

/// A tmpfs of `size` mounted on `dir` for the test (lazily unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Bytes available on it now.
    fn available(&self) -> u64 {
        let out = run_ok(
            Command::new("df")
                .args(["-B1", "--output=avail"])
                .arg(&self.0),
        );
        text(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Already gone when kiln reclaimed it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// Writes a gzip-compressed tar of `members` (name, size, zero-filled when
/// `None` else this content) to `path`, streaming through `gzip -1`: a
/// gigabyte of zeros weighs a few MB.
fn gzip_tar(path: &Path, members: &[(&str, u64, Option<&[u8]>)]) {
    use std::io::Write as _;
    let mut gz = Command::new("gzip")
        .arg("-1")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(path).expect("create"))
        .spawn()
        .expect("gzip");
    {
        let mut w = std::io::BufWriter::new(gz.stdin.take().unwrap());
        let zeros = vec![0u8; 1 << 20];
        for (name, size, content) in members {
            w.write_all(&header(name.as_bytes(), b'0', *size, None))
                .unwrap();
            match content {
                Some(c) => w.write_all(c).unwrap(),
                None => {
                    let mut left = *size;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        w.write_all(&zeros[..n]).unwrap();
                        left -= n as u64;
                    }
                }
            }
            let pad = (512 - (*size % 512) as usize) % 512;
            w.write_all(&vec![0u8; pad]).unwrap();
        }
        w.write_all(&[0u8; 1024]).unwrap();
    }
    assert!(gz.wait().unwrap().success());
}

/// What a failed load or import must not leave: no image, no blob, nothing
/// in tmp/, no snapshot, and the space given back.
fn assert_nothing_kept(sb: &Sandbox, fs: &Tmpfs) {
    assert!(image_ids(sb).is_empty());
    assert!(files_under(&sb.root().join("blobs")).is_empty());
    let tmp: Vec<String> = names_in(&sb.root().join("tmp"))
        .into_iter()
        .filter(|n| n != ".active")
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert!(snapshots(sb).is_empty(), "{:?}", snapshots(sb));
    assert!(fs.available() > 280 << 20, "{} bytes free", fs.available());
}

#[test]
fn cstore_gzip_bombs_stop_at_the_free_space_reserve() {
    let sb = Sandbox::new();
    let fs = Tmpfs::mount(&sb.root(), "300M");
    let gib = 512u64 << 20; // well over the 300 MB filesystem

    // import: a tar of 512 MiB of zeros, well under 1 MB compressed.
    let bomb = sb.work().join("bomb.tar.gz");
    gzip_tar(&bomb, &[("zeros", gib, None)]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 8 << 20);
    for reserve in ["100M", "default"] {
        let mut cmd = sb.kiln([
            "import".as_ref(),
            bomb.as_os_str(),
            "bomb/import:1".as_ref(),
        ]);
        cmd.env("KILN_MIN_FREE", reserve);
        let (code, _, stderr) = fails(cmd);
        assert_eq!(code, 125);
        assert!(
            stderr.contains("not enough free space") && stderr.contains("free-space reserve"),
            "{reserve}: {stderr}"
        );
        assert_nothing_kept(&sb, &fs);
    }

    // load: a docker-archive whose layer.tar is those 512 MiB, the whole
    // archive gzipped (the flag this time).
    let archive = sb.work().join("bomb-archive.tar.gz");
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let manifest =
        br#"[{"Config":"config.json","RepoTags":["bomb/load:1"],"Layers":["l/layer.tar"]}]"#;
    gzip_tar(
        &archive,
        &[
            ("l/layer.tar", gib, None),
            ("config.json", config.len() as u64, Some(config)),
            ("manifest.json", manifest.len() as u64, Some(manifest)),
        ],
    );
    let (code, _, stderr) = fails(sb.kiln([
        "--min-free-space".as_ref(),
        "100M".as_ref(),
        "load".as_ref(),
        "-i".as_ref(),
        archive.as_os_str(),
    ]));
    assert_eq!(code, 125);
    assert!(stderr.contains("not enough free space"), "{stderr}");
    assert_nothing_kept(&sb, &fs);

    // Under the reserve, a real image still loads and imports.
    let small = sb.work().join("small.tar.gz");
    gzip_tar(&small, &[("hello", 6, Some(b"hello\n"))]);
    let mut cmd = sb.kiln([
        "import".as_ref(),
        small.as_os_str(),
        "small/import:1".as_ref(),
    ]);
    cmd.env("KILN_MIN_FREE", "100M");
    run_ok(&mut cmd);
    assert_eq!(image_ids(&sb).len(), 1);
    // An invalid reserve is refused up front.
    let (_, _, stderr) = fails(sb.kiln(["--min-free-space", "lots", "images"]));
    assert!(stderr.contains("invalid free-space reserve"), "{stderr}");
    drop(fs);
}

// ---------------------------------------------------------------- rmi and prune chains

/// `kiln commit` of a container created from `image`: a child image whose
/// parent is `image`, tagged `tag` when given.
fn child_of(sb: &Sandbox, image: &str, tag: Option<&str>) -> String {
    let c = sb.kiln_ok(["create", image, "true"]);
    let c = c.trim();
    let mut args = vec!["commit", c];
    args.extend(tag);
    let id = sb.kiln_ok(args).trim().to_owned();
    sb.kiln_ok(["rm", c]);
    id
}

#[test]
fn cstore_rmi_and_prunes_take_untagged_parent_chains_in_one_pass() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let base = image_ids(&sb);

    // rmi of a tagged child deletes its untagged parents, up to the first
    // named one (Docker's rmi without --no-prune).
    let mid = child_of(&sb, &busybox_ref(), None);
    let top = child_of(&sb, &mid, Some("chain/top:1"));
    assert_eq!(image_ids(&sb).len(), 3);
    let out = sb.kiln_ok(["rmi", "chain/top:1"]);
    assert!(out.contains(&format!("Deleted: {top}")), "{out}");
    assert!(out.contains(&format!("Deleted: {mid}")), "{out}");
    assert_eq!(image_ids(&sb), base, "busybox stays: it is named");

    // A tag moved away leaves a dangling chain: image prune takes it whole.
    let mid = child_of(&sb, &busybox_ref(), None);
    let old = child_of(&sb, &mid, Some("chain/moved:1"));
    let new = child_of(&sb, &busybox_ref(), Some("chain/moved:1"));
    let out = sb.kiln_ok(["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(out.contains(&format!("deleted: {mid}")), "{out}");
    let mut want = base.clone();
    want.push(new.clone());
    want.sort();
    assert_eq!(image_ids(&sb), want);

    // Without -f, Docker's question; no answer keeps everything.
    let mut cmd = sb.kiln(["image", "prune", "-a"]);
    cmd.stdin(Stdio::null());
    let out = run_ok(&mut cmd);
    assert_eq!(
        text(&out.stdout),
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] "
    );
    assert_eq!(image_ids(&sb), want);

    // system prune -a removes everything unused in one pass, intermediate
    // images included; asked first, `y` goes on.
    let mid = child_of(&sb, &new, None);
    child_of(&sb, &mid, Some("chain/again:1"));
    let mut cmd = sb.kiln(["system", "prune", "-a"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("WARNING! This will remove:\n  - all stopped containers\n  - all images without at least one container associated to them\n  - all build cache\n\nAre you sure you want to continue? [y/N] "),
        "{shown}"
    );
    assert!(image_ids(&sb).is_empty(), "{:?}", image_ids(&sb));
    assert!(files_under(&sb.root().join("blobs")).is_empty());

    // builder prune's -a is about the build cache.
    let help = sb.kiln_ok(["builder", "prune", "--help"]);
    assert!(
        help.contains("Remove all unused build cache, not just dangling ones"),
        "{help}"
    );
    assert!(!help.contains("unused images"), "{help}");
}

#[test]
fn cstore_system_prune_reclaims_unmarked_leftovers_other_commands_leave_alone() {
    let sb = Sandbox::new();
    sb.kiln_ok(["images"]);
    // What a kiln without owner marks (or a machine crash) could leave: a
    // step scratch dir holding a secret's copy and a mount under build/mnt.
    let steps = sb.root().join("build/steps/0123456789ab");
    std::fs::create_dir_all(&steps).unwrap();
    std::fs::write(steps.join("secret0"), "s3cret\n").unwrap();
    let mnt = sb.root().join("build/mnt/0123456789ab");
    std::fs::create_dir_all(&mnt).unwrap();
    let _fs = Tmpfs::mount(&mnt, "1M");
    std::fs::write(mnt.join("in-the-mount"), "x").unwrap();
    // No mark says whose they are: an ordinary command leaves them.
    sb.kiln_ok(["images"]);
    assert!(steps.join("secret0").exists());
    assert_eq!(mounts_under(&mnt).len(), 1);
    // system prune reclaims them.
    sb.kiln_ok(["system", "prune", "-f"]);
    assert!(!steps.exists());
    assert!(
        mounts_under(&sb.root()).is_empty(),
        "{:?}",
        mounts_under(&sb.root())
    );
    assert!(!mnt.exists());
    assert_recovered(&sb);
}
