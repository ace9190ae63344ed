//! `--chmod` (octal and symbolic, as chmod(1)) and `--chown` (numeric or names
//! resolved with an image's `/etc/passwd` and `/etc/group`, read inside the
//! image: an `/etc` that links to a host directory, or an `/etc/passwd`
//! that links to `/etc/shadow`, resolves within the image's own tree).

use kiln_fs::Root;

use crate::error::{Error, Result};

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0755`, `644`.
    Octal(u32),
    /// `u+x,go-w`, `a=rX`.
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who, op, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

/// An invalid `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chmod {0:?}")]
pub struct ChmodError(pub String);

impl Chmod {
    /// Parses an octal or symbolic mode.
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        let err = || ChmodError(s.to_string());
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            let v = u32::from_str_radix(s, 8).map_err(|_| err())?;
            return if v <= 0o7777 {
                Ok(Chmod::Octal(v))
            } else {
                Err(err())
            };
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(err)?;
            let (who_s, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(err()),
                };
            }
            // chmod(1) without "who" acts on all (umask ignored in builds).
            if who == 0 {
                who = 0o7777;
            }
            let mut chars = rest.chars();
            let op = chars.next().ok_or_else(err)?;
            let perms: String = chars.collect();
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(err());
            }
            clauses.push(Clause { who, op, perms });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits (incl. setuid/setgid/sticky) for a file whose
    /// current mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        match self {
            Chmod::Octal(v) => *v,
            Chmod::Symbolic(clauses) => {
                let mut m = mode;
                for c in clauses {
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || m & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    m = match c.op {
                        '+' => m | bits,
                        '-' => m & !bits,
                        _ => (m & !c.who) | bits,
                    };
                }
                m
            }
        }
    }
}

/// A `--chown` value resolved to numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// The largest `/etc/passwd` or `/etc/group` read (an image could make
/// either huge).
const MAX_ID_FILE: u64 = 16 << 20;

/// `name`'s id (and primary group) in the image's `file`; a missing or
/// unreadable file (not a regular file, too big) finds nothing.
fn lookup(root: &Root, file: &str, name: &str) -> Option<(u32, u32)> {
    let bytes = root.read_limited(file, MAX_ID_FILE).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&name) && f.len() >= 3 {
            let id = f[2].parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        } else {
            None
        }
    })
}

/// Resolves `user[:group]` (names or numbers) with the files of the rootfs at
/// `root` (`None`: numbers only, names are an error).
pub(crate) fn resolve_owner(spec: &str, root: Option<&Root>) -> Result<Owner> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = if let Ok(n) = user.parse::<u32>() {
        (n, n)
    } else {
        root.and_then(|r| lookup(r, "/etc/passwd", user))
            .ok_or_else(|| Error::UnknownUser {
                kind: "user",
                name: user.to_string(),
            })?
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => root
                .and_then(|r| lookup(r, "/etc/group", g))
                .map(|(id, _)| id)
                .ok_or_else(|| Error::UnknownUser {
                    kind: "group",
                    name: g.to_string(),
                })?,
        },
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").expect("ok").apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("0640").expect("ok").apply(0o777, false), 0o640);
        assert_eq!(Chmod::parse("u+x").expect("ok").apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w").expect("ok").apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a=rX").expect("ok").apply(0o600, false), 0o444);
        assert_eq!(Chmod::parse("a=rX").expect("ok").apply(0o700, true), 0o555);
        assert_eq!(Chmod::parse("+x").expect("ok").apply(0o644, false), 0o755);
        assert_eq!(
            Chmod::parse("u=rw,g=r,o=").expect("ok").apply(0o777, false),
            0o640
        );
        assert!(Chmod::parse("9").is_err());
        assert!(Chmod::parse("u*x").is_err());
        assert!(Chmod::parse("z+x").is_err());
    }

    use std::fs;

    #[test]
    fn owners() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("etc")).expect("mkdir");
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .expect("write");
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("write");
        let root = Root::open(dir.path()).expect("root");
        let r = Some(&root);
        assert_eq!(
            resolve_owner("app", r).expect("ok"),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_owner("app:staff", r).expect("ok"),
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(
            resolve_owner("10", None).expect("ok"),
            Owner { uid: 10, gid: 10 }
        );
        assert_eq!(
            resolve_owner("10:20", None).expect("ok"),
            Owner { uid: 10, gid: 20 }
        );
        assert!(resolve_owner("nobody", r).is_err());
        assert!(resolve_owner("app:nogroup", r).is_err());
    }

    #[test]
    fn lookups_stay_inside_the_image() {
        let host = tempfile::tempdir().expect("tempdir");
        fs::write(host.path().join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").expect("write");
        fs::write(host.path().join("group"), "evil:x:4343:\n").expect("write");
        // An image whose /etc is a link to a host directory.
        let img = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(host.path(), img.path().join("etc")).expect("symlink");
        let root = Root::open(img.path()).expect("root");
        assert!(matches!(
            resolve_owner("evil", Some(&root)),
            Err(Error::UnknownUser { .. })
        ));
        assert!(resolve_owner("0:evil", Some(&root)).is_err());
        // An image whose /etc/passwd links to an absolute host path and
        // whose /etc/group is a FIFO (never opened).
        let img = tempfile::tempdir().expect("tempdir");
        fs::create_dir(img.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(host.path().join("passwd"), img.path().join("etc/passwd"))
            .expect("symlink");
        let root = Root::open(img.path()).expect("root");
        root.mknod("/etc/group", kiln_fs::FileType::Fifo, 0o644, 0, 0)
            .expect("mkfifo");
        assert!(resolve_owner("evil", Some(&root)).is_err());
        assert!(resolve_owner("0:evil", Some(&root)).is_err());
        // The image's own files, reached through its own absolute link.
        fs::create_dir(img.path().join("real")).expect("mkdir");
        fs::write(img.path().join("real/passwd"), "app:x:7:8::/:/bin/sh\n").expect("write");
        fs::remove_file(img.path().join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/real/passwd", img.path().join("etc/passwd")).expect("symlink");
        assert_eq!(
            resolve_owner("app", Some(&root)).expect("found"),
            Owner { uid: 7, gid: 8 }
        );
    }
}
