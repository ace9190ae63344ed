//! kiln's data model: the types every other kiln crate speaks, defined once.
//!
//! - [`Digest`] (and [`Hasher`]): a `sha256:<hex>` content address.
//! - [`Platform`]: `os/arch[/variant]`, with the one parser
//!   ([`Platform::parse`], Docker's normalisation: `x86_64` is `amd64`,
//!   `aarch64` is `arm64`, `arm` is `arm/v7`, ...) and the one matching rule
//!   ([`Platform::matches`], [`Platform::select`]) used for manifest lists,
//!   `--platform` flags and the builder.
//! - [`Descriptor`]: an OCI content descriptor.
//! - [`ImageConfig`] (the image config blob), [`ContainerConfig`] (its
//!   `config` object), [`Healthcheck`], [`RootFs`], [`History`]: Docker's
//!   JSON shape, deterministic field order and sorted maps, and a catch-all
//!   (`extra`) at every level so fields kiln does not model survive a
//!   read-modify-write.
//! - [`NetworkMode`]: the network of a container or build step.
//! - [`IdMap`] / [`IdRange`]: a user namespace's uid and gid maps.
//!
//! The crate is pure: no IO, no environment (except the compile-time
//! architecture of [`Platform::native`]), no other kiln crate.
//!
//! ```
//! use kiln_model::{ImageConfig, Platform};
//!
//! let p = Platform::parse("linux/aarch64").unwrap();
//! assert_eq!(p.to_string(), "linux/arm64");
//! assert!(p.matches(&Platform::parse("linux/arm64/v8").unwrap()));
//!
//! let json = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=1"],"Future":1},"future":true}"#;
//! let mut cfg = ImageConfig::from_json(json).unwrap();
//! cfg.container_config_mut().env_set("B", "2");
//! let out: serde_json::Value = serde_json::from_slice(&cfg.to_json()).unwrap();
//! assert_eq!(out["future"], true);
//! assert_eq!(out["config"]["Future"], 1);
//! assert_eq!(out["config"]["Env"], serde_json::json!(["A=1", "B=2"]));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod descriptor;
mod digest;
mod idmap;
mod network;
mod platform;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use descriptor::Descriptor;
pub use digest::{Digest, Hasher};
pub use idmap::{IdMap, IdRange};
pub use network::NetworkMode;
pub use platform::Platform;

/// A value of the model that did not parse.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A digest string did not parse.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A platform string did not parse.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A network mode other than `none` or `host`.
    #[error("{}", network::unsupported(.0))]
    InvalidNetworkMode(String),
    /// An image config blob that is not valid JSON of the expected shape.
    #[error("invalid image config: {0}")]
    InvalidConfig(String),
}
