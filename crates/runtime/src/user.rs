//! Resolving a Docker user string against a container's `/etc/passwd` and
//! `/etc/group`: pure functions over file contents.

use crate::error::Error;

/// A resolved user: ids, supplementary groups and home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    pub(crate) home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members,
        })
    })
}

/// Resolves `spec` (`name`, `uid`, `uid:gid`, `name:group`, `uid:group`,
/// `name:gid`; empty means root) the way Docker does: a name must exist
/// in `passwd`; a numeric uid need not (then gid 0 and home `/`); a group
/// name must exist in `group`. Supplementary groups are the groups that
/// list the user as a member, unless a group is named: then that group
/// alone (Docker: supplementary groups only in the implicit form).
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, Error> {
    let err = |reason: &str| Error::User {
        user: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid: Option<u32> = user_part.parse().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let (uid, mut gid, home, name) = match (&entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_owned(), Some(e.name)),
        (None, Some(uid)) => (uid, 0, "/".to_owned(), None),
        (None, None) => return Err(err("no matching entries in passwd file")),
    };
    if let Some(g) = group_part {
        if g.is_empty() {
            return Err(err("empty group"));
        }
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| err("no matching entries in group file"))?,
        };
    }
    let mut groups = vec![gid];
    if let (Some(name), None) = (name, group_part) {
        for e in group_entries(group) {
            if e.members.contains(&name) && !groups.contains(&e.gid) {
                groups.push(e.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// The highest id Docker accepts (`2^31 - 1`).
const MAX_ID: u32 = i32::MAX as u32;

/// `--group-add` as Docker resolves it: a group name must exist in
/// `group`; a number is taken as it is (up to `2^31 - 1`), listed or not.
pub(crate) fn additional_groups(names: &[String], group: &str) -> Result<Vec<u32>, Error> {
    let mut gids = Vec::new();
    for name in names {
        let err = |reason: &str| Error::Group {
            group: name.clone(),
            reason: reason.to_owned(),
        };
        let gid = match group_entries(group).find(|e| e.name == name.as_str()) {
            Some(e) => e.gid,
            None => match name.parse::<u32>() {
                Ok(n) if n <= MAX_ID => n,
                Ok(_) => return Err(err("a gid must be below 2147483648")),
                Err(_) => return Err(err("no matching entries in group file")),
            },
        };
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(gids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nstaff:x:50:bob, alice\n";

    #[test]
    fn name_resolves_ids_home_and_groups() {
        let u = resolve("alice", PASSWD, GROUP).expect("alice exists");
        assert_eq!(
            u,
            ExecUser {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 50],
                home: "/home/alice".into()
            }
        );
    }

    #[test]
    fn empty_is_root() {
        let u = resolve("", PASSWD, GROUP).expect("root");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn unknown_numeric_uid_is_allowed() {
        let u = resolve("4242", PASSWD, GROUP).expect("numeric");
        assert_eq!(
            u,
            ExecUser {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: "/".into()
            }
        );
        let u = resolve("4242:77", PASSWD, GROUP).expect("numeric pair");
        assert_eq!((u.uid, u.gid), (4242, 77));
    }

    #[test]
    fn name_and_group_name_give_that_group_alone() {
        // Docker (issue #15): a named group replaces the user's memberships.
        let u = resolve("alice:wheel", PASSWD, GROUP).expect("alice:wheel");
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert_eq!(u.groups, vec![10]);
        let u = resolve("1000:77", PASSWD, GROUP).expect("uid:gid");
        assert_eq!((u.uid, u.gid, u.groups), (1000, 77, vec![77]));
        let u = resolve("1000", PASSWD, GROUP).expect("a listed uid");
        assert_eq!(
            u.groups,
            vec![1000, 10, 50],
            "memberships by the uid's name"
        );
    }

    #[test]
    fn group_add_takes_names_and_numbers() {
        let g = |names: &[&str]| {
            additional_groups(
                &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                GROUP,
            )
        };
        assert_eq!(
            g(&["staff", "4242", "wheel", "10"]).expect("resolved"),
            vec![50, 4242, 10]
        );
        assert_eq!(g(&[]).expect("none"), Vec::<u32>::new());
        assert_eq!(
            g(&["nosuch"]).expect_err("unknown").to_string(),
            "unable to find group nosuch: no matching entries in group file"
        );
        assert!(g(&["2147483648"]).is_err());
    }

    #[test]
    fn unknown_names_fail() {
        let e = resolve("mallory", PASSWD, GROUP).expect_err("no mallory");
        assert_eq!(
            e.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        assert!(resolve("alice:nogroup", PASSWD, GROUP).is_err());
    }
}
