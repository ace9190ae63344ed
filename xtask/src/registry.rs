//! Starts Debian's `docker-registry` on 127.0.0.1 with a free port and a
//! temporary storage directory, optionally behind htpasswd basic auth.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs::Guard;
use crate::util;

/// A running registry.
pub(crate) struct Registry {
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
}

/// Credentials for the auth registry.
pub(crate) struct Creds {
    pub(crate) user: String,
    pub(crate) pass: String,
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Starts a registry whose files live in `dir`; with `creds`, it requires
/// basic auth. The guard stops it.
pub(crate) fn start(
    guard: &mut Guard,
    dir: &Path,
    name: &str,
    creds: Option<&Creds>,
) -> Result<Registry> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        data.display()
    );
    if let Some(c) = creds {
        let line = util::output(Command::new("htpasswd").args(["-Bbn", &c.user, &c.pass]))?;
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, line.trim_end().to_owned() + "\n")?;
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: kiln-e2e\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("registry.log"))?;
    // With setpriv (util-linux), the registry also dies if xtask is killed
    // outright, when no destructor runs.
    let mut cmd = if util::have("setpriv") {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "/usr/bin/docker-registry"]);
        c
    } else {
        Command::new("/usr/bin/docker-registry")
    };
    let child = cmd
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start /usr/bin/docker-registry")?;
    eprintln!(
        "started {name} on {addr} (pid {}, files in {})",
        child.id(),
        dir.display()
    );
    guard.adopt(name, child);
    wait_ready(guard, &addr, dir)
        .with_context(|| format!("{name} registry on {addr} did not come up"))?;
    Ok(Registry { addr })
}

/// The HTTP status of `GET /v2/`, or None when nothing answers.
pub(crate) fn v2_status(addr: &str) -> Option<u16> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn wait_ready(guard: &mut Guard, addr: &str, dir: &Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Err(e) = guard.check_alive() {
            let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            bail!("{e}; its log:\n{log}");
        }
        // 200 for the open registry, 401 for the one behind auth.
        if let Some(200 | 401) = v2_status(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    bail!("no answer on /v2/ after 20 s; its log:\n{log}")
}
