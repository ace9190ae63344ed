//! Volumes end to end (issue 16, bug 3 and its Volumes paragraph), with
//! Docker's behaviour taken from moby's `integration-cli/
//! docker_cli_volume_test.go` and the volume cases of
//! `docker_cli_run_test.go` (`TestRunCreateVolume*`): an image's `VOLUME`
//! and `-v /path` are anonymous volumes filled from the image's content,
//! `rm -v` (and `run --rm`) removes them, plain `rm` keeps them; named
//! volumes with `kiln volume ...`, `-v NAME:/path` and `--mount
//! type=volume`. Containment: filling a volume from an image whose tree
//! links to a host marker never reads or writes the host's file.
//!
//! Test names start with `vol_`: `cargo xtask e2e -- vol_` runs them.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use kiln_e2e::{Sandbox, probe_rootfs_tar, sh};

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Vol {
    sb: Sandbox,
}

impl Vol {
    /// A store with image `image` imported from a busybox root filesystem
    /// that `extra` completes, with the Dockerfile instructions `changes`.
    fn new(name: &str, image: &str, changes: &[&str], extra: impl FnOnce(&Path)) -> Self {
        let tar = probe_rootfs_tar(
            name,
            &["root"],
            "root:x:0:0:root:/root:/bin/sh\n",
            "root:x:0:\n",
            extra,
        );
        let sb = Sandbox::new();
        let mut args: Vec<String> = vec!["import".into()];
        for c in ["ENV PATH=/bin"].iter().chain(changes) {
            args.push("-c".into());
            args.push((*c).into());
        }
        args.push(tar.to_string_lossy().into_owned());
        args.push(image.into());
        sb.kiln_ok(&args);
        Vol { sb }
    }

    fn kiln(&self, args: &[&str]) -> Output {
        sh(self.sb.kiln(args).stdin(Stdio::null()))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(out.status.success(), "kiln {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's mounts as `inspect` shows them.
    fn mounts(&self, name: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect's JSON");
        v[0]["Mounts"].as_array().cloned().unwrap_or_default()
    }

    /// The volume mounted at `target` in container `name`: its name and
    /// data directory.
    fn volume_at(&self, name: &str, target: &str) -> (String, PathBuf) {
        let m = self
            .mounts(name)
            .into_iter()
            .find(|m| m["Destination"] == target)
            .unwrap_or_else(|| panic!("no mount at {target} in {name}"));
        assert_eq!(m["Type"], "volume", "{m}");
        let vol = m["Name"].as_str().expect("a volume name").to_owned();
        let src = PathBuf::from(m["Source"].as_str().expect("a source"));
        (vol, src)
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn vol_image_volume_is_an_anonymous_volume_filled_from_the_image() {
    let v = Vol::new("vol-anon", "volimg:latest", &["VOLUME /data"], |root| {
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("data/f"), "from image\n").unwrap();
        fs::write(root.join("data/sub/owned"), "x").unwrap();
        std::os::unix::fs::chown(root.join("data/sub/owned"), Some(1000), Some(1001)).unwrap();
        symlink("f", root.join("data/link")).unwrap();
    });
    // The image's files are there (bug 3: /data did not exist).
    let out = v.ok(&[
        "run",
        "--name",
        "c1",
        "volimg:latest",
        "sh",
        "-c",
        "cat /data/f; stat -c '%u:%g' /data/sub/owned; readlink /data/link; grep ' /data ' /proc/mounts | wc -l",
    ]);
    assert_eq!(out, "from image\n1000:1001\nf\n1\n");
    let (name1, data1) = v.volume_at("c1", "/data");
    assert!(
        is_hex64(&name1),
        "anonymous volumes have 64-hex names: {name1}"
    );
    assert!(data1.starts_with(v.sb.root()), "{}", data1.display());
    assert_eq!(fs::read_to_string(data1.join("f")).unwrap(), "from image\n");

    // What the container writes stays in the volume, across a restart.
    v.ok(&[
        "run",
        "--name",
        "c2",
        "volimg:latest",
        "sh",
        "-c",
        "echo again >> /data/f; cat /data/f",
    ]);
    let out = v.ok(&["start", "-a", "c2"]);
    assert_eq!(out, "from image\nagain\nagain\n");
    let (name2, data2) = v.volume_at("c2", "/data");
    assert_ne!(name1, name2, "each container has its own anonymous volume");
    assert_eq!(
        fs::read_to_string(data1.join("f")).unwrap(),
        "from image\n",
        "c1's volume is not c2's"
    );

    // `-v /path`: an anonymous volume too (empty: nothing there in the
    // image); `-v` over the image's VOLUME replaces it.
    let out = v.ok(&[
        "run",
        "--name",
        "c3",
        "-v",
        "/scratch",
        "volimg:latest",
        "sh",
        "-c",
        "ls -A /scratch | wc -l; touch /scratch/made",
    ]);
    assert_eq!(out, "0\n");
    let (name3, data3) = v.volume_at("c3", "/scratch");
    assert!(is_hex64(&name3));
    assert!(data3.join("made").exists());
    assert_eq!(v.mounts("c3").len(), 2, "the image's /data volume as well");

    // Plain `rm` keeps the anonymous volume; `rm -v` removes it.
    v.ok(&["rm", "c2"]);
    assert!(data2.join("f").exists(), "rm without -v removed the volume");
    v.ok(&["rm", "-v", "c1"]);
    assert!(
        !data1.parent().unwrap().exists(),
        "rm -v left {}",
        data1.display()
    );
    v.ok(&["rm", "--volumes", "c3"]);
    assert!(!data3.parent().unwrap().exists());

    // `run --rm` takes its anonymous volumes along, as Docker's.
    let before = fs::read_dir(v.sb.root().join("volumes")).unwrap().count();
    v.ok(&["run", "--rm", "volimg:latest", "true"]);
    let after = fs::read_dir(v.sb.root().join("volumes")).unwrap().count();
    assert_eq!(before, after, "run --rm left its anonymous volume");
}

/// The image's `/data` is a link to a host marker directory's absolute
/// path, and its `/data2` holds links to the marker file: filling the
/// volumes resolves them inside the image's root and copies links as
/// links, so the host's marker is never read into a volume nor written.
#[test]
fn vol_image_volume_links_to_a_host_marker_stay_inside() {
    let scratch = kiln_e2e::scratch_dir().join(format!("vol-marker-{}", std::process::id()));
    let marker = scratch.join("host-marker");
    fs::create_dir_all(&marker).unwrap();
    fs::write(marker.join("secret"), "HOST\n").unwrap();
    let m = marker.clone();
    let v = Vol::new(
        "vol-links",
        "vollinks:latest",
        &["VOLUME /data", "VOLUME /data2"],
        |root| {
            // The image's own copy at the marker's path.
            let inside = root.join(m.strip_prefix("/").unwrap());
            fs::create_dir_all(&inside).unwrap();
            fs::write(inside.join("secret"), "CONTAINER\n").unwrap();
            symlink(&m, root.join("data")).unwrap();
            fs::create_dir_all(root.join("data2")).unwrap();
            symlink(m.join("secret"), root.join("data2/leak")).unwrap();
            symlink(&m, root.join("data2/leakdir")).unwrap();
        },
    );
    let out = v.ok(&[
        "run",
        "--name",
        "l1",
        "vollinks:latest",
        "sh",
        "-c",
        "cat /data/secret; cat /data2/leak; echo pwned > /data/secret; echo pwned > /data2/leak; echo more > /data2/leakdir/new",
    ]);
    assert_eq!(out, "CONTAINER\nCONTAINER\n");
    assert_eq!(fs::read_to_string(marker.join("secret")).unwrap(), "HOST\n");
    let names: Vec<_> = fs::read_dir(&marker).unwrap().collect();
    assert_eq!(names.len(), 1, "the host marker directory gained files");
    let (_, data2) = v.volume_at("l1", "/data2");
    let leak = fs::symlink_metadata(data2.join("leak")).unwrap();
    assert!(leak.file_type().is_symlink(), "a link was copied as a file");
    // `/data` is mounted where its link leads inside the root (Docker
    // follows it in scope; kiln's inspect shows that path).
    let (_, data) = v.volume_at("l1", marker.to_str().unwrap());
    assert_eq!(fs::read_to_string(data.join("secret")).unwrap(), "pwned\n");
    // The volume directory itself is the store's, not the host marker.
    let data_meta = fs::metadata(&data).unwrap();
    let marker_meta = fs::metadata(&marker).unwrap();
    assert_ne!(
        (data_meta.dev(), data_meta.ino()),
        (marker_meta.dev(), marker_meta.ino())
    );
    v.ok(&["rm", "-v", "l1"]);
    assert_eq!(fs::read_to_string(marker.join("secret")).unwrap(), "HOST\n");
    let _ = fs::remove_dir_all(&scratch);
}

#[test]
fn vol_named_volumes_commands_and_mounts() {
    let v = Vol::new("vol-named", "volnamed:latest", &[], |root| {
        fs::create_dir_all(root.join("seed")).unwrap();
        fs::write(root.join("seed/f"), "seeded\n").unwrap();
    });
    // create: the name given, or 64 hex digits; an existing name is kept.
    assert_eq!(v.ok(&["volume", "create", "named1"]), "named1\n");
    assert_eq!(
        v.ok(&["volume", "create", "--label", "k=v", "labelled"]),
        "labelled\n"
    );
    let random = v.ok(&["volume", "create"]);
    assert!(is_hex64(random.trim()), "{random}");
    let random = random.trim().to_owned();
    let bad = v.kiln(&["volume", "create", "a/b"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("includes invalid characters"));

    // ls: Docker's table, -q, --format, filters.
    let ls = v.ok(&["volume", "ls"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["DRIVER", "VOLUME", "NAME"]
    );
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["local", "named1"])
    );
    let q = v.ok(&["volume", "ls", "-q"]);
    let mut want = vec![random.clone(), "labelled".to_owned(), "named1".to_owned()];
    want.sort();
    assert_eq!(q.lines().collect::<Vec<_>>(), want);
    assert_eq!(
        v.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}}",
            "-f",
            "label=k=v"
        ]),
        "labelled local\n"
    );

    // inspect: Docker's fields.
    let out = v.ok(&["volume", "inspect", "labelled"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let j = &j[0];
    assert_eq!(j["Name"], "labelled");
    assert_eq!(j["Driver"], "local");
    assert_eq!(j["Scope"], "local");
    assert_eq!(j["Labels"]["k"], "v");
    assert!(j["CreatedAt"].as_str().is_some_and(|t| t.contains('T')));
    let mountpoint = PathBuf::from(j["Mountpoint"].as_str().unwrap());
    assert!(mountpoint.ends_with("volumes/labelled/_data"));
    assert!(mountpoint.is_dir());
    assert_eq!(
        v.ok(&["volume", "inspect", "-f", "{{.Name}}", "named1"]),
        "named1\n"
    );
    let missing = v.kiln(&["volume", "inspect", "nosuchvolume"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such volume: nosuchvolume"));

    // -v NAME:/path makes the volume, filled from the image at /seed; a
    // second container sees what the first wrote.
    let out = v.ok(&[
        "run",
        "--name",
        "w1",
        "-v",
        "shared:/seed",
        "volnamed:latest",
        "sh",
        "-c",
        "cat /seed/f; echo written > /seed/w",
    ]);
    assert_eq!(out, "seeded\n");
    let out = v.ok(&[
        "run",
        "--name",
        "w2",
        "--mount",
        "type=volume,source=shared,target=/other",
        "volnamed:latest",
        "cat",
        "/other/f",
        "/other/w",
    ]);
    assert_eq!(out, "seeded\nwritten\n");
    let (name, _) = v.volume_at("w2", "/other");
    assert_eq!(name, "shared");
    // An existing named volume is not filled again: named1 is empty.
    let out = v.ok(&[
        "run",
        "--rm",
        "-v",
        "named1:/seed",
        "volnamed:latest",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "");

    // rm: refused while a container uses it (Docker's message), even with -f.
    let busy = v.kiln(&["volume", "rm", "shared"]);
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains("remove shared: volume is in use - ["), "{err}");
    // rm -v of a container keeps its named volumes.
    v.ok(&["rm", "-v", "w1", "w2"]);
    assert!(v.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "shared"));
    assert_eq!(v.ok(&["volume", "rm", "shared"]), "shared\n");
    assert!(!v.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "shared"));
    let gone = v.kiln(&["volume", "rm", "shared"]);
    assert!(!gone.status.success());
    v.ok(&["volume", "rm", "-f", "shared"]);

    // prune: asks first; removes unused anonymous volumes only (named
    // ones with -a), never one a container uses.
    v.ok(&[
        "create",
        "--name",
        "keep",
        "-v",
        "/anon-used",
        "volnamed:latest",
        "true",
    ]);
    v.ok(&[
        "run",
        "--name",
        "gone",
        "-v",
        "/anon-unused",
        "volnamed:latest",
        "true",
    ]);
    let (unused, unused_dir) = v.volume_at("gone", "/anon-unused");
    fs::write(unused_dir.join("blob"), vec![0u8; 4096]).unwrap();
    let (used, _) = v.volume_at("keep", "/anon-used");
    v.ok(&["rm", "gone"]);
    let out = sh(v.sb.kiln(["volume", "prune"]).stdin(Stdio::null()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[y/N]"), "{text}");
    assert!(
        v.ok(&["volume", "ls", "-q"]).lines().any(|l| l == unused),
        "no answer pruned"
    );
    let out = v.ok(&["volume", "prune", "-f"]);
    assert!(
        out.contains(&format!("Deleted Volumes:\n{unused}\n")),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: 4.096kB"), "{out}");
    let left = v.ok(&["volume", "ls", "-q"]);
    assert!(!left.lines().any(|l| l == unused));
    assert!(
        left.lines().any(|l| l == used),
        "prune removed a used volume"
    );
    assert!(
        left.lines().any(|l| l == "named1"),
        "prune without -a removed a named volume"
    );
    v.ok(&["volume", "prune", "-f", "--all"]);
    let left = v.ok(&["volume", "ls", "-q"]);
    assert_eq!(left.lines().collect::<Vec<_>>(), [used.as_str()]);
}
