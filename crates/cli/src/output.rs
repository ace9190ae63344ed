//! Files the user names for kiln to write (`save -o`, `export -o`): created
//! beside the target as an exclusive temporary file, renamed over it once
//! complete, never over anything but a plain file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The file `kiln save -o PATH` writes: a new file with a random name,
/// created exclusively (`O_EXCL`) next to PATH and renamed over it only once
/// the whole archive is written and synced. PATH itself must be absent or a
/// regular file: as Docker's CLI, kiln refuses to write to a directory, a
/// symbolic link (its target is never touched), a FIFO, a socket or a
/// device node. The temporary file is removed when the save fails, and
/// never clobbers anything: its name is new.
pub(crate) struct SaveTarget {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl SaveTarget {
    pub(crate) fn create(path: &Path) -> Result<SaveTarget> {
        check_save_path(path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                anyhow::anyhow!("invalid output path: {} names no file", path.display())
            })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{base}."))
            .suffix(".kiln-partial")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(SaveTarget {
            path: path.to_path_buf(),
            tmp,
        })
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    pub(crate) fn tmp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Syncs the file and renames it over PATH (checked again first, so a
    /// device or link put there meanwhile is refused, not replaced).
    pub(crate) fn finish(self) -> Result<()> {
        self.tmp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", self.tmp.path().display()))?;
        check_save_path(&self.path).map_err(|e| anyhow::anyhow!("failed to save image: {e}"))?;
        let path = self.path;
        self.tmp
            .persist(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
        Ok(())
    }
}

/// Whether `kiln save` may (re)place `path`: its directory must exist and
/// the path must be absent or a plain regular file (Docker's CLI wording).
fn check_save_path(path: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("invalid output path: {}: not a directory", dir.display()),
            Err(e) => bail!("invalid output path: {}: {e}", dir.display()),
        }
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("failed to stat output path {}: {e}", path.display()),
    };
    let t = meta.file_type();
    let mode = meta.permissions().mode();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link directly"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device file"
    } else if t.is_block_device() {
        "a block device file"
    } else if mode & 0o4000 != 0 {
        "a setuid file"
    } else if mode & 0o2000 != 0 {
        "a setgid file"
    } else if mode & 0o1000 != 0 {
        "a sticky bit file"
    } else {
        return Ok(());
    };
    bail!("cannot write to {what}: {}", path.display())
}
