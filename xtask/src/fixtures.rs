//! Fixture images made without any of kiln's code: a busybox image from
//! Debian's `busybox-static`, a two-platform index, and a cached Debian
//! bookworm minbase image from `debootstrap`. Layouts are made with `umoci`;
//! the index blob is written here; everything is pushed with `skopeo`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::registry::Creds;
use crate::util::{self, run};

/// Where cached fixtures live between runs.
pub(crate) const CACHE_DIR: &str = "/var/cache/kiln-xtask";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host's architecture in OCI spelling (amd64, arm64, ...).
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn umoci() -> Command {
    Command::new("umoci")
}

/// The static busybox binary of `arch` from Debian's busybox-static package
/// (`apt-get download busybox-static:ARCH`, the architecture added to
/// dpkg's foreign ones first), kept under [`CACHE_DIR`].
pub(crate) fn foreign_busybox(arch: &str) -> Result<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let cached = cache.join(format!("busybox-static-{arch}"));
    if cached.exists() {
        return Ok(cached);
    }
    std::fs::create_dir_all(cache)?;
    let foreign = util::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let apt_update = || run(Command::new("apt-get").args(["update", "-qq"]));
    if !foreign.lines().any(|l| l.trim() == arch) {
        run(Command::new("dpkg").args(["--add-architecture", arch]))?;
        apt_update()?;
    }
    let work = tempfile::Builder::new()
        .prefix("busybox-")
        .tempdir_in(cache)?;
    let download = || {
        run(Command::new("apt-get")
            .args(["download", "-qq", &format!("busybox-static:{arch}")])
            .current_dir(work.path()))
    };
    if download().is_err() {
        apt_update()?;
        download()?;
    }
    let deb = std::fs::read_dir(work.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download busybox-static:{arch} left no .deb"))?;
    let x = work.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let bin = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|b| x.join(b))
        .find(|p| p.is_file())
        .with_context(|| format!("busybox-static:{arch} has no busybox binary"))?;
    let tmp = work.path().join("busybox");
    std::fs::copy(&bin, &tmp)?;
    std::fs::rename(&tmp, &cached)?;
    Ok(cached)
}

/// Builds the busybox root filesystem: /bin/busybox with every applet link,
/// /etc/passwd, /etc/group, /tmp (1777), /root.
fn busybox_rootfs(dir: &Path) -> Result<()> {
    busybox_rootfs_with(dir, Path::new("/bin/busybox"))
}

/// [`busybox_rootfs`] with the busybox binary `busybox` (the applet list
/// comes from the host's, the same Debian version).
fn busybox_rootfs_with(dir: &Path, busybox_bin: &Path) -> Result<()> {
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::set_permissions(dir.join("root"), std::fs::Permissions::from_mode(0o700))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing (package busybox-static)");
    }
    std::fs::copy(busybox_bin, dir.join("bin/busybox"))
        .with_context(|| format!("cannot copy {}", busybox_bin.display()))?;
    let list = util::output(Command::new(busybox).arg("--list"))?;
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        symlink("busybox", dir.join("bin").join(applet))
            .with_context(|| format!("cannot link applet {applet}"))?;
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// Makes a one-layer OCI image `layout:tag` from the tree `rootfs`.
fn layout_from_rootfs(
    layout: &Path,
    tag: &str,
    rootfs: &Path,
    cmd: &str,
    arch: &str,
) -> Result<()> {
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("index.json").exists() {
        run(umoci().arg("init").arg("--layout").arg(layout))?;
    }
    run(umoci().args(["new", "--image", &image]))?;
    run(umoci()
        .args(["insert", "--image", &image])
        .arg(rootfs)
        .arg("/"))?;
    run(umoci().args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        arch,
        "--config.env",
        PATH_ENV,
        "--config.cmd",
        cmd,
    ]))?;
    Ok(())
}

/// Writes a blob into an OCI layout and returns its digest.
fn write_blob(layout: &Path, bytes: &[u8]) -> Result<String> {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes)?;
    Ok(format!("sha256:{hex}"))
}

/// The descriptor `index.json` gives for a tag.
fn descriptor(layout: &Path, tag: &str) -> Result<serde_json::Value> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .with_context(|| format!("no tag {tag} in {}", layout.display()))
}

/// Builds the busybox layout with tags `latest` (host architecture) and
/// `multi` (an image index with linux/amd64 and linux/arm64 entries; the
/// non-host entry is a real busybox of that architecture, from Debian's
/// busybox-static package of it).
pub(crate) fn busybox_layout(work: &Path) -> Result<PathBuf> {
    let rootfs = work.join("busybox-rootfs");
    busybox_rootfs(&rootfs)?;
    let layout = work.join("busybox-oci");
    let host = host_arch();
    layout_from_rootfs(&layout, "latest", &rootfs, "sh", host)?;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let other_rootfs = work.join(format!("busybox-rootfs-{other}"));
    busybox_rootfs_with(&other_rootfs, &foreign_busybox(other)?)?;
    layout_from_rootfs(&layout, other, &other_rootfs, "sh", other)?;
    let mut entries = Vec::new();
    for (tag, arch) in [("latest", host), (other, other)] {
        let d = descriptor(&layout, tag)?;
        entries.push((
            arch,
            serde_json::json!({
                "mediaType": d["mediaType"],
                "digest": d["digest"],
                "size": d["size"],
                "platform": { "architecture": arch, "os": "linux" },
            }),
        ));
    }
    entries.sort_by_key(|(arch, _)| *arch);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries.into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&index)?;
    let digest = write_blob(&layout, &bytes)?;
    let top_path = layout.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&std::fs::read(&top_path)?)?;
    top["manifests"]
        .as_array_mut()
        .context("index.json has no manifests array")?
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": "multi" },
        }));
    std::fs::write(&top_path, serde_json::to_vec(&top)?)?;
    Ok(layout)
}

/// The cached Debian bookworm minbase layout (tag `bookworm`), made with
/// debootstrap the first time (about 25 s plus compression) and kept under
/// [`CACHE_DIR`].
pub(crate) fn debian_layout() -> Result<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let layout = cache.join("debian-bookworm-oci");
    if layout.join("index.json").exists() {
        eprintln!("using cached debian:bookworm layout {}", layout.display());
        return Ok(layout);
    }
    std::fs::create_dir_all(cache)?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(cache)?;
    let rootfs = work.path().join("rootfs");
    eprintln!("making debian:bookworm minbase with debootstrap (once; cached in {CACHE_DIR})");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian")
        .stdout(std::process::Stdio::null()))?;
    let tmp_layout = work.path().join("oci");
    layout_from_rootfs(&tmp_layout, "bookworm", &rootfs, "bash", host_arch())?;
    if let Err(e) = std::fs::rename(&tmp_layout, &layout) {
        // Another run may have finished the same cache first.
        if !layout.join("index.json").exists() {
            return Err(e)
                .with_context(|| format!("cannot move the layout into {}", layout.display()));
        }
    }
    Ok(layout)
}

/// Copies `oci:LAYOUT:TAG` to `docker://ADDR/NAME` (every platform when
/// `all`), with credentials when given.
pub(crate) fn push(
    layout: &Path,
    tag: &str,
    addr: &str,
    name: &str,
    all: bool,
    creds: Option<&Creds>,
) -> Result<()> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = creds {
        cmd.arg("--dest-creds")
            .arg(format!("{}:{}", c.user, c.pass));
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{addr}/{name}"));
    run(&mut cmd)
}
