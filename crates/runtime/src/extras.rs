//! Docker's `run` options beyond its defaults, applied to the spec
//! [`crate::docker_spec`] builds: `--privileged`, `--device`,
//! `--group-add`, `--oom-kill-disable`, `--cpuset-cpus`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::spec::DockerSpecOptions;

/// The spec annotation carrying `--group-add`'s groups (a JSON array of
/// names or numbers), resolved by the container's init against the
/// container's own `/etc/group`, as Docker resolves them.
pub const GROUP_ADD_ANNOTATION: &str = "org.kiln.group-add";

/// `--device HOST[:CONTAINER[:PERMISSIONS]]`: a host device node (or every
/// node below a host directory) made in the container at `container_path`,
/// and allowed in its device cgroup with `permissions` (`rwm` letters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The node (or directory of nodes) on the host; symlinks are followed.
    pub host_path: PathBuf,
    /// Where it appears in the container (the host path when empty).
    pub container_path: PathBuf,
    /// Cgroup permissions: any of `r`, `w`, `m` (Docker's default `rwm`).
    pub permissions: String,
}

impl DeviceMapping {
    /// Parses Docker's `--device` value.
    pub fn parse(value: &str) -> Result<DeviceMapping> {
        let bad = |why: &str| invalid(format!("invalid device {value:?}: {why}"));
        let parts: Vec<&str> = value.split(':').collect();
        let is_perm = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perm(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(bad("too many colons")),
        };
        if !is_perm(perms) {
            return Err(bad("permissions are any of r, w and m"));
        }
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(bad("paths must be absolute"));
        }
        Ok(DeviceMapping {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        })
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidSpec {
        id: String::new(),
        reason,
    }
}

/// One host device node as the spec's `linux.devices` entry.
fn device_entry(node: &Path, container_path: &Path) -> Result<Option<Value>> {
    let md = fs::metadata(node).map_err(|e| Error::io("stat device", node, e))?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Ok(None);
    };
    let rdev = md.rdev();
    Ok(Some(json!({
        "path": container_path,
        "type": kind,
        "major": libc::major(rdev),
        "minor": libc::minor(rdev),
        "fileMode": md.mode() & 0o7777,
        "uid": md.uid(),
        "gid": md.gid(),
    })))
}

/// Directories of `/dev` that hold no device of the host's own (runc's
/// list): they are the container's or not devices at all.
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node below `dir`, as `(host node, path in the container)`.
fn nodes_below(dir: &Path, container_dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list devices", dir, e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Ok(ft) = e.file_type() else { continue };
        let (host, inside) = (e.path(), container_dir.join(&name));
        if ft.is_dir() {
            if dir == Path::new("/dev") && SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            nodes_below(&host, &inside, out)?;
        } else if (ft.is_char_device() || ft.is_block_device()) && name != "console" {
            out.push((host, inside));
        }
    }
    Ok(())
}

/// The spec entries and cgroup rules of `--device` mappings.
fn device_mappings(list: &[DeviceMapping]) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut devices, mut rules) = (Vec::new(), Vec::new());
    for d in list {
        let host = fs::canonicalize(&d.host_path)
            .map_err(|e| Error::io("resolve device", &d.host_path, e))?;
        let md = fs::metadata(&host).map_err(|e| Error::io("stat device", &host, e))?;
        let mut nodes = Vec::new();
        if md.is_dir() {
            nodes_below(&host, &d.container_path, &mut nodes)?;
        } else {
            nodes.push((host.clone(), d.container_path.clone()));
        }
        let mut any = false;
        for (node, inside) in nodes {
            if let Some(entry) = device_entry(&node, &inside)? {
                rules.push(json!({
                    "allow": true, "type": entry["type"], "major": entry["major"],
                    "minor": entry["minor"], "access": d.permissions,
                }));
                devices.push(entry);
                any = true;
            }
        }
        if !any {
            return Err(invalid(format!(
                "--device {}: not a device node (nor a directory holding one)",
                d.host_path.display()
            )));
        }
    }
    Ok((devices, rules))
}

/// `--privileged`: every capability (of the caller's bounding set), no seccomp filter, no masked or
/// read-only paths, `/sys` and the cgroup filesystems writable, every
/// device allowed and the host's device nodes in `/dev`.
fn privileged(spec: &mut Value) -> Result<()> {
    // Every capability the caller may give: its bounding set (a sandboxed
    // host may lack some of the kernel's; asking for them fails capset).
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
    let mut all: Vec<String> = bounding.into_iter().map(|c| c.to_string()).collect();
    all.sort();
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = json!(all);
    }
    if let Some(linux) = spec["linux"].as_object_mut() {
        linux.remove("seccomp");
        linux.remove("maskedPaths");
        linux.remove("readonlyPaths");
    }
    for m in spec["mounts"].as_array_mut().into_iter().flatten() {
        if matches!(m["type"].as_str(), Some("sysfs" | "cgroup" | "cgroup2"))
            && let Some(opts) = m["options"].as_array_mut()
        {
            opts.retain(|o| o != "ro");
        }
    }
    let mut nodes = Vec::new();
    nodes_below(Path::new("/dev"), Path::new("/dev"), &mut nodes)?;
    let mut devices = Vec::new();
    for (node, inside) in nodes {
        // A node gone between listing and stat is not an error.
        if let Ok(Some(entry)) = device_entry(&node, &inside) {
            devices.push(entry);
        }
    }
    push_all(spec, "devices", devices);
    push_all(
        spec,
        "cgroup_rules",
        vec![json!({"allow": true, "access": "rwm"})],
    );
    Ok(())
}

/// Appends to `linux.devices` (`what` = `devices`) or to
/// `linux.resources.devices` (`what` = `cgroup_rules`).
fn push_all(spec: &mut Value, what: &str, items: Vec<Value>) {
    let list = if what == "devices" {
        &mut spec["linux"]["devices"]
    } else {
        &mut spec["linux"]["resources"]["devices"]
    };
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut() {
        a.extend(items);
    }
}

/// Applies the options of `o` beyond Docker's defaults to the spec
/// [`crate::docker_spec`] built (as JSON, before it is typed).
pub(crate) fn apply(spec: &mut Value, o: &DockerSpecOptions) -> Result<()> {
    if o.privileged {
        privileged(spec)?;
    }
    let (devices, rules) = device_mappings(&o.devices)?;
    push_all(spec, "devices", devices);
    push_all(spec, "cgroup_rules", rules);
    if !o.group_add.is_empty() {
        if o.group_add.iter().any(|g| g.is_empty()) {
            return Err(invalid("--group-add: an empty group".into()));
        }
        let list = serde_json::to_string(&o.group_add).map_err(|e| invalid(e.to_string()))?;
        spec["annotations"] = json!({ GROUP_ADD_ANNOTATION: list });
    }
    if o.oom_kill_disable {
        spec["linux"]["resources"]["memory"]["disableOOMKiller"] = json!(true);
    }
    if let Some(cpus) = &o.cpuset_cpus {
        let ok = !cpus.is_empty()
            && cpus.split(',').all(|r| {
                r.split('-')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !ok {
            return Err(invalid(format!(
                "invalid value {cpus:?} for --cpuset-cpus: a list of CPUs and ranges like 0-3,5"
            )));
        }
        spec["linux"]["resources"]["cpu"]["cpus"] = json!(cpus);
    }
    Ok(())
}

/// `--group-add`'s groups from a spec's annotations.
pub(crate) fn group_add_of(spec: &oci_spec::runtime::Spec) -> Vec<String> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(GROUP_ADD_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::docker_spec;

    fn opts() -> DockerSpecOptions {
        DockerSpecOptions {
            args: vec!["true".into()],
            ..Default::default()
        }
    }

    #[test]
    fn device_values_parse_as_docker() {
        let d = DeviceMapping::parse("/dev/sda").expect("plain");
        assert_eq!(
            (
                d.host_path.as_path(),
                d.container_path.as_path(),
                d.permissions.as_str()
            ),
            (Path::new("/dev/sda"), Path::new("/dev/sda"), "rwm")
        );
        let d = DeviceMapping::parse("/dev/sda:r").expect("permissions");
        assert_eq!(
            (d.container_path.as_path(), d.permissions.as_str()),
            (Path::new("/dev/sda"), "r")
        );
        let d = DeviceMapping::parse("/dev/sda:/dev/xvda").expect("renamed");
        assert_eq!(d.container_path, Path::new("/dev/xvda"));
        let d = DeviceMapping::parse("/dev/sda:/dev/xvda:rw").expect("all three");
        assert_eq!(d.permissions, "rw");
        for bad in ["sda", "/dev/sda:/x:rwx", "/dev/sda:/x:r:w", "/dev/sda:xvda"] {
            assert!(DeviceMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_device_becomes_a_node_and_a_cgroup_rule() {
        let mut o = opts();
        o.devices = vec![DeviceMapping::parse("/dev/null:/dev/mynull:r").expect("parse")];
        let spec = docker_spec(&o).expect("spec");
        let linux = spec.linux().as_ref().expect("linux");
        let dev = &linux.devices().as_ref().expect("devices")[0];
        assert_eq!(dev.path(), Path::new("/dev/mynull"));
        assert_eq!((dev.major(), dev.minor()), (1, 3));
        let rules = linux
            .resources()
            .as_ref()
            .expect("resources")
            .devices()
            .as_ref()
            .expect("rules");
        let last = rules.last().expect("a rule");
        assert!(last.allow());
        assert_eq!(
            (last.major(), last.minor(), last.access().as_deref()),
            (Some(1), Some(3), Some("r"))
        );
        let rules = crate::devices::effective_rules(linux.resources().as_ref());
        assert!(
            rules
                .last()
                .is_some_and(|r| r.allow && r.major == Some(1) && r.access == crate::devices::READ)
        );

        o.devices = vec![DeviceMapping::parse("/etc/hostname").expect("parse")];
        let err = docker_spec(&o).expect_err("not a device");
        assert!(err.to_string().contains("not a device node"), "{err}");
    }

    #[test]
    fn privileged_lifts_the_defaults() {
        let mut o = opts();
        o.privileged = true;
        let spec = docker_spec(&o).expect("spec");
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .expect("caps");
        let bounding = caps::read(None, caps::CapSet::Bounding).expect("bounding set");
        assert_eq!(
            caps.bounding().as_ref().map(|b| b.len()),
            Some(bounding.len()),
            "the caller's whole bounding set"
        );
        let linux = spec.linux().as_ref().expect("linux");
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
        let sys = spec
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new("/sys"))
            .expect("/sys");
        assert!(
            !sys.options().iter().flatten().any(|o| o == "ro"),
            "{sys:?}"
        );
        let devices = linux.devices().as_ref().expect("host devices");
        assert!(devices.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!devices.iter().any(|d| d.path().starts_with("/dev/pts")));
        let rules = crate::devices::effective_rules(linux.resources().as_ref());
        assert_eq!(
            crate::devices::program(&rules).len(),
            8,
            "allow-all: one unconditional block"
        );
    }

    #[test]
    fn group_add_oom_and_cpuset_reach_the_spec() {
        let mut o = opts();
        o.group_add = vec!["audio".into(), "4242".into()];
        o.oom_kill_disable = true;
        o.cpuset_cpus = Some("0-1,3".into());
        let spec = docker_spec(&o).expect("spec");
        assert_eq!(
            group_add_of(&spec),
            vec!["audio".to_string(), "4242".to_string()]
        );
        let r = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .expect("resources");
        assert_eq!(
            r.memory().as_ref().and_then(|m| m.disable_oom_killer()),
            Some(true)
        );
        assert_eq!(
            r.cpu().as_ref().and_then(|c| c.cpus().clone()).as_deref(),
            Some("0-1,3")
        );
        for bad in ["", "a", "0-", "1,,2"] {
            o.cpuset_cpus = Some(bad.into());
            assert!(docker_spec(&o).is_err(), "{bad:?}");
        }
        o.cpuset_cpus = None;
        o.group_add = vec![String::new()];
        assert!(docker_spec(&o).is_err());
        assert!(group_add_of(&docker_spec(&opts()).expect("spec")).is_empty());
    }
}
