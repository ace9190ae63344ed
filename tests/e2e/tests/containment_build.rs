//! Issue #11, points 4 and 6, through the real `kiln build`: hostile base
//! images (made with `kiln import` of hand-crafted tars) and hostile build
//! contexts must not make the builder read, write or delete anything on
//! the host. Every test has a host marker file and a host marker directory;
//! their content must never appear in any output, layer or config, and
//! they must be neither changed nor removed.
//!
//! - `COPY --chown=NAME` when the image's `/etc` links to a host directory,
//!   or its `/etc/passwd` links to a shadow-like host file: the lookup
//!   resolves inside the image (as Docker's, which follows links within the
//!   container's root).
//! - ADD of a local tar whose entry goes through a link it planted
//!   (`lnk -> /elsewhere`, then `lnk/x`; or a link to a host directory):
//!   refused, as Docker's chrooted extraction fails; ADD keeps setuid bits
//!   and device nodes as Docker does; a truncated tar fails.
//! - COPY of context symlinks that point out of the context (absolute and
//!   `../..`): copied as links; naming one as a source resolves inside the
//!   context ("not found"), never reading the host target.
//!
//! Run against the kiln of commit cc596e0 (before kiln-fs), the first
//! four attacks succeeded: `--chown=evil` took uid 4242 from the host's
//! marker passwd, `--chown=root` took 31337 from the shadow-like marker,
//! the through-link ADD built, and ADD dropped the setuid bit. The COPY
//! case held there too and stays as a guard.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_e2e::{Sandbox, run_ok};

const MARKER: &str = "HOST-MARKER-7f3c1a-never-in-an-image";

/// The host marker file and directory, beside the sandbox's store.
struct Markers {
    file: PathBuf,
    dir: PathBuf,
    seen: Vec<(PathBuf, i64, i64, u64)>,
}

impl Markers {
    fn new(base: &Path) -> Markers {
        let file = base.join("host-marker.txt");
        let dir = base.join("host-marker-dir");
        std::fs::write(&file, format!("root:{MARKER}:31337:0:99999:7:::\n")).expect("marker");
        std::fs::create_dir_all(&dir).expect("marker dir");
        // A passwd and group the image's /etc may point at.
        std::fs::write(
            dir.join("passwd"),
            format!("evil:{MARKER}:4242:4243::/:/bin/sh\n"),
        )
        .expect("marker passwd");
        std::fs::write(dir.join("group"), format!("evil:{MARKER}:4243:\n")).expect("marker group");
        let mut m = Markers {
            file,
            dir,
            seen: Vec::new(),
        };
        m.seen = m.stats();
        m
    }

    fn stats(&self) -> Vec<(PathBuf, i64, i64, u64)> {
        let mut paths = vec![self.file.clone(), self.dir.clone()];
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .expect("marker dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        paths.extend(names);
        paths
            .into_iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).expect("marker present");
                (
                    p,
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                    m.ctime(),
                    m.ino(),
                )
            })
            .collect()
    }

    /// Neither written, changed nor removed.
    fn check(&self) {
        assert_eq!(self.stats(), self.seen, "a host marker was changed");
        assert!(
            std::fs::read_to_string(&self.file)
                .expect("marker")
                .contains(MARKER)
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Neither stream mentions the marker's content or its ids.
fn clean_output(out: &Output) {
    for s in [text(&out.stdout), text(&out.stderr)] {
        assert!(
            !s.contains(MARKER),
            "the marker leaked into the output:\n{s}"
        );
        assert!(!s.contains("31337") && !s.contains("4242"), "{s}");
    }
}

/// A tar header (ustar) for `name` of `kind` with `mode`, `size`, link.
fn header(name: &str, kind: u8, mode: u32, size: usize, link: &str, dev: (u32, u32)) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..336].copy_from_slice(format!("{:07o}", dev.0).as_bytes());
    h[337..344].copy_from_slice(format!("{:07o}", dev.1).as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// One tar member: name, type flag, mode, data, link target, device.
struct Member<'a> {
    name: &'a str,
    kind: u8,
    mode: u32,
    data: &'a [u8],
    link: &'a str,
    dev: (u32, u32),
}

fn file<'a>(name: &'a str, mode: u32, data: &'a [u8]) -> Member<'a> {
    Member {
        name,
        kind: b'0',
        mode,
        data,
        link: "",
        dev: (0, 0),
    }
}
fn dir(name: &str) -> Member<'_> {
    Member {
        name,
        kind: b'5',
        mode: 0o755,
        data: b"",
        link: "",
        dev: (0, 0),
    }
}
fn link<'a>(name: &'a str, target: &'a str) -> Member<'a> {
    Member {
        name,
        kind: b'2',
        mode: 0o777,
        data: b"",
        link: target,
        dev: (0, 0),
    }
}

fn tar_bytes(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&header(m.name, m.kind, m.mode, m.data.len(), m.link, m.dev));
        out.extend_from_slice(m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `kiln import` of a tar made of `members` as `name`.
fn import(sb: &Sandbox, name: &str, members: &[Member<'_>]) {
    let tar = sb
        .work()
        .join(format!("{}.tar", name.replace([':', '/'], "_")));
    std::fs::write(&tar, tar_bytes(members)).expect("write base tar");
    sb.kiln_ok(["import".as_ref(), tar.as_os_str(), name.as_ref()]);
}

/// A context directory with `files` and the Dockerfile.
fn context(sb: &Sandbox, name: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let ctx = sb.work().join(name);
    std::fs::create_dir_all(&ctx).expect("context");
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("Dockerfile");
    for (p, data) in files {
        let full = ctx.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, data).expect("write");
    }
    ctx
}

fn build(sb: &Sandbox, ctx: &Path, tag: &str) -> Output {
    sb.kiln([
        "build".as_ref(),
        "-t".as_ref(),
        tag.as_ref(),
        ctx.as_os_str(),
    ])
    .output()
    .expect("cannot start kiln build")
}

fn build_fails(sb: &Sandbox, ctx: &Path, tag: &str) -> Output {
    let out = build(sb, ctx, tag);
    assert!(
        !out.status.success(),
        "the build should have failed\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    clean_output(&out);
    out
}

fn build_ok(sb: &Sandbox, ctx: &Path, tag: &str) -> Output {
    let out = build(sb, ctx, tag);
    assert!(
        out.status.success(),
        "the build failed\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    clean_output(&out);
    out
}

/// `kiln save` of `image`, unpacked: returns every layer's verbose
/// listing (`tar -tv --numeric-owner`) and checks that no byte of the
/// archive (layers, config, manifest) holds the marker.
fn saved_layers(sb: &Sandbox, image: &str) -> Vec<String> {
    let archive = sb.work().join("saved.tar");
    let _ = std::fs::remove_file(&archive);
    sb.kiln_ok([
        "save".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
        image.as_ref(),
    ]);
    let bytes = std::fs::read(&archive).expect("saved archive");
    assert!(
        !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the marker is in the saved image"
    );
    let out = sb.work().join("saved");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("mkdir");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&out)
            .arg("-xf")
            .arg(&archive),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let mut listings = Vec::new();
    for layer in manifest[0]["Layers"].as_array().expect("layers") {
        let path = out.join(layer.as_str().expect("layer path"));
        let l = run_ok(
            Command::new("tar")
                .args(["-tv", "--numeric-owner", "-f"])
                .arg(&path),
        );
        listings.push(text(&l.stdout));
    }
    listings
}

/// The line for `name` in the last layer's listing.
fn entry(listings: &[String], name: &str) -> String {
    let last = listings.last().expect("a layer");
    last.lines()
        .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
        .unwrap_or_else(|| panic!("{name} not in the layer:\n{last}"))
        .to_owned()
}

#[test]
fn cbuild_chown_name_never_reads_a_host_etc_through_an_image_link() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    let host_etc = markers.dir.to_str().expect("utf-8").to_owned();
    import(
        &sb,
        "hostile/etc-link:1",
        &[link("etc", &host_etc), dir("tmp")],
    );
    let ctx = context(
        &sb,
        "ctx-etc",
        "FROM hostile/etc-link:1\nCOPY --chown=evil:evil f /f\n",
        &[("f", b"payload")],
    );
    // The image has no /etc/passwd of its own: `evil` is unknown, as in
    // Docker ("unable to find user evil").
    let out = build_fails(&sb, &ctx, "t/etc:1");
    assert!(text(&out.stderr).contains("evil"), "{}", text(&out.stderr));
    markers.check();

    // A numeric --chown still works on the same image.
    let ctx = context(
        &sb,
        "ctx-etc-num",
        "FROM hostile/etc-link:1\nCOPY --chown=7:8 f /f\n",
        &[("f", b"payload")],
    );
    build_ok(&sb, &ctx, "t/etc-num:1");
    let l = saved_layers(&sb, "t/etc-num:1");
    assert!(entry(&l, "f").contains(" 7/8 "), "{}", entry(&l, "f"));
    markers.check();
}

#[test]
fn cbuild_chown_name_never_reads_a_shadow_like_host_file_through_passwd() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    let host_shadow = markers.file.to_str().expect("utf-8").to_owned();
    import(
        &sb,
        "hostile/passwd-link:1",
        &[dir("etc"), link("etc/passwd", &host_shadow)],
    );
    let ctx = context(
        &sb,
        "ctx-passwd",
        "FROM hostile/passwd-link:1\nCOPY --chown=root f /f\n",
        &[("f", b"payload")],
    );
    // Before the fix the layer's owner was 31337, the host file's third
    // field. Inside the image the link leads nowhere: no such user.
    build_fails(&sb, &ctx, "t/passwd:1");
    markers.check();

    // The image's own link to its own shadow file resolves in the image.
    import(
        &sb,
        "hostile/passwd-inner:1",
        &[
            dir("etc"),
            file("etc/shadow", 0o600, b"root:imagehash:111:0:99999:7:::\n"),
            link("etc/passwd", "/etc/shadow"),
        ],
    );
    let ctx = context(
        &sb,
        "ctx-passwd-inner",
        "FROM hostile/passwd-inner:1\nCOPY --chown=root f /f\n",
        &[("f", b"payload")],
    );
    build_ok(&sb, &ctx, "t/passwd-inner:1");
    let l = saved_layers(&sb, "t/passwd-inner:1");
    assert!(entry(&l, "f").contains(" 111/0 "), "{}", entry(&l, "f"));
    markers.check();
}

#[test]
fn cbuild_add_of_a_tar_writing_through_its_own_link_is_refused() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    import(&sb, "base/elsewhere:1", &[dir("elsewhere"), dir("dest")]);
    let host_dir = markers.dir.to_str().expect("utf-8").to_owned();
    let evil_image = tar_bytes(&[link("lnk", "/elsewhere"), file("lnk/x", 0o644, b"in")]);
    let evil_host = tar_bytes(&[link("h", &host_dir), file("h/x", 0o644, b"in")]);
    let evil_up = tar_bytes(&[link("u", "../../../../../.."), file("u/keep", 0o644, b"in")]);
    // The link's target is missing inside the destination (the
    // extraction's root), so the entry through it fails, as in Docker.
    for (name, tar, dest) in [
        ("image", &evil_image, "/dest/"),
        ("host", &evil_host, "/dest/"),
        ("host-root", &evil_host, "/"),
    ] {
        let ctx = context(
            &sb,
            &format!("ctx-add-{name}"),
            &format!("FROM base/elsewhere:1\nADD evil.tar {dest}\n"),
            &[("evil.tar", tar)],
        );
        build_fails(&sb, &ctx, &format!("t/add-{name}:1"));
        markers.check();
    }
    // A climbing link resolves inside the destination: `u/keep` lands in
    // /dest.
    let ctx = context(
        &sb,
        "ctx-add-up",
        "FROM base/elsewhere:1\nADD evil.tar /dest/\n",
        &[("evil.tar", &evil_up)],
    );
    build_ok(&sb, &ctx, "t/add-up:1");
    let l = saved_layers(&sb, "t/add-up:1");
    entry(&l, "dest/keep");
    markers.check();
}

#[test]
fn cbuild_add_keeps_setuid_bits_and_device_nodes_and_fails_on_a_truncated_tar() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    import(&sb, "base/plain:1", &[dir("tmp")]);
    let good = tar_bytes(&[
        dir("bin"),
        file("bin/suid", 0o4755, b"#!/bin/sh\n"),
        file("bin/sgid", 0o2755, b"#!/bin/sh\n"),
        dir("dev"),
        Member {
            name: "dev/null",
            kind: b'3',
            mode: 0o666,
            data: b"",
            link: "",
            dev: (1, 3),
        },
        Member {
            name: "dev/fifo",
            kind: b'6',
            mode: 0o600,
            data: b"",
            link: "",
            dev: (0, 0),
        },
    ]);
    let ctx = context(
        &sb,
        "ctx-add-special",
        "FROM base/plain:1\nADD good.tar /\n",
        &[("good.tar", &good)],
    );
    build_ok(&sb, &ctx, "t/special:1");
    let l = saved_layers(&sb, "t/special:1");
    assert!(
        entry(&l, "bin/suid").starts_with("-rwsr-xr-x "),
        "{}",
        entry(&l, "bin/suid")
    );
    assert!(
        entry(&l, "bin/sgid").starts_with("-rwxr-sr-x "),
        "{}",
        entry(&l, "bin/sgid")
    );
    let null = entry(&l, "dev/null");
    assert!(
        null.starts_with("crw-rw-rw- ") && null.contains(" 1,3 "),
        "{null}"
    );
    assert!(
        entry(&l, "dev/fifo").starts_with("prw------- "),
        "{}",
        entry(&l, "dev/fifo")
    );

    // Cut inside a member's data: Docker fails ("unexpected EOF"), so does kiln.
    let big = tar_bytes(&[file("big", 0o644, &[b'x'; 8192])]);
    let ctx = context(
        &sb,
        "ctx-add-cut",
        "FROM base/plain:1\nADD cut.tar /cut/\n",
        &[("cut.tar", &big[..512 + 4000])],
    );
    let out = build_fails(&sb, &ctx, "t/cut:1");
    assert!(
        text(&out.stderr).contains("ends inside big"),
        "{}",
        text(&out.stderr)
    );
    markers.check();
}

#[test]
fn cbuild_copy_of_context_links_pointing_out_never_reads_their_targets() {
    let sb = Sandbox::new();
    let markers = Markers::new(sb.path());
    import(&sb, "base/plain:1", &[dir("tmp")]);
    let ctx = context(
        &sb,
        "ctx-links",
        "FROM base/plain:1\nCOPY d /app/\n",
        &[("d/real", b"real")],
    );
    symlink(&markers.file, ctx.join("d/abs")).expect("symlink");
    // ctx = <sandbox>/work/ctx-links: ../../host-marker.txt is the marker.
    symlink("../../../host-marker.txt", ctx.join("d/up")).expect("symlink");
    symlink(&markers.dir, ctx.join("outdir")).expect("symlink");
    build_ok(&sb, &ctx, "t/links:1");
    let l = saved_layers(&sb, "t/links:1");
    let abs = entry(&l, "app/abs");
    assert!(
        abs.starts_with('l') && abs.contains("host-marker.txt"),
        "{abs}"
    );
    let up = entry(&l, "app/up");
    assert!(
        up.starts_with('l') && up.ends_with("-> ../../../host-marker.txt"),
        "{up}"
    );
    assert!(entry(&l, "app/real").starts_with('-'));

    // Naming a link that leads out: resolved inside the context, so not
    // found, as BuildKit says.
    for (i, src) in ["d/abs", "d/up", "outdir/passwd"].iter().enumerate() {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM base/plain:1\nCOPY {src} /x\n"),
        )
        .expect("Dockerfile");
        let out = build_fails(&sb, &ctx, &format!("t/named-{i}:1"));
        assert!(
            text(&out.stderr).contains("not found")
                || text(&out.stderr).contains("file does not exist"),
            "{src}: {}",
            text(&out.stderr)
        );
    }
    markers.check();
}
