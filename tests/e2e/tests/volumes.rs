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
    assert!(is_hex64(&name1), "anonymous volumes have 64-hex names: {name1}");
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
