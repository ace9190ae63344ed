//! `IdMap` / `IdRange`: the uid and gid maps of a user namespace, as
//! `/proc/PID/uid_map` holds them.

use serde::{Deserialize, Serialize};

/// One range of a uid or gid map: `size` ids from `container_id` inside the
/// namespace are `host_id..` on the host (the fields of a
/// `/proc/PID/uid_map` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// A user namespace's uid and gid maps: the runtime writes them for a
/// container (`--userns`, rootless), the layer differ uses them to record
/// the ids the container saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMap {
    /// uid map.
    pub uids: Vec<IdRange>,
    /// gid map.
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// Root's `--userns`: container `0..size` to host `start..start+size`
    /// for both uids and gids.
    pub fn remap(start_uid: u32, start_gid: u32, size: u32) -> IdMap {
        IdMap {
            uids: vec![IdRange {
                container_id: 0,
                host_id: start_uid,
                size,
            }],
            gids: vec![IdRange {
                container_id: 0,
                host_id: start_gid,
                size,
            }],
        }
    }

    /// Rootless: container root is the caller (`uid`, `gid`); with
    /// subordinate ranges (`(start, count)`), container ids `1..` follow
    /// from them.
    pub fn rootless(
        uid: u32,
        gid: u32,
        sub_uids: Option<(u32, u32)>,
        sub_gids: Option<(u32, u32)>,
    ) -> IdMap {
        let one = |host_id| IdRange {
            container_id: 0,
            host_id,
            size: 1,
        };
        let mut m = IdMap {
            uids: vec![one(uid)],
            gids: vec![one(gid)],
        };
        if let (Some((su, nu)), Some((sg, ng))) = (sub_uids, sub_gids)
            && nu > 0
            && ng > 0
        {
            m.uids.push(IdRange {
                container_id: 1,
                host_id: su,
                size: nu,
            });
            m.gids.push(IdRange {
                container_id: 1,
                host_id: sg,
                size: ng,
            });
        }
        m
    }

    /// The host uid that container uid `id` is, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uids, id)
    }

    /// The host gid that container gid `id` is, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gids, id)
    }

    /// The container uid of host uid `host`: `host - host_id + container_id`
    /// of the first range holding it; a host id outside every range is
    /// returned unchanged.
    ///
    /// Unchanged rather than 65534 (`nobody`, what the container saw):
    /// kiln does not chown image files for `--userns`, so an unmapped id in
    /// a container's tree is the image's own id, and overlayfs copies such
    /// files and directories up whenever the container touches something
    /// below them (creating `/tmp/x` copies up `/tmp`, owned by host 0).
    /// Writing them as 65534 would make the committed image's `/tmp` belong
    /// to `nobody`; passing them through keeps the image's owners.
    pub fn container_uid(&self, host: u32) -> u32 {
        to_container(&self.uids, host)
    }

    /// The container gid of host gid `host` (as [`IdMap::container_uid`]).
    pub fn container_gid(&self, host: u32) -> u32 {
        to_container(&self.gids, host)
    }
}

fn to_host(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        (id >= r.container_id && id - r.container_id < r.size)
            .then(|| r.host_id + (id - r.container_id))
    })
}

fn to_container(ranges: &[IdRange], host: u32) -> u32 {
    ranges
        .iter()
        .find(|r| host >= r.host_id && u64::from(host) < u64::from(r.host_id) + u64::from(r.size))
        .map_or(host, |r| host - r.host_id + r.container_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_both_ways() {
        let m = IdMap::remap(100_000, 200_000, 65_536);
        assert_eq!(m.host_uid(0), Some(100_000));
        assert_eq!(m.host_gid(5), Some(200_005));
        assert_eq!(m.host_uid(65_536), None);
        assert_eq!(m.container_uid(100_010), 10);
        assert_eq!(m.container_gid(200_000), 0);
        // Outside every range: unchanged.
        assert_eq!(m.container_uid(0), 0);
        assert_eq!(m.container_uid(u32::MAX), u32::MAX);
    }

    #[test]
    fn rootless_with_and_without_subordinate_ranges() {
        let m = IdMap::rootless(1000, 1000, None, Some((100_000, 65_536)));
        assert_eq!(m.uids.len(), 1);
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), None);
        let m = IdMap::rootless(1000, 1001, Some((100_000, 10)), Some((200_000, 10)));
        assert_eq!(m.host_uid(1), Some(100_000));
        assert_eq!(m.host_gid(0), Some(1001));
        assert_eq!(m.host_gid(10), Some(200_009));
        assert_eq!(m.host_gid(11), None);
        // The layer differ's direction: host ids back to the container's.
        let m = IdMap::rootless(1000, 100, Some((100_000, 65_536)), Some((200_000, 10)));
        assert_eq!(m.container_uid(1000), 0);
        assert_eq!(m.container_uid(100_001), 2);
        assert_eq!(m.container_gid(100), 0);
        assert_eq!(m.container_gid(200_009), 10);
        assert_eq!(m.container_gid(200_010), 200_010);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<IdMap>(&json).unwrap(), m);
    }
}
