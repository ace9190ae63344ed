//! `kiln cp`, `kiln diff` and `kiln export` end to end (issue 16), with
//! Docker's behaviour taken from moby's CLI tests
//! (`integration-cli/docker_cli_cp_from_container_test.go`,
//! `docker_cli_cp_to_container_test.go`, `docker_cli_cp_test.go`: cases A
//! to J, garbage and symlink paths, `-L`, `-a`, archives on stdin and
//! stdout) and containment (issue 11): a container whose tree links to a
//! host marker file must give the container's file on `cp` out, and `cp`
//! in through such a link must never write the host's.
//!
//! Test names start with `cfs_`: `cargo xtask e2e -- cfs_` runs them. Each
//! test has its own store with `cfs:latest` imported from a busybox root
//! filesystem made here.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use kiln_e2e::{Sandbox, probe_rootfs_tar, scratch_dir, sh};

const IMAGE: &str = "cfs:latest";

fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        probe_rootfs_tar(
            "cfs",
            &["root"],
            "root:x:0:0:root:/root:/bin/sh\n",
            "root:x:0:\n",
            |_| {},
        )
    })
}

/// A store with `cfs:latest`, and a host directory with a marker file
/// (`secret`, "HOST") that containers link to by its absolute path.
struct Fs {
    sb: Sandbox,
    marker: PathBuf,
}

impl Fs {
    fn new() -> Self {
        let sb = Sandbox::new();
        sb.kiln_ok([
            "import".as_ref(),
            "-c".as_ref(),
            "ENV PATH=/bin".as_ref(),
            rootfs_tar().as_os_str(),
            IMAGE.as_ref(),
        ]);
        let marker = sb.path().join("host-marker");
        fs::create_dir_all(&marker).unwrap();
        fs::write(marker.join("secret"), "HOST\n").unwrap();
        Fs { sb, marker }
    }

    fn kiln(&self, args: &[&str]) -> Output {
        sh(self.sb.kiln(args).stdin(Stdio::null()))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(out.status.success(), "kiln {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A stopped container named `name` that ran `script` (its tree is
    /// what the script left).
    fn made(&self, name: &str, script: &str) {
        self.ok(&["run", "--name", name, IMAGE, "sh", "-c", script]);
    }

    /// A running container named `name` that ran `script` then sleeps.
    fn running(&self, name: &str, script: &str) {
        let script = format!("{script} && touch /ready && exec sleep 600");
        self.ok(&["run", "-d", "--name", name, IMAGE, "sh", "-c", &script]);
        for _ in 0..100 {
            if self
                .kiln(&["exec", name, "test", "-e", "/ready"])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("container {name} never got ready");
    }

    /// A file of the container, read back with `cp CONTAINER:PATH -`.
    fn read(&self, name: &str, path: &str) -> String {
        let out = self.kiln(&["cp", &format!("{name}:{path}"), "-"]);
        assert!(out.status.success(), "cp {name}:{path}: {}", show(&out));
        String::from_utf8_lossy(&tar_cmd(&["-xOf", "-"], &out.stdout)).into_owned()
    }

    /// `tar -tv` lines of the archive `cp CONTAINER:PATH -` writes.
    fn listing(&self, name: &str, path: &str) -> Vec<String> {
        let out = self.kiln(&["cp", &format!("{name}:{path}"), "-"]);
        assert!(out.status.success(), "cp {name}:{path}: {}", show(&out));
        list_tar(&out.stdout, true)
    }

    fn host_marker_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.marker.join("secret")).unwrap(),
            "HOST\n"
        );
        let names: Vec<_> = fs::read_dir(&self.marker).unwrap().collect();
        assert_eq!(names.len(), 1, "the host marker directory gained files");
    }

    /// The container's copy of the marker directory, and links to the
    /// host marker (file and directory) at `/leak` and `/leakdir`.
    fn links_script(&self) -> String {
        let m = self.marker.display();
        format!(
            "mkdir -p {m} && echo container > {m}/secret && ln -s {m}/secret /leak && ln -s {m} /leakdir && ln -s ../../../../../../../.. /up"
        )
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let out = sh(&mut self.sb.kiln(["ps", "-a", "-q"]));
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = sh(&mut self.sb.kiln(["rm", "-f", id]));
        }
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the system `tar` with `args`, `input` on its stdin; its stdout.
fn tar_cmd(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("tar")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tar");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", show(&out));
    out.stdout
}

/// The entries of a tar: names (`verbose`: `tar -tv --numeric-owner`
/// lines).
fn list_tar(tar: &[u8], verbose: bool) -> Vec<String> {
    let args: &[&str] = if verbose {
        &["--numeric-owner", "-tvf", "-"]
    } else {
        &["-tf", "-"]
    };
    String::from_utf8_lossy(&tar_cmd(args, tar))
        .lines()
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

/// A tar of `names` under `dir` (`tar -C DIR -cf - NAMES`).
fn make_tar(dir: &Path, names: &[&str]) -> Vec<u8> {
    let mut args = vec!["-C", p(dir), "--numeric-owner", "-cf", "-"];
    args.extend_from_slice(names);
    tar_cmd(&args, b"")
}

/// `kiln cp - DEST` with `tar` on stdin.
fn cp_stdin(f: &Fs, dest: &str, tar: &[u8]) -> Output {
    let mut child =
        f.sb.kiln(["cp", "-", dest])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    child.wait_with_output().unwrap()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn host_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(scratch_dir())
        .unwrap()
        .keep()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Containment, out: every way of naming the link gives the container's
/// file, never the host marker; stopped and running containers alike.
#[test]
fn cfs_cp_out_through_links_to_a_host_marker_gives_the_containers_files() {
    let f = Fs::new();
    let script = f.links_script();
    f.made("stopped", &script);
    f.running("live", &script);
    let secret = f.marker.join("secret");
    for c in ["stopped", "live"] {
        let out = host_dir("cfs-out-");
        // The link itself (no -L): copied as a link.
        f.ok(&["cp", &format!("{c}:/leak"), p(&out)]);
        assert_eq!(fs::read_link(out.join("leak")).unwrap(), secret);
        // -L: the link's target inside the container, under the link's name.
        f.ok(&["cp", "-L", &format!("{c}:/leak"), p(&out.join("followed"))]);
        assert_eq!(
            fs::read_to_string(out.join("followed")).unwrap(),
            "container\n"
        );
        // Through a directory link, a trailing slash, a `..` chain and the
        // garbage path of moby's TestCpGarbagePath.
        f.ok(&[
            "cp",
            &format!("{c}:/leakdir/secret"),
            p(&out.join("via-dir")),
        ]);
        assert_eq!(
            fs::read_to_string(out.join("via-dir")).unwrap(),
            "container\n"
        );
        f.ok(&["cp", &format!("{c}:/leakdir/"), p(&out.join("dir"))]);
        assert_eq!(
            fs::read_to_string(out.join("dir/secret")).unwrap(),
            "container\n"
        );
        let up = format!("{c}:/up{}", secret.display());
        f.ok(&["cp", &up, p(&out.join("via-up"))]);
        assert_eq!(
            fs::read_to_string(out.join("via-up")).unwrap(),
            "container\n"
        );
        let garbage = format!("{c}:../../../../../../..{}", secret.display());
        f.ok(&["cp", &garbage, p(&out.join("garbage"))]);
        assert_eq!(
            fs::read_to_string(out.join("garbage")).unwrap(),
            "container\n"
        );
        fs::remove_dir_all(&out).unwrap();
    }
    f.host_marker_untouched();
}

/// Containment, in: copies into a directory link, onto a file link and
/// through a `..` chain land in the container, never in the host marker.
#[test]
fn cfs_cp_in_through_links_never_writes_the_host_marker() {
    let f = Fs::new();
    let script = f.links_script();
    f.made("stopped", &script);
    f.running("live", &script);
    let src = host_dir("cfs-src-");
    fs::write(src.join("planted"), "planted\n").unwrap();
    fs::write(src.join("secret"), "overwritten\n").unwrap();
    let m = f.marker.display().to_string();
    for c in ["stopped", "live"] {
        f.ok(&["cp", p(&src.join("planted")), &format!("{c}:/leakdir/")]);
        f.ok(&[
            "cp",
            p(&src.join("planted")),
            &format!("{c}:/up{m}/planted2"),
        ]);
        // Onto the link to a file: the file it leads to in the container.
        f.ok(&["cp", p(&src.join("secret")), &format!("{c}:/leak")]);
        f.host_marker_untouched();
        assert_eq!(f.read(c, &format!("{m}/planted")), "planted\n");
        assert_eq!(f.read(c, &format!("{m}/planted2")), "planted\n");
        assert_eq!(f.read(c, &format!("{m}/secret")), "overwritten\n");
        // The link is still a link.
        let l = f.listing(c, "/leak");
        assert!(l[0].starts_with('l'), "{l:?}");
    }
    // An archive on stdin with a link out, then an entry through it.
    let a = host_dir("cfs-evil-a-");
    symlink(&f.marker, a.join("esc")).unwrap();
    let b = host_dir("cfs-evil-b-");
    fs::create_dir(b.join("esc")).unwrap();
    fs::write(b.join("esc/x"), "evil\n").unwrap();
    let both = host_dir("cfs-evil-");
    let archive = both.join("evil.tar");
    std::process::Command::new("tar")
        .args(["-C", p(&a), "-cf", p(&archive), "esc"])
        .status()
        .unwrap();
    std::process::Command::new("tar")
        .args(["-C", p(&b), "-rf", p(&archive), "esc/x"])
        .status()
        .unwrap();
    let _ = cp_stdin(&f, "stopped:/root", &fs::read(&archive).unwrap());
    let _ = cp_stdin(&f, "live:/root", &fs::read(&archive).unwrap());
    for d in [&a, &b, &both] {
        fs::remove_dir_all(d).unwrap();
    }
    f.host_marker_untouched();
    fs::remove_dir_all(&src).unwrap();
}

/// moby's TestCpFromCase A to J, and its errors.
#[test]
fn cfs_cp_from_container_cases_a_to_j() {
    let f = Fs::new();
    f.made(
        "c",
        "mkdir -p /root/dir1 /dir1 && echo file1 > /root/file1 && echo file1 > /file1 && echo file1-1 > /root/dir1/file1-1 && echo file1-1 > /dir1/file1-1",
    );
    let t = host_dir("cfs-from-");
    let read = |rel: &str| fs::read_to_string(t.join(rel)).unwrap();
    // A: file to a new name.
    f.ok(&["cp", "c:/root/file1", p(&t.join("itWorks.txt"))]);
    assert_eq!(read("itWorks.txt"), "file1\n");
    // B: file to a missing directory.
    let out = f.kiln(&[
        "cp",
        "c:/file1",
        &format!("{}/", t.join("testDir").display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(err(&out).contains("no such directory"), "{}", show(&out));
    // C: file over a file.
    fs::write(t.join("file2"), "file2\n").unwrap();
    f.ok(&["cp", "c:/root/file1", p(&t.join("file2"))]);
    assert_eq!(read("file2"), "file1\n");
    // D: file into a directory.
    fs::create_dir(t.join("dir1")).unwrap();
    f.ok(&["cp", "c:/file1", p(&t.join("dir1"))]);
    assert_eq!(read("dir1/file1"), "file1\n");
    // E: directory to a new name (and with a trailing slash).
    f.ok(&["cp", "c:dir1", p(&t.join("testDir"))]);
    assert_eq!(read("testDir/file1-1"), "file1-1\n");
    f.ok(&[
        "cp",
        "c:dir1",
        &format!("{}/", t.join("testDir2").display()),
    ]);
    assert_eq!(read("testDir2/file1-1"), "file1-1\n");
    // F: directory over a file.
    let out = f.kiln(&["cp", "c:/root/dir1", p(&t.join("file2"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("cannot copy directory"),
        "{}",
        show(&out)
    );
    // G: directory into a directory.
    fs::create_dir(t.join("dir2")).unwrap();
    f.ok(&["cp", "c:/root/dir1", p(&t.join("dir2"))]);
    assert_eq!(read("dir2/dir1/file1-1"), "file1-1\n");
    // H: a directory's contents to a new name.
    f.ok(&["cp", "c:dir1/.", p(&t.join("testDir3"))]);
    assert_eq!(read("testDir3/file1-1"), "file1-1\n");
    // I: a directory's contents over a file.
    let out = f.kiln(&["cp", "c:/root/dir1/.", p(&t.join("file2"))]);
    assert!(
        err(&out).contains("cannot copy directory"),
        "{}",
        show(&out)
    );
    // J: a directory's contents into a directory.
    fs::create_dir(t.join("dir3")).unwrap();
    f.ok(&["cp", "c:/root/dir1/.", p(&t.join("dir3"))]);
    assert_eq!(read("dir3/file1-1"), "file1-1\n");
    // Missing source, missing container, no container at all.
    let out = f.kiln(&["cp", "c:/nope", p(&t)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("Could not find the file /nope in container c"),
        "{}",
        show(&out)
    );
    let out = f.kiln(&["cp", "nosuch:/x", p(&t)]);
    assert!(
        err(&out).contains("No such container: nosuch"),
        "{}",
        show(&out)
    );
    let out = f.kiln(&["cp", "foo", "bar"]);
    assert!(err(&out).contains("must specify at least one container source"));
    // Symlink destination on the host (TestCpFromSymlinkDestination).
    symlink("file2", t.join("linkToFile2")).unwrap();
    f.ok(&["cp", "c:/file1", p(&t.join("linkToFile2"))]);
    assert_eq!(
        fs::read_link(t.join("linkToFile2")).unwrap(),
        Path::new("file2")
    );
    assert_eq!(read("file2"), "file1\n");
    // To stdout: a tar with the file under its name (TestCpToStdout).
    let out = f.kiln(&["cp", "c:/root/file1", "-"]);
    assert_eq!(list_tar(&out.stdout, false), ["file1"]);
    let l = f.listing("c", "/root/file1");
    assert!(l[0].starts_with("-rw"), "{l:?}");
    fs::remove_dir_all(&t).unwrap();
}

/// moby's TestCpToCase A, D, E, F, G, J; `-` from stdin;
/// TestCpToContainerWithPermissions (`-a`) and the default root owner.
#[test]
fn cfs_cp_to_container_cases_and_owners() {
    let f = Fs::new();
    f.made("c", "mkdir -p /root/dir2 && echo old > /root/file2");
    let t = host_dir("cfs-to-");
    fs::write(t.join("file1"), "file1\n").unwrap();
    fs::create_dir_all(t.join("dir1")).unwrap();
    fs::write(t.join("dir1/file1-1"), "file1-1\n").unwrap();
    fs::create_dir(t.join("permdirtest")).unwrap();
    fs::write(t.join("permdirtest/permtest"), "perm\n").unwrap();
    let chown = |uid: u32, path: &Path| std::os::unix::fs::lchown(path, Some(uid), Some(uid));
    chown(2, &t.join("permdirtest")).unwrap();
    chown(65534, &t.join("permdirtest/permtest")).unwrap();
    chown(1234, &t.join("file1")).unwrap();
    // A: to a new name; C: over a file; D: into a directory.
    f.ok(&["cp", p(&t.join("file1")), "c:/root/itWorks.txt"]);
    assert_eq!(f.read("c", "/root/itWorks.txt"), "file1\n");
    f.ok(&["cp", p(&t.join("file1")), "c:/root/file2"]);
    assert_eq!(f.read("c", "/root/file2"), "file1\n");
    f.ok(&["cp", p(&t.join("file1")), "c:/root/dir2"]);
    assert_eq!(f.read("c", "/root/dir2/file1"), "file1\n");
    // E: a directory to a new name; G: into a directory; J: its contents.
    f.ok(&["cp", p(&t.join("dir1")), "c:/testDir"]);
    assert_eq!(f.read("c", "/testDir/file1-1"), "file1-1\n");
    f.ok(&["cp", p(&t.join("dir1")), "c:/root/dir2"]);
    assert_eq!(f.read("c", "/root/dir2/dir1/file1-1"), "file1-1\n");
    f.ok(&["cp", &format!("{}/.", t.join("dir1").display()), "c:/root"]);
    assert_eq!(f.read("c", "/root/file1-1"), "file1-1\n");
    // F: a directory over a file.
    let out = f.kiln(&["cp", p(&t.join("dir1")), "c:/root/file2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("cannot copy directory"),
        "{}",
        show(&out)
    );
    // A missing source.
    let out = f.kiln(&["cp", p(&t.join("nope")), "c:/root"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("no such file or directory"),
        "{}",
        show(&out)
    );
    // Owners: root without -a, the source's with -a.
    // `-rw-r--r-- 0/0 ...`: mode and numeric owner of the top entry.
    let stat = |path: &str| -> String {
        let l = f.listing("c", path);
        let mut w = l[0].split_whitespace();
        format!("{} {}", w.next().unwrap(), w.next().unwrap())
    };
    // Docker 20.10 keeps the source's owners (its docs say root's).
    assert_eq!(stat("/root/itWorks.txt"), "-rw-r--r-- 1234/1234");
    fs::set_permissions(
        t.join("permdirtest"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    fs::set_permissions(
        t.join("permdirtest/permtest"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    f.ok(&["cp", "-a", p(&t.join("permdirtest")), "c:/"]);
    assert_eq!(stat("/permdirtest/permtest"), "-r-------- 65534/65534");
    assert_eq!(stat("/permdirtest"), "drwx------ 2/2");
    // -a in a container with a user: that user's ids, read from the
    // container's /etc/passwd and /etc/group (as current moby does;
    // Docker 20.10 finds `root` but fails on `4:5`, taking it for a name).
    f.ok(&["create", "--name", "withuser", "-u", "4:5", IMAGE, "true"]);
    f.ok(&["create", "--name", "named", "-u", "root", IMAGE, "true"]);
    f.ok(&["cp", "-a", p(&t.join("file1")), "withuser:/tmp/"]);
    f.ok(&["cp", p(&t.join("file1")), "withuser:/tmp/plain"]);
    f.ok(&["cp", "-a", p(&t.join("file1")), "named:/tmp/"]);
    let owner = |c: &str, path: &str| -> String {
        let l = f.listing(c, path);
        l[0].split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(owner("withuser", "/tmp/file1"), "4/5");
    assert_eq!(owner("withuser", "/tmp/plain"), "1234/1234");
    assert_eq!(owner("named", "/tmp/file1"), "0/0");
    // `-`: a tar on stdin into a directory, refused for a file.
    fs::write(t.join("fromstdin"), "in\n").unwrap();
    let tar = make_tar(&t, &["fromstdin"]);
    let feed = |dest: &str| cp_stdin(&f, dest, &tar);
    let out = feed("c:/root");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(f.read("c", "/root/fromstdin"), "in\n");
    let out = feed("c:/root/file2");
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("must be a directory"), "{}", show(&out));
    // The container still starts with what was copied in.
    f.ok(&["start", "-a", "c"]);
    fs::remove_dir_all(&t).unwrap();
}

/// `kiln diff`: Docker's A/C/D lines, without the runtime's mount points.
#[test]
fn cfs_diff_lists_added_changed_and_deleted_paths() {
    let f = Fs::new();
    f.made(
        "c",
        "mkdir -p /srv/app && echo x > /srv/app/x && echo me >> /etc/passwd && rm /bin/yes",
    );
    let out = f.ok(&["diff", "c"]);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "A /srv",
        "A /srv/app",
        "A /srv/app/x",
        "C /etc",
        "C /etc/passwd",
        "C /bin",
        "D /bin/yes",
    ] {
        assert!(lines.contains(&want), "{want} missing from:\n{out}");
    }
    for stub in [
        "/proc",
        "/sys",
        "/dev",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(
            !lines.iter().any(|l| l[2..] == *stub),
            "{stub} reported:\n{out}"
        );
    }
    // Sorted with parents first.
    let pos = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(pos("A /srv") < pos("A /srv/app/x"));
    let out = f.kiln(&["diff", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("No such container: nosuch"));
}

/// `kiln export`: the merged filesystem as one tar, of a stopped and a
/// running container; `-o` created as `save -o` is (no symlink followed).
#[test]
fn cfs_export_writes_the_merged_filesystem() {
    let f = Fs::new();
    f.made("c", "echo exported > /root/new && rm /bin/yes");
    f.running("r", "echo live > /root/live");
    let t = host_dir("cfs-export-");
    let names_of = |tar: &[u8]| list_tar(tar, false);
    let file = t.join("c.tar");
    f.ok(&["export", "-o", p(&file), "c"]);
    let names = names_of(&fs::read(&file).unwrap());
    assert!(names.contains(&"root/new".to_owned()), "{names:?}");
    assert!(names.contains(&"bin/sh".to_owned()));
    assert!(!names.contains(&"bin/yes".to_owned()));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with('/') || n == "." || n == "./")
    );
    // A running one, to stdout: no /proc contents, no host files.
    let out = f.kiln(&["export", "r"]);
    assert!(out.status.success(), "{}", show(&out));
    let names = names_of(&out.stdout);
    assert!(names.contains(&"root/live".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("proc/")), "{names:?}");
    // -o onto a symlink is refused, the link's target untouched.
    let victim = t.join("victim");
    fs::write(&victim, "keep\n").unwrap();
    symlink(&victim, t.join("link.tar")).unwrap();
    let out = f.kiln(&["export", "-o", p(&t.join("link.tar")), "c"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        err(&out).contains("failed to export container"),
        "{}",
        show(&out)
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
    let meta = fs::symlink_metadata(t.join("link.tar")).unwrap();
    assert!(meta.file_type().is_symlink());
    let out = f.kiln(&["export", "-o", p(&t.join("x.tar")), "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("No such container: nosuch"),
        "{}",
        show(&out)
    );
    assert!(!t.join("x.tar").exists());
    fs::remove_dir_all(&t).unwrap();
}

/// moby's TestCpToSymlinkDestination and TestCpVolumePath: a stopped
/// container's bind volumes are where `cp` reads and writes (links in them
/// followed inside the container), a read-only one is refused, and the
/// root filesystem beside them stays writable.
#[test]
fn cfs_cp_reaches_the_volumes_of_a_stopped_container() {
    let f = Fs::new();
    let vol = host_dir("cfs-vol-");
    let vol_ro = host_dir("cfs-volro-");
    fs::write(vol.join("file1"), "file1\n").unwrap();
    fs::create_dir(vol.join("dir1")).unwrap();
    symlink("file1", vol.join("symlinkToFile1")).unwrap();
    symlink("dir1", vol.join("symlinkToDir1")).unwrap();
    symlink("fileX", vol.join("brokenSymlinkToFileX")).unwrap();
    fs::write(vol_ro.join("keep"), "keep\n").unwrap();
    let src = host_dir("cfs-volsrc-");
    fs::write(src.join("file2"), "file2\n").unwrap();
    let v2 = format!("{}:/vol2", vol.display());
    let vro = format!("{}:/vol_ro:ro", vol_ro.display());
    f.ok(&["run", "--name", "v", "-v", &v2, "-v", &vro, IMAGE, "true"]);
    let file2 = src.join("file2");
    let file2 = p(&file2);
    f.ok(&["cp", file2, "v:/vol2/symlinkToFile1"]);
    assert_eq!(
        fs::read_link(vol.join("symlinkToFile1")).unwrap(),
        Path::new("file1")
    );
    assert_eq!(fs::read_to_string(vol.join("file1")).unwrap(), "file2\n");
    f.ok(&["cp", file2, "v:/vol2/symlinkToDir1"]);
    assert_eq!(
        fs::read_to_string(vol.join("dir1/file2")).unwrap(),
        "file2\n"
    );
    f.ok(&["cp", file2, "v:/vol2/brokenSymlinkToFileX"]);
    assert_eq!(fs::read_to_string(vol.join("fileX")).unwrap(), "file2\n");
    assert!(
        fs::symlink_metadata(vol.join("brokenSymlinkToFileX"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let out = f.kiln(&["cp", file2, "v:/vol_ro/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("mounted volume is marked read-only"),
        "{}",
        show(&out)
    );
    assert!(!vol_ro.join("file2").exists());
    f.ok(&["cp", file2, "v:/root/"]);
    assert_eq!(f.read("v", "/root/file2"), "file2\n");
    assert_eq!(f.read("v", "/vol_ro/keep"), "keep\n");
    // Out of a volume.
    let out_dir = host_dir("cfs-volout-");
    f.ok(&["cp", "v:/vol2/dir1", p(&out_dir)]);
    assert_eq!(
        fs::read_to_string(out_dir.join("dir1/file2")).unwrap(),
        "file2\n"
    );
    for d in [vol, vol_ro, src, out_dir] {
        fs::remove_dir_all(d).unwrap();
    }
}

/// The path cases of moby's `docker_cli_cp_test.go`: a copy to `.`
/// (TestCpToDot), a name with colons (TestCpNameHasColon), a link as a
/// path component (TestCpSymlinkComponent), a link to a directory with and
/// without a trailing slash (TestCpFromSymlinkToDirectory), `-L` to a new
/// host name (TestCpSymlinkFromConToHostFollowSymlink), and a container
/// that never ran (TestCopyCreatedContainer).
#[test]
fn cfs_cp_path_cases_of_mobys_cli_tests() {
    let f = Fs::new();
    f.made(
        "c",
        "mkdir -p /some/path && echo -n holla > /some/path/test && echo lololol > /test && echo lololol > /te:s:t && ln -s /some/path /container_path && ln -s /some /dir_link && ln -s /some/path/test /file_link",
    );
    let t = host_dir("cfs-paths-");
    // To `.`, in the working directory.
    let out = sh(f.sb.kiln(["cp", "c:/test", "."]).current_dir(&t));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read_to_string(t.join("test")).unwrap(), "lololol\n");
    f.ok(&["cp", "c:/te:s:t", p(&t)]);
    assert_eq!(fs::read_to_string(t.join("te:s:t")).unwrap(), "lololol\n");
    // A link as a component: the container's file.
    f.ok(&["cp", "c:/container_path/test", p(&t.join("component"))]);
    assert_eq!(fs::read_to_string(t.join("component")).unwrap(), "holla");
    // A link to a directory: the link itself, or with `/` the directory
    // under the link's name.
    f.ok(&["cp", "c:/dir_link", p(&t)]);
    assert_eq!(
        fs::read_link(t.join("dir_link")).unwrap(),
        Path::new("/some")
    );
    fs::remove_file(t.join("dir_link")).unwrap();
    f.ok(&["cp", "c:/dir_link/", p(&t)]);
    assert!(fs::symlink_metadata(t.join("dir_link")).unwrap().is_dir());
    assert!(!t.join("some").exists());
    assert_eq!(
        fs::read_to_string(t.join("dir_link/path/test")).unwrap(),
        "holla"
    );
    // -L into a directory and to a new name.
    f.ok(&["cp", "-L", "c:/file_link", p(&t)]);
    assert_eq!(fs::read_to_string(t.join("file_link")).unwrap(), "holla");
    f.ok(&["cp", "-L", "c:/file_link", p(&t.join("somefile_host"))]);
    assert_eq!(
        fs::read_to_string(t.join("somefile_host")).unwrap(),
        "holla"
    );
    // A container that was created, never started.
    f.ok(&["create", "--name", "fresh", IMAGE, "true"]);
    f.ok(&["cp", "fresh:/bin/busybox", p(&t)]);
    assert!(fs::metadata(t.join("busybox")).unwrap().len() > 100_000);
    fs::remove_dir_all(&t).unwrap();
}

/// A `--userns` container: archives out of it carry the ids the container
/// sees (as Docker's do), `cp` in makes files owned by the container's
/// root, and `-a` writes the archive's ids as the host ids they map to.
#[test]
fn cfs_cp_and_export_of_a_userns_container_use_the_containers_ids() {
    let f = Fs::new();
    f.ok(&[
        "run",
        "--userns",
        "--name",
        "u",
        IMAGE,
        "sh",
        "-c",
        "echo x > /tmp/owned && chown 5:6 /tmp/owned",
    ]);
    let owner = |path: &str| -> String {
        let l = f.listing("u", path);
        l[0].split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(owner("/tmp/owned"), "5/6");
    let t = host_dir("cfs-userns-");
    fs::write(t.join("plain"), "p\n").unwrap();
    fs::write(t.join("kept"), "k\n").unwrap();
    std::os::unix::fs::chown(t.join("kept"), Some(7), Some(8)).unwrap();
    f.ok(&["cp", p(&t.join("plain")), "u:/tmp/"]);
    assert_eq!(owner("/tmp/plain"), "0/0");
    f.ok(&["cp", "-a", p(&t.join("kept")), "u:/tmp/"]);
    assert_eq!(owner("/tmp/kept"), "7/8");
    let export = t.join("u.tar");
    f.ok(&["export", "-o", p(&export), "u"]);
    let lines = list_tar(&fs::read(&export).unwrap(), true);
    let line = lines
        .iter()
        .find(|l| l.ends_with(" tmp/owned"))
        .expect("owned in the export");
    assert!(line.contains(" 5/6 "), "{line}");
    fs::remove_dir_all(&t).unwrap();
}

/// The same container in Docker (the reference setup's daemon): `diff`
/// prints the same lines, and `cp` out gives the same archive entries and
/// the same file for a link to a host marker. Skipped (with the reason)
/// when no Docker daemon answers.
#[test]
fn cfs_docker_diff_and_cp_match_kilns() {
    if !kiln_e2e::docker_available("cfs_docker_diff_and_cp_match_kilns") {
        return;
    }
    let f = Fs::new();
    let name = format!("kiln-e2e/cfs:{}", std::process::id());
    f.ok(&["tag", IMAGE, &name]);
    let file = f.sb.work().join("cfs.tar");
    f.ok(&["save", "-o", p(&file), &name]);
    let _image = kiln_e2e::DockerImage(name.clone());
    kiln_e2e::docker_ok(&["load", "-i", p(&file)]);
    let script = format!(
        "{} && mkdir -p /srv/app && echo x > /srv/app/x && echo me >> /etc/passwd && rm /bin/yes",
        f.links_script()
    );
    f.made("k", &script);
    let dname = format!("cfs-{}", std::process::id());
    kiln_e2e::docker_ok(&[
        "run",
        "--name",
        &dname,
        "--network",
        "none",
        &name,
        "sh",
        "-c",
        &script,
    ]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = sh(std::process::Command::new("docker").args(["rm", "-f", &self.0]));
        }
    }
    let _container = Gone(dname.clone());
    // The same lines; Docker's order is its walk's (map order in its naive
    // diff), kiln's is sorted.
    let sorted = |text: String| {
        let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    assert_eq!(
        sorted(f.ok(&["diff", "k"])),
        sorted(kiln_e2e::docker_ok(&["diff", &dname]))
    );
    for path in ["/srv", "/leak", "/etc/passwd"] {
        let kiln_tar = f.kiln(&["cp", &format!("k:{path}"), "-"]).stdout;
        let docker_tar =
            sh(std::process::Command::new("docker").args(["cp", &format!("{dname}:{path}"), "-"]))
                .stdout;
        assert_eq!(
            list_tar(&kiln_tar, false),
            list_tar(&docker_tar, false),
            "cp {path} -"
        );
    }
    let t = host_dir("cfs-docker-");
    f.ok(&["cp", "-L", "k:/leak", p(&t.join("kiln"))]);
    kiln_e2e::docker_ok(&["cp", "-L", &format!("{dname}:/leak"), p(&t.join("docker"))]);
    assert_eq!(
        fs::read_to_string(t.join("kiln")).unwrap(),
        fs::read_to_string(t.join("docker")).unwrap()
    );
    f.host_marker_untouched();
    fs::remove_dir_all(&t).unwrap();
}
