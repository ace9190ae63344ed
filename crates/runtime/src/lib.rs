//! Runs an OCI runtime bundle: namespaces, pivot_root, /proc and /dev, caps, seccomp, cgroups.
//!
//! kiln-runtime takes an oci-spec runtime [`Spec`](oci_spec::runtime::Spec)
//! plus a description of the root filesystem's mounts ([`RootfsMount`]) and
//! the standard streams, and runs it the way runc runs a Docker container:
//! new mount, PID, UTS, IPC and cgroup namespaces (and a network namespace
//! with only `lo` for `--network none`), `pivot_root` into the rootfs, a
//! fresh `/proc`, a tmpfs `/dev` with the standard devices, Docker's masked
//! and read-only paths, Docker's capabilities and seccomp profile, rlimits,
//! a cgroup with the spec's limits, and the user resolved against the
//! container's own `/etc/passwd`. It knows nothing of images. With
//! [`DockerSpecOptions::userns`] the container gets a user namespace
//! ([`userns`]: `--userns` remapping for root, rootless maps otherwise);
//! detached containers log JSON lines tagged by stream ([`logfile`]).
//!
//! The container's processes are re-executions of the calling program
//! ([`RuntimeConfig::init_binary`]): its `main` must call [`init_entry`]
//! first thing. [`docker_spec`] builds Docker's default spec from the values
//! a CLI has.
//!
//! ```no_run
//! use kiln_runtime::{LaunchConfig, DockerSpecOptions, RootfsMount, Runtime, StdioConfig, docker_spec};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     kiln_runtime::init_entry(); // never returns in the container's processes
//!     let spec = docker_spec(&DockerSpecOptions { args: vec!["true".into()], ..Default::default() })?;
//!     let config = LaunchConfig {
//!         id: "demo".parse()?,
//!         spec,
//!         rootfs: vec![RootfsMount::bind("/srv/busybox-root")],
//!         state_dir: "/run/kiln/demo".into(),
//!         user: None,
//!         init: false,
//!     };
//!     let status = Runtime::default().run(&config, StdioConfig::inherit())?;
//!     std::process::exit(status.code());
//! }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cgroups;
mod config;
mod devices;
mod error;
mod extras;
mod init;
mod launch;
pub mod logfile;
mod rootfs;
pub mod seccomp;
mod spec;
mod state;
#[cfg(target_arch = "x86_64")]
mod syscalls_x86_64;
mod user;
pub mod userns;
mod wire;

pub use config::{
    ContainerId, DetachOptions, ExitStatus, LaunchConfig, RootfsMount, RuntimeConfig, Stdio,
    StdioConfig,
};
pub use error::{Error, Result};
pub use extras::{DeviceMapping, GROUP_ADD_ANNOTATION};
pub use init::init_entry;
pub use launch::{Foreground, Runtime};
pub use oci_spec;
pub use spec::{
    DEFAULT_CAPABILITIES, DEFAULT_PATH, DEFAULT_SHM_SIZE, DockerSpecOptions, EtcFiles,
    MASKED_PATHS, READONLY_PATHS, Resources, capabilities, check_sysctl, docker_spec,
    write_etc_files,
};
pub use state::{ContainerState, Status};

/// The top-level paths where [`docker_spec`] mounts a container's `/proc`,
/// `/dev` and `/sys` and its `/etc` files (every other mount of the spec is
/// below one of them). A commit or a build step removes the stubs made for
/// them, as Docker's never-committed init layer holds them.
pub const MOUNT_POINTS: &[&str] = &[
    "/proc",
    "/dev",
    "/sys",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
];
