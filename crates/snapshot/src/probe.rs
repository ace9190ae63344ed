//! [`overlay_supported`]: a real overlay mount under the snapshotter root,
//! which is the only reliable way to know whether overlayfs works there
//! (kernel support, privileges, upper filesystem with `trusted.*` xattrs and
//! whiteouts, nesting inside another overlay).

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use crate::{Error, Result};

/// Tries an overlay mount in a scratch directory under `root` (created if
/// missing): writes a file and deletes a lower file through it, checks the
/// upper dir got the file and a whiteout, unmounts and cleans up. `Ok(())`
/// means the [`crate::OverlaySnapshotter`] can work there; the error says
/// why not. Needs root (`CAP_SYS_ADMIN`); the caller (the CLI) decides.
///
/// This is the one place in the crate that performs a mount, and it only
/// mounts over its own scratch directory.
pub fn overlay_supported(root: &Path) -> Result<()> {
    let scratch = root.join(format!(
        "probe-{}",
        rustix::process::getpid().as_raw_nonzero()
    ));
    let fail = |reason: &str, source: std::io::Error| Error::OverlayUnsupported {
        root: root.to_owned(),
        reason: reason.to_owned(),
        source,
    };
    let _ = fs::remove_dir_all(&scratch);
    let dirs: Vec<PathBuf> = ["lower", "upper", "work", "merged"]
        .iter()
        .map(|d| scratch.join(d))
        .collect();
    for d in &dirs {
        fs::create_dir_all(d).map_err(|e| fail("creating scratch directories", e))?;
    }
    fs::write(dirs[0].join("gone"), b"").map_err(|e| fail("writing lower file", e))?;
    let result = try_mount(&dirs, &fail);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn try_mount(dirs: &[PathBuf], fail: &dyn Fn(&str, std::io::Error) -> Error) -> Result<()> {
    let (lower, upper, work, merged) = (&dirs[0], &dirs[1], &dirs[2], &dirs[3]);
    let data = format!(
        "index=off,redirect_dir=off,metacopy=off,lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let data = CString::new(data).map_err(|e| fail("mount options", e.into()))?;
    rustix::mount::mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|e| fail("mounting overlay", e.into()))?;
    let checks = (|| {
        fs::write(merged.join("new"), b"x").map_err(|e| fail("writing through overlay", e))?;
        fs::remove_file(merged.join("gone")).map_err(|e| fail("deleting through overlay", e))?;
        let wh = fs::symlink_metadata(upper.join("gone"))
            .map_err(|e| fail("no whiteout in upper dir", e))?;
        if !(wh.file_type().is_char_device() && wh.rdev() == 0) {
            return Err(fail(
                "whiteout in upper dir is not a 0/0 character device",
                std::io::ErrorKind::InvalidData.into(),
            ));
        }
        fs::metadata(upper.join("new")).map_err(|e| fail("new file not in upper dir", e))?;
        Ok(())
    })();
    let unmounted = rustix::mount::unmount(merged, UnmountFlags::DETACH)
        .map_err(|e| fail("unmounting overlay", e.into()));
    checks.and(unmounted)
}
