//! Proves the e2e harness with tools independent of kiln (skopeo): the
//! fixture images are where and what the tests expect, and the auth
//! registry really requires its credentials.

use kiln_e2e::{
    auth_busybox_ref, auth_credentials, busybox_ref, debian_ref, host_arch, index_ref, kiln_bin,
    probe_bin, run_ok, skopeo_inspect,
};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "skopeo printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn inspect_ok(reference: &str, extra: &[&str]) -> serde_json::Value {
    let out = skopeo_inspect(reference, extra);
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

#[test]
fn busybox_has_one_layer_and_the_host_architecture() {
    let v = inspect_ok(&busybox_ref(), &["--no-creds"]);
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["Os"], "linux");
    let env = v["Env"].to_string();
    assert!(env.contains("PATH="), "{env}");
}

#[test]
fn index_has_amd64_and_arm64_entries() {
    let v = inspect_ok(&index_ref(), &["--no-creds", "--raw"]);
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let mut platforms: Vec<String> = v["manifests"]
        .as_array()
        .expect("an index has manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let digests: Vec<&str> = v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_ne!(digests[0], digests[1], "each platform has its own manifest");
    // Each platform's manifest is fetchable and names its architecture.
    for arch in ["amd64", "arm64"] {
        let v = inspect_ok(&index_ref(), &["--no-creds", "--override-arch", arch]);
        assert_eq!(v["Architecture"], arch);
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1));
    }
}

#[test]
fn debian_fixture_is_one_layer() {
    let v = inspect_ok(&debian_ref(), &["--no-creds"]);
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["Architecture"], host_arch());
}

#[test]
fn auth_registry_refuses_anonymous_access() {
    let out = skopeo_inspect(&auth_busybox_ref(), &["--no-creds"]);
    assert!(!out.status.success(), "anonymous inspect must fail");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
}

#[test]
fn auth_registry_refuses_a_wrong_password() {
    let (user, _) = auth_credentials();
    let out = skopeo_inspect(&auth_busybox_ref(), &["--creds", &format!("{user}:wrong")]);
    assert!(!out.status.success(), "a wrong password must be refused");
}

#[test]
fn auth_registry_accepts_the_credentials() {
    let (user, pass) = auth_credentials();
    let v = inspect_ok(&auth_busybox_ref(), &["--creds", &format!("{user}:{pass}")]);
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn binaries_exist_and_the_probe_is_static() {
    assert!(kiln_bin().is_file(), "{}", kiln_bin().display());
    let probe = probe_bin();
    assert!(probe.is_file(), "{}", probe.display());
    // A static executable has no PT_INTERP program header (no dynamic
    // loader). Read the ELF64 little-endian program headers.
    let bytes = std::fs::read(&probe).expect("read the probe");
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(bytes[4], 2, "ELF64");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    assert!(phnum > 0);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        assert_ne!(p_type, PT_INTERP, "the probe must be statically linked");
    }
    run_ok(&mut std::process::Command::new(&probe));
}

#[test]
fn sandboxes_are_private_and_removed() {
    let a = kiln_e2e::Sandbox::new();
    let b = kiln_e2e::Sandbox::new();
    assert_ne!(a.root(), b.root());
    assert!(a.root().is_dir() && a.home().is_dir() && a.work().is_dir());
    let path = a.path().to_path_buf();
    drop(a);
    assert!(!path.exists());
    let cmd = b.kiln(["--help"]);
    let envs: Vec<_> = cmd.get_envs().collect();
    assert!(
        envs.iter()
            .any(|(k, v)| *k == "KILN_ROOT" && *v == Some(b.root().as_os_str()))
    );
}

#[test]
fn tcp_exchange_talks_to_a_loopback_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, "PING\r\n");
        (&s).write_all(b"+PONG\r\n").unwrap();
    });
    let reply =
        kiln_e2e::tcp_exchange(port, b"PING\r\n", std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(reply, b"+PONG\r\n");
    server.join().unwrap();
    assert_ne!(kiln_e2e::free_port(), 0);
}
