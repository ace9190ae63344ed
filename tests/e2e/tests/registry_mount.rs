//! `kiln push` reuses what the registry already has (issue #13), against
//! Debian's real `docker-registry`: a blob in the target repository is
//! skipped (`Layer already exists`), one in another repository of the same
//! registry is mounted (`Mounted from REPO`) instead of uploaded. The proof
//! that nothing was uploaded comes from outside kiln: every byte kiln sends
//! goes through a counting TCP relay in front of the registry, and skopeo
//! reads the pushed images back.
//!
//! Also the CLI's `--registry-timeout` (issue #11 point 7): a registry that
//! never answers ends a pull after the timeout, with an error naming the
//! registry and the manifest.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_e2e::{
    Sandbox, auth_busybox_ref, auth_credentials, auth_registry, busybox_ref, free_port, registry,
    skopeo_inspect,
};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TCP relay on 127.0.0.1 in front of `upstream` that records what
/// clients send (request lines and bodies, as bytes).
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    bytes: Arc<AtomicU64>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, b) = (sent.clone(), bytes.clone());
        // Lives until the test process ends; serves only this test's kiln.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (s, b) = (s.clone(), b.clone());
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("clone client"),
                    server.try_clone().expect("clone server"),
                );
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                b.fetch_add(n as u64, Ordering::Relaxed);
                                s.lock().expect("relay log").extend_from_slice(&buf[..n]);
                                if s_write.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        Relay { port, sent, bytes }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Forgets what was sent so far.
    fn reset(&self) {
        self.sent.lock().expect("relay log").clear();
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// How many times `needle` appears in what clients sent.
    fn count(&self, needle: &str) -> usize {
        let sent = self.sent.lock().expect("relay log");
        let n = needle.as_bytes();
        sent.windows(n.len()).filter(|w| *w == n).count()
    }
}

/// The layer digests of `reference` as skopeo (not kiln) reads them.
fn layers(reference: &str, creds: &[&str]) -> Vec<String> {
    let out = skopeo_inspect(reference, creds);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    v["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().expect("a digest").to_string())
        .collect()
}

/// Lines of a push naming `what` (`Mounted from REPO`, `Pushed`, ...).
fn lines_with(out: &str, what: &str) -> usize {
    out.lines().filter(|l| l.ends_with(what)).count()
}

#[test]
fn registry_mount_push_mounts_from_another_repo_and_skips_existing_blobs() {
    let sb = Sandbox::new();
    sb.kiln_ok(["pull", "-q", &busybox_ref()]);
    let relay = Relay::start(registry());
    let tag = free_port();
    let (repo_a, repo_b) = (format!("e2e-mount-a-{tag}"), format!("e2e-mount-b-{tag}"));
    let a = format!("{}/{repo_a}:1", relay.host());
    let b = format!("{}/{repo_b}:1", relay.host());
    sb.kiln_ok(["tag", &busybox_ref(), &a]);
    sb.kiln_ok(["tag", &busybox_ref(), &b]);

    // First push to a: the layer goes up (the relay is a registry kiln has
    // never seen, so nothing can be mounted).
    let out = sb.kiln_ok(["push", &a]);
    assert_eq!(lines_with(&out, ": Pushed"), 1, "{out}");
    let uploaded = relay.bytes.load(Ordering::Relaxed);
    let layer_size: u64 = {
        let out = skopeo_inspect(
            &format!("{}/{repo_a}:1", registry()),
            &["--no-creds", "--raw"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
        v["layers"][0]["size"].as_u64().expect("layer size")
    };
    assert!(
        uploaded > layer_size,
        "the first push sent {uploaded} bytes for a {layer_size}-byte layer"
    );

    // Push to b: the layer and the config are mounted from a; no upload
    // (PATCH or PUT of a blob) reaches the registry, and kiln sends a few
    // KB, not the layer.
    relay.reset();
    let out = sb.kiln_ok(["push", &b]);
    assert_eq!(
        lines_with(&out, &format!(": Mounted from {repo_a}")),
        1,
        "{out}"
    );
    assert_eq!(lines_with(&out, ": Pushed"), 0, "{out}");
    assert_eq!(relay.count("PATCH /v2/"), 0);
    assert_eq!(
        relay.count(&format!("PUT /v2/{repo_b}/blobs/uploads/")),
        0,
        "no blob upload to b"
    );
    assert_eq!(
        relay.count(&format!("POST /v2/{repo_b}/blobs/uploads/?mount=sha256%3A")),
        2,
        "a mount for the layer and the config"
    );
    let sent = relay.bytes.load(Ordering::Relaxed);
    assert!(
        sent < 64 * 1024 && sent * 10 < layer_size,
        "the mounting push sent {sent} bytes ({layer_size}-byte layer)"
    );
    // The registry has the image in b, same layers (skopeo reads it).
    assert_eq!(
        layers(&format!("{}/{repo_b}:1", registry()), &["--no-creds"]),
        layers(&format!("{}/{repo_a}:1", registry()), &["--no-creds"])
    );

    // Pushing b again: every blob is there already.
    relay.reset();
    let out = sb.kiln_ok(["push", &b]);
    assert_eq!(lines_with(&out, ": Layer already exists"), 1, "{out}");
    assert_eq!(relay.count("POST /v2/"), 0, "no upload or mount started");
}

#[test]
fn registry_mount_from_the_pulled_repository_on_the_htpasswd_registry() {
    let sb = Sandbox::new();
    let (user, pass) = auth_credentials();
    let mut child = sb
        .kiln(["login", "-u", &user, "--password-stdin", &auth_registry()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pass}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("kiln login");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Pulled from busybox on the auth registry: a push to another of its
    // repositories mounts from busybox.
    sb.kiln_ok(["pull", "-q", &auth_busybox_ref()]);
    let repo = format!("e2e-mount-auth-{}", free_port());
    let target = format!("{}/{repo}:1", auth_registry());
    sb.kiln_ok(["tag", &auth_busybox_ref(), &target]);
    let out = sb.kiln_ok(["push", &target]);
    assert_eq!(lines_with(&out, ": Mounted from busybox"), 1, "{out}");
    assert_eq!(lines_with(&out, ": Pushed"), 0, "{out}");
    let creds = format!("{user}:{pass}");
    assert_eq!(
        layers(&target, &["--creds", &creds]),
        layers(&auth_busybox_ref(), &["--creds", &creds])
    );
    let out = sb.kiln_ok(["push", &target]);
    assert_eq!(lines_with(&out, ": Layer already exists"), 1, "{out}");
}

#[test]
fn registry_mount_suite_registry_timeout_ends_a_pull_from_a_silent_registry() {
    // Accepts connections and reads requests, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            held.push(conn);
        }
    });
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let out = sb
        .kiln([
            "--registry-timeout",
            "2",
            "pull",
            &format!("127.0.0.1:{port}/silent:1"),
        ])
        .output()
        .expect("run kiln pull");
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry 127.0.0.1:{port} timed out on manifest 127.0.0.1:{port}/silent:1: no answer for 2 s"
        )),
        "{stderr}"
    );
    assert!(elapsed < std::time::Duration::from_secs(15), "{elapsed:?}");
}

/// `--cache-to` reuses what the registry has, as `kiln push` does (issue
/// #13): exporting the same steps to a second repository of the registry
/// mounts every blob from the first one; nothing is uploaded.
#[test]
fn registry_mount_cache_export_mounts_from_the_first_export() {
    let sb = Sandbox::new();
    let relay = Relay::start(registry());
    let tag = free_port();
    let ctx = sb.work().join("ctx");
    std::fs::create_dir_all(&ctx).expect("context");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nRUN echo cached > /x\n", busybox_ref()),
    )
    .expect("Dockerfile");
    let export = |repo: &str| {
        let to = format!("type=registry,ref={}/{repo}:c,mode=max", relay.host());
        sb.kiln_ok(["build", "-q", "--cache-to", &to, &ctx.to_string_lossy()]);
    };
    let (repo_a, repo_b) = (format!("e2e-cache-a-{tag}"), format!("e2e-cache-b-{tag}"));
    export(&repo_a);
    assert!(
        relay.count(&format!("/v2/{repo_a}/blobs/uploads/")) > 0,
        "the first export uploads"
    );
    relay.reset();
    export(&repo_b);
    assert_eq!(relay.count("PATCH /v2/"), 0, "no chunk uploaded");
    assert_eq!(
        relay.count(&format!("PUT /v2/{repo_b}/blobs/uploads/")),
        0,
        "no blob upload to b"
    );
    assert!(
        relay.count(&format!("POST /v2/{repo_b}/blobs/uploads/?mount=sha256%3A")) >= 2,
        "the layers and the config are mounted from a"
    );
}
