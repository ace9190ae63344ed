//! Tests against real `docker-registry` instances (Debian's package), one
//! open and one behind htpasswd basic auth, each started by the test on
//! 127.0.0.1 with a free port and a temporary storage directory. Needs the
//! `docker-registry` and `htpasswd` binaries; run as root with
//! `--features privileged-tests`.

#![cfg(feature = "privileged-tests")]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_content::{ImageRecord, Reference, Store};
use kiln_model::{Digest, Platform};
use kiln_registry::{Error, NoProgress, OCI_MANIFEST, Registry, RegistryConfig};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

struct RealRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_registry(htpasswd: Option<(&str, &str)>) -> RealRegistry {
    assert!(
        Path::new(REGISTRY_BIN).exists(),
        "{REGISTRY_BIN} missing: apt-get install docker-registry"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    if let Some((user, pass)) = htpasswd {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, pass])
            .output()
            .expect("htpasswd (apache2-utils) is needed");
        assert!(out.status.success());
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, &out.stdout).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
            file.display()
        ));
    }
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = format!("127.0.0.1:{port}");
    let reg = RealRegistry {
        child,
        host: host.clone(),
        _dir: dir,
    };
    for _ in 0..200 {
        if TcpStream::connect(&host).is_ok() {
            return reg;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not start on {host}");
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    (d, s)
}

/// Assembles a small image in `s`: a config, a 5 MiB layer and a tiny one.
fn assemble(s: &Store) -> ImageRecord {
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let small = b"tiny layer".to_vec();
    let layers = [big, small];
    let ld: Vec<Digest> = layers.iter().map(|l| s.write_blob(l).unwrap()).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"2024-05-06T07:08:09Z","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        ld[0], ld[1]
    );
    let cd = s.write_blob(config.as_bytes()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        ld.iter()
            .zip(&layers)
            .map(|(d, l)| format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#,
                l.len()
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let md = s.write_blob(manifest.as_bytes()).unwrap();
    let mut rec = ImageRecord::new(cd, md, OCI_MANIFEST);
    rec.repo_tags.push("assembled:latest".into());
    s.put_image(&rec).unwrap();
    rec
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn with_config(path: PathBuf) -> Registry {
    Registry::new(RegistryConfig {
        docker_config: Some(path),
        ..RegistryConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_back_from_a_real_registry() {
    let real = start_registry(None);
    let (_t, s) = store();
    let rec = assemble(&s);
    let reference: Reference = format!("{}/kiln/assembled:1", real.host).parse().unwrap();
    let registry = Registry::new(RegistryConfig::default());

    let digest = registry
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap();
    assert_eq!(digest, rec.manifest_digest);
    // Pushing again finds every blob there.
    registry
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap();

    let (_t2, s2) = store();
    let pulled = registry
        .pull(&reference, &amd64(), &s2, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.id, rec.id);
    assert_eq!(pulled.manifest_digest, rec.manifest_digest);
    assert_eq!(pulled.created.as_deref(), Some("2024-05-06T07:08:09Z"));
    assert_eq!(
        pulled.repo_tags,
        vec![format!("{}/kiln/assembled:1", real.host)]
    );
    assert_eq!(
        pulled.repo_digests,
        vec![format!(
            "{}/kiln/assembled@{}",
            real.host, rec.manifest_digest
        )]
    );
    for (d, size) in s.list_blobs().unwrap() {
        assert_eq!(s2.blob_size(&d).unwrap(), size, "{d}");
        assert_eq!(s2.read_blob(&d).unwrap(), s.read_blob(&d).unwrap());
    }

    // By digest too.
    let by_digest: Reference = format!("{}/kiln/assembled@{}", real.host, digest)
        .parse()
        .unwrap();
    let res = registry.resolve(&by_digest, &amd64()).await.unwrap();
    assert_eq!(res.digest, digest);

    let missing: Reference = format!("{}/kiln/assembled:nope", real.host)
        .parse()
        .unwrap();
    let e = registry
        .pull(&missing, &amd64(), &s2, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("image not found: {}/kiln/assembled:nope", real.host)
    );
    let e = registry
        .pull(
            &format!("{}/kiln/never", real.host).parse().unwrap(),
            &amd64(),
            &s2,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_needs_login() {
    let real = start_registry(Some(("kiln", "s3cret")));
    let (_t, s) = store();
    let rec = assemble(&s);
    let reference: Reference = format!("{}/private/app:v1", real.host).parse().unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join(".docker/config.json");

    let anonymous = with_config(cfg.clone());
    let e = anonymous
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRequired { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!("kiln login {}", real.host)),
        "{e}"
    );

    let e = anonymous
        .login(&real.host, "kiln", "wrong", &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
    assert!(!cfg.exists());

    anonymous
        .login(&real.host, "kiln", "s3cret", &cfg)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(&real.host), "{text}");

    let authed = with_config(cfg.clone());
    authed
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap();
    let (_t2, s2) = store();
    let pulled = authed
        .pull(&reference, &amd64(), &s2, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.id, rec.id);

    // Without credentials the pull is refused with a hint to log in.
    let (_t3, s3) = store();
    let e = Registry::new(RegistryConfig::default())
        .pull(&reference, &amd64(), &s3, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRequired { .. }), "{e:?}");
    assert!(s3.list_blobs().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_registry_is_reported_clearly() {
    let real = start_registry(None);
    let host = real.host.clone();
    drop(real);
    let (_t, s) = store();
    let e = Registry::new(RegistryConfig::default())
        .pull(
            &format!("{host}/x").parse().unwrap(),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach registry {host}: connection refused")
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_layers_stream_with_bounded_memory() {
    use std::io::Write;
    let real = start_registry(None);
    let (_t, s) = store();
    // A 160 MiB layer, generated and written piece by piece.
    let mut w = s.blob_writer().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..160 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        w.write_all(&buf).unwrap();
    }
    let (layer, size) = w.commit(None).unwrap();
    drop(buf);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = s.write_blob(config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{size}}}]}}"#,
        config.len()
    );
    let md = s.write_blob(manifest.as_bytes()).unwrap();
    s.put_image(&ImageRecord::new(cd, md, OCI_MANIFEST))
        .unwrap();

    let reference: Reference = format!("{}/big:1", real.host).parse().unwrap();
    let registry = Registry::new(RegistryConfig::default());
    let monolithic = Registry::new(RegistryConfig {
        monolithic_push: true,
        ..RegistryConfig::default()
    });
    let before = peak_rss_kib();
    let t0 = std::time::Instant::now();
    registry
        .push(&reference, &s, &cd, &NoProgress)
        .await
        .unwrap();
    let pushed = t0.elapsed();
    let (_t2, s2) = store();
    let t1 = std::time::Instant::now();
    registry
        .pull(&reference, &amd64(), &s2, &NoProgress)
        .await
        .unwrap();
    let pulled = t1.elapsed();
    let t2 = std::time::Instant::now();
    let other: Reference = format!("{}/big-mono:1", real.host).parse().unwrap();
    monolithic.push(&other, &s, &cd, &NoProgress).await.unwrap();
    let pushed_mono = t2.elapsed();
    let (_t3, s3) = store();
    monolithic
        .pull(&other, &amd64(), &s3, &NoProgress)
        .await
        .unwrap();
    assert_eq!(s3.blob_size(&layer).unwrap(), size);
    let after = peak_rss_kib();
    eprintln!(
        "160 MiB layer: push {pushed:?} (monolithic {pushed_mono:?}), pull {pulled:?}, peak rss {before} -> {after} KiB"
    );
    assert_eq!(s2.blob_size(&layer).unwrap(), size);
    assert!(
        after.saturating_sub(before) < 96 * 1024,
        "peak memory grew by {} KiB for a 160 MiB layer",
        after - before
    );
}
