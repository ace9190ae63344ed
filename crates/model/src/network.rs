//! `NetworkMode`: the network a container or a build's RUN step gets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The network of a container or RUN step. kiln makes no bridges, so only
/// Docker's `none` and `host` modes exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace with only `lo`, up (`--network none`, the
    /// default of `kiln run` and `kiln build`).
    #[default]
    None,
    /// Share the host's network namespace (`--network host`).
    Host,
}

impl NetworkMode {
    /// The flag spelling: `none` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkMode {
    type Err = Error;

    /// `host` or `none`; Docker's other modes need a bridge or another
    /// container's namespace, which kiln does not give.
    fn from_str(s: &str) -> Result<NetworkMode, Error> {
        match s {
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => Err(Error::InvalidNetworkMode(other.to_owned())),
        }
    }
}

/// The message of [`Error::InvalidNetworkMode`].
pub(crate) fn unsupported(mode: &str) -> String {
    if mode.starts_with("container:") {
        format!(
            "network mode {mode:?} is not supported: kiln does not join one container's network namespace from another; use --network host or --network none"
        )
    } else {
        format!(
            "network mode {mode:?} is not supported: kiln supports `host` and `none` (no bridge networks)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for m in [NetworkMode::None, NetworkMode::Host] {
            assert_eq!(m.to_string().parse::<NetworkMode>(), Ok(m));
        }
        assert_eq!(NetworkMode::default(), NetworkMode::None);
        let e = "bridge".parse::<NetworkMode>().unwrap_err().to_string();
        assert!(e.contains("\"bridge\" is not supported"), "{e}");
        let e = "container:x"
            .parse::<NetworkMode>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not join"), "{e}");
    }

    #[test]
    fn serde_keeps_variant_names() {
        // Build cache records hold it as the variant name.
        assert_eq!(
            serde_json::to_string(&NetworkMode::Host).unwrap(),
            "\"Host\""
        );
        assert_eq!(
            serde_json::from_str::<NetworkMode>("\"None\"").unwrap(),
            NetworkMode::None
        );
    }
}
