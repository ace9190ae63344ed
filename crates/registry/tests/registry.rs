//! Registry client tests against an in-process fake registry on 127.0.0.1:
//! the normal pull and push paths, platform selection, auth, and every
//! fault the issue lists (refused, 404, 401, bad digest, truncation,
//! oversized or unknown manifests), a hostile registry (huge or trickled
//! bodies, silence, uploads it stops reading), and cross-repository mounts.

mod fake;

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fake::{Auth, Fake, Fault, sha};
use kiln_content::{ImageRecord, Reference, Store};
use kiln_model::{Digest, Platform};
use kiln_registry::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Error, NoProgress, OCI_INDEX, OCI_MANIFEST, Progress,
    Registry, RegistryConfig,
};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

struct Img {
    config: String,
    layers: Vec<String>,
    manifest: Vec<u8>,
    manifest_digest: String,
}

fn config_json(arch: &str) -> Vec<u8> {
    format!(
        r#"{{"architecture":"{arch}","os":"linux","created":"2024-01-02T03:04:05Z","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes()
}

fn manifest_json(mt: &str, config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    let ls: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"{LAYER}","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{CONFIG}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        ls.join(",")
    )
    .into_bytes()
}

/// Puts an image (config + layers) in the fake under repo:tag.
fn publish(fake: &Fake, repo: &str, tag: &str, mt: &str, arch: &str, layers: &[Vec<u8>]) -> Img {
    let cfg = config_json(arch);
    let config = fake.put_blob(&cfg);
    let ls: Vec<String> = layers.iter().map(|l| fake.put_blob(l)).collect();
    let pairs: Vec<(&str, usize)> = ls
        .iter()
        .zip(layers)
        .map(|(d, l)| (d.as_str(), l.len()))
        .collect();
    let manifest = manifest_json(mt, (&config, cfg.len()), &pairs);
    let manifest_digest = fake.put_manifest(repo, tag, mt, &manifest);
    Img {
        config,
        layers: ls,
        manifest,
        manifest_digest,
    }
}

fn reg() -> Registry {
    Registry::new(RegistryConfig::default())
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    (d, s)
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

fn d(s: &str) -> Digest {
    s.parse().unwrap()
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn tmp_is_empty(s: &Store) -> bool {
    std::fs::read_dir(s.root().join("tmp"))
        .unwrap()
        .all(|e| e.unwrap().file_name() == ".active")
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Progress for Events {
    fn blob_started(&self, d: &Digest, _: u64) {
        self.0.lock().unwrap().push(format!("start {d}"));
    }
    fn blob_exists(&self, d: &Digest, _: u64) {
        self.0.lock().unwrap().push(format!("exists {d}"));
    }
    fn blob_done(&self, d: &Digest, _: u64) {
        self.0.lock().unwrap().push(format!("done {d}"));
    }
    fn blob_mounted(&self, d: &Digest, _: u64, repository: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("mounted {d} from {repository}"));
    }
    fn blob_retry(&self, d: &Digest, _: &Error) {
        self.0.lock().unwrap().push(format!("retry {d}"));
    }
}

impl Events {
    fn count(&self, prefix: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

#[tokio::test]
async fn pulls_an_oci_image_and_skips_existing_blobs() {
    let fake = Fake::start().await;
    let layers = vec![vec![1u8; 300_000], b"second layer".to_vec()];
    let img = publish(&fake, "team/app", "v1", OCI_MANIFEST, "amd64", &layers);
    let (_t, s) = store();
    let reference = r(&format!("{}/team/app:v1", fake.host()));
    let ev = Events::default();
    let rec = reg().pull(&reference, &amd64(), &s, &ev).await.unwrap();

    assert_eq!(rec.id, d(&img.config));
    assert_eq!(rec.manifest_digest, d(&img.manifest_digest));
    assert_eq!(rec.manifest_media_type, OCI_MANIFEST);
    assert_eq!(rec.repo_tags, vec![format!("{}/team/app:v1", fake.host())]);
    assert_eq!(
        rec.repo_digests,
        vec![format!("{}/team/app@{}", fake.host(), img.manifest_digest)]
    );
    assert_eq!(rec.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(
        rec.size,
        (config_json("amd64").len() + layers[0].len() + layers[1].len()) as u64
    );
    for (l, data) in img.layers.iter().zip(&layers) {
        assert_eq!(&s.read_blob(&d(l)).unwrap(), data);
    }
    assert_eq!(s.read_blob(&d(&img.manifest_digest)).unwrap(), img.manifest);
    assert_eq!(
        s.resolve_image(&format!("{}/team/app:v1", fake.host()))
            .unwrap()
            .id,
        rec.id
    );
    assert_eq!(ev.count("done"), 3);
    assert!(tmp_is_empty(&s));

    // Second pull: nothing downloaded again.
    let before = fake.count("GET /v2/team/app/blobs/");
    let ev2 = Events::default();
    reg().pull(&reference, &amd64(), &s, &ev2).await.unwrap();
    assert_eq!(fake.count("GET /v2/team/app/blobs/"), before);
    assert_eq!(ev2.count("exists"), 3);
}

#[tokio::test]
async fn pulls_docker_schema2() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "busybox",
        "latest",
        DOCKER_MANIFEST,
        "amd64",
        &[b"l".to_vec()],
    );
    let (_t, s) = store();
    let rec = reg()
        .pull(
            &r(&format!("{}/busybox", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(rec.manifest_media_type, DOCKER_MANIFEST);
    assert_eq!(rec.id, d(&img.config));
}

fn publish_index(fake: &Fake, mt: &str, child_mt: &str) -> (String, Img, Img) {
    let a = publish(
        fake,
        "multi",
        "amd64-only",
        child_mt,
        "amd64",
        &[b"amd64 layer".to_vec()],
    );
    let b = publish(
        fake,
        "multi",
        "arm64-only",
        child_mt,
        "arm64",
        &[b"arm64 layer".to_vec()],
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[
            {{"mediaType":"{child_mt}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{child_mt}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{child_mt}","digest":"{}","size":{},"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
        a.manifest_digest,
        a.manifest.len(),
        b.manifest_digest,
        b.manifest.len(),
        a.manifest_digest,
        a.manifest.len(),
    );
    let idx = fake.put_manifest("multi", "latest", mt, index.as_bytes());
    (idx, a, b)
}

#[tokio::test]
async fn selects_the_platform_from_an_index_or_list() {
    for (mt, child) in [
        (OCI_INDEX, OCI_MANIFEST),
        (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST),
    ] {
        let fake = Fake::start().await;
        let (idx, a, b) = publish_index(&fake, mt, child);
        let reference = r(&format!("{}/multi", fake.host()));
        let registry = reg();

        let res = registry
            .resolve(&reference, &"linux/arm64".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(res.digest, d(&b.manifest_digest));
        assert_eq!(res.index.as_ref().unwrap().digest, d(&idx));
        assert_eq!(res.platform.as_ref().unwrap().to_string(), "linux/arm64/v8");

        let (_t, s) = store();
        let rec = registry
            .pull(&reference, &amd64(), &s, &NoProgress)
            .await
            .unwrap();
        assert_eq!(rec.id, d(&a.config));
        assert_eq!(rec.manifest_digest, d(&a.manifest_digest));
        // Docker's RepoDigest is the index digest.
        assert_eq!(
            rec.repo_digests,
            vec![format!("{}/multi@{idx}", fake.host())]
        );
        assert!(s.has_blob(&d(&idx)));
        assert!(!s.has_blob(&d(&b.layers[0])));

        let e = registry
            .resolve(&reference, &"linux/s390x".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NoMatchingPlatform { .. }));
        let msg = e.to_string();
        assert!(msg.contains("linux/s390x"), "{msg}");
        assert!(
            msg.contains("available platforms: linux/amd64, linux/arm64/v8"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn pull_by_digest() {
    let fake = Fake::start().await;
    let img = publish(&fake, "app", "v1", OCI_MANIFEST, "amd64", &[b"x".to_vec()]);
    let (_t, s) = store();
    let reference = r(&format!("{}/app@{}", fake.host(), img.manifest_digest));
    let rec = reg()
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap();
    assert!(rec.repo_tags.is_empty());
    assert_eq!(rec.id, d(&img.config));
    assert_eq!(s.resolve_image(&reference.to_string()).unwrap().id, rec.id);
}

#[tokio::test]
async fn connection_refused_is_one_clear_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (_t, s) = store();
    let e = reg()
        .pull(&r(&format!("{addr}/busybox")), &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert_eq!(
        msg,
        format!("cannot reach registry {addr}: connection refused")
    );
    assert!(!msg.contains('\n'));
}

#[tokio::test]
async fn not_found() {
    let fake = Fake::start().await;
    let (_t, s) = store();
    let e = reg()
        .pull(
            &r(&format!("{}/nope:1", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("image not found: {}/nope:1", fake.host())
    );
    assert!(s.list_images().unwrap().is_empty());
}

fn docker_config(dir: &std::path::Path, host: &str, user: &str, pass: &str) -> std::path::PathBuf {
    let p = dir.join("config.json");
    kiln_registry::save_login(&p, host, user, pass).unwrap();
    p
}

#[tokio::test]
async fn basic_auth_needs_login_and_works_with_credentials() {
    let fake = Fake::start().await;
    publish(
        &fake,
        "private",
        "latest",
        OCI_MANIFEST,
        "amd64",
        &[b"secret".to_vec()],
    );
    fake.state().auth = Auth::Basic {
        user: "user".into(),
        pass: "pass".into(),
    };
    let reference = r(&format!("{}/private", fake.host()));
    let (_t, s) = store();

    let e = reg()
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRequired { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("kiln login {}", fake.host())),
        "{msg}"
    );

    let cfg_dir = tempfile::tempdir().unwrap();
    let bad = docker_config(cfg_dir.path(), &fake.host(), "user", "wrong");
    let e = Registry::new(RegistryConfig {
        docker_config: Some(bad),
        ..RegistryConfig::default()
    })
    .pull(&reference, &amd64(), &s, &NoProgress)
    .await
    .unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");

    let good = docker_config(cfg_dir.path(), &fake.host(), "user", "pass");
    let rec = Registry::new(RegistryConfig {
        docker_config: Some(good),
        ..RegistryConfig::default()
    })
    .pull(&reference, &amd64(), &s, &NoProgress)
    .await
    .unwrap();
    assert_eq!(
        rec.repo_tags,
        vec![format!("{}/private:latest", fake.host())]
    );
}

#[tokio::test]
async fn bearer_token_auth() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "tok",
        "latest",
        OCI_MANIFEST,
        "amd64",
        &[b"t".to_vec()],
    );
    fake.state().auth = Auth::Bearer {
        user: "u".into(),
        pass: "p".into(),
    };
    let reference = r(&format!("{}/tok", fake.host()));
    let (_t, s) = store();
    let e = reg()
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRequired { .. }), "{e:?}");

    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = docker_config(cfg_dir.path(), &fake.host(), "u", "p");
    let rec = Registry::new(RegistryConfig {
        docker_config: Some(cfg),
        ..RegistryConfig::default()
    })
    .pull(&reference, &amd64(), &s, &NoProgress)
    .await
    .unwrap();
    assert_eq!(rec.id, d(&img.config));
    assert!(fake.count("GET /token") >= 1);
}

#[tokio::test]
async fn corrupt_blob_is_rejected_and_nothing_kept() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "bad",
        "latest",
        OCI_MANIFEST,
        "amd64",
        &[vec![5u8; 100_000]],
    );
    fake.state().corrupt.insert(img.layers[0].clone());
    let (_t, s) = store();
    let e = reg()
        .pull(
            &r(&format!("{}/bad", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&img.layers[0]), "{e}");
    assert!(!s.has_blob(&d(&img.layers[0])));
    assert!(s.list_images().unwrap().is_empty());
    assert!(tmp_is_empty(&s));
    // The corrupted bytes are not kept under their own digest either.
    let blobs: Vec<Digest> = s
        .list_blobs()
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(blobs.iter().all(|b| *b == d(&img.config)), "{blobs:?}");
}

#[tokio::test]
async fn a_cut_connection_is_retried_once() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "cut",
        "latest",
        OCI_MANIFEST,
        "amd64",
        &[vec![9u8; 2_000_000]],
    );
    fake.state().truncate.insert(img.layers[0].clone(), 1);
    let (_t, s) = store();
    let ev = Events::default();
    let rec = reg()
        .pull(&r(&format!("{}/cut", fake.host())), &amd64(), &s, &ev)
        .await
        .unwrap();
    assert_eq!(rec.id, d(&img.config));
    assert_eq!(ev.count("retry"), 1);
    assert_eq!(
        fake.count(&format!("GET /v2/cut/blobs/{}", img.layers[0])),
        2
    );
    assert_eq!(
        s.read_blob(&d(&img.layers[0])).unwrap(),
        vec![9u8; 2_000_000]
    );
    assert!(tmp_is_empty(&s));
}

#[tokio::test]
async fn a_blob_cut_twice_fails_and_leaves_no_partial() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "cut",
        "latest",
        OCI_MANIFEST,
        "amd64",
        &[vec![9u8; 2_000_000]],
    );
    fake.state().truncate.insert(img.layers[0].clone(), 5);
    let (_t, s) = store();
    let e = reg()
        .pull(
            &r(&format!("{}/cut", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains(&img.layers[0]), "{e}");
    assert_eq!(
        fake.count(&format!("GET /v2/cut/blobs/{}", img.layers[0])),
        2
    );
    assert!(!s.has_blob(&d(&img.layers[0])));
    assert!(s.list_images().unwrap().is_empty());
    assert!(tmp_is_empty(&s));
}

#[tokio::test]
async fn oversized_and_unknown_manifests_are_refused() {
    let fake = Fake::start().await;
    let pad = "x".repeat(4 * 1024 * 1024 + 10);
    let big = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"pad":"{pad}"}},"config":{{"digest":"{}","size":1}},"layers":[]}}"#,
        sha(b"c")
    );
    fake.put_manifest("big", "latest", OCI_MANIFEST, big.as_bytes());
    let odd = br#"{"schemaVersion":2,"mediaType":"application/vnd.example.odd+json","config":{}}"#;
    fake.put_manifest("odd", "latest", "application/vnd.example.odd+json", odd);
    let v1 = br#"{"schemaVersion":1,"name":"old","tag":"latest","fsLayers":[]}"#;
    fake.put_manifest(
        "old",
        "latest",
        "application/vnd.docker.distribution.manifest.v1+json",
        v1,
    );

    let registry = reg();
    let e = registry
        .resolve(&r(&format!("{}/big", fake.host())), &amd64())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ManifestTooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("too large"), "{e}");

    let e = registry
        .resolve(&r(&format!("{}/odd", fake.host())), &amd64())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedMediaType { .. }), "{e:?}");
    assert!(
        e.to_string().contains("application/vnd.example.odd+json"),
        "{e}"
    );

    let e = registry
        .resolve(&r(&format!("{}/old", fake.host())), &amd64())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedMediaType { .. }), "{e:?}");
}

#[tokio::test]
async fn downloads_run_three_at_a_time() {
    let fake = Fake::start().await;
    let layers: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 10_000]).collect();
    publish(&fake, "many", "latest", OCI_MANIFEST, "amd64", &layers);
    fake.state().blob_delay = Some(std::time::Duration::from_millis(150));
    let (_t, s) = store();
    reg()
        .pull(
            &r(&format!("{}/many", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap();
    let max = fake.state().max_in_flight;
    assert!((2..=3).contains(&max), "max concurrent downloads {max}");
}

/// Builds an image directly in a store: config, layers, manifest, record.
fn local_image(s: &Store, layers: &[Vec<u8>]) -> ImageRecord {
    let cfg = config_json("amd64");
    let config = s.write_blob(&cfg).unwrap();
    let ls: Vec<Digest> = layers.iter().map(|l| s.write_blob(l).unwrap()).collect();
    let ls_s: Vec<String> = ls.iter().map(|d| d.to_string()).collect();
    let pairs: Vec<(&str, usize)> = ls_s
        .iter()
        .zip(layers)
        .map(|(d, l)| (d.as_str(), l.len()))
        .collect();
    let manifest = manifest_json(OCI_MANIFEST, (&config.to_string(), cfg.len()), &pairs);
    let m = s.write_blob(&manifest).unwrap();
    let mut rec = ImageRecord::new(config, m, OCI_MANIFEST);
    rec.repo_tags.push("local:latest".into());
    s.put_image(&rec).unwrap();
    rec
}

#[tokio::test]
async fn push_uploads_missing_blobs_in_big_pieces_then_the_manifest() {
    let fake = Fake::start().await;
    let (_t, s) = store();
    let big: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let rec = local_image(&s, &[big.clone(), b"small".to_vec()]);
    let reference = r(&format!("{}/pushed:1", fake.host()));
    let registry = reg();
    let ev = Events::default();
    let digest = registry.push(&reference, &s, &rec.id, &ev).await.unwrap();
    assert_eq!(digest, rec.manifest_digest);
    {
        let st = fake.state();
        assert_eq!(st.blobs.get(&sha(&big)).unwrap(), &big);
        assert!(st.blobs.contains_key(&rec.id.to_string()));
        let (mt, body) = st.manifests.get(&("pushed".into(), "1".into())).unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        assert_eq!(body, &s.read_blob(&rec.manifest_digest).unwrap());
        // The 10 MiB layer went up in multi-MiB pieces, never tiny ones.
        let big_patches: Vec<usize> = st
            .patch_sizes
            .iter()
            .copied()
            .filter(|n| *n > 1000)
            .collect();
        assert!(
            big_patches.iter().all(|n| *n >= 1024 * 1024),
            "{:?}",
            st.patch_sizes
        );
        assert_eq!(big_patches.iter().sum::<usize>(), big.len());
        assert!(big_patches.len() <= 4, "{:?}", st.patch_sizes);
        // HEAD came before each upload.
        let heads = st
            .log
            .iter()
            .filter(|l| l.starts_with("HEAD /v2/pushed/blobs/"))
            .count();
        assert_eq!(heads, 3);
    }
    assert_eq!(ev.count("done"), 3);
    let after = s.get_image(&rec.id).unwrap().unwrap();
    assert_eq!(
        after.repo_digests,
        vec![format!("{}/pushed@{}", fake.host(), rec.manifest_digest)]
    );

    // Pushing again uploads nothing.
    let posts = fake.count("POST");
    let ev2 = Events::default();
    registry.push(&reference, &s, &rec.id, &ev2).await.unwrap();
    assert_eq!(fake.count("POST"), posts);
    assert_eq!(ev2.count("exists"), 3);

    // And it pulls back, identical, into a fresh store.
    let (_t2, s2) = store();
    let back = registry
        .pull(&reference, &amd64(), &s2, &NoProgress)
        .await
        .unwrap();
    assert_eq!(back.id, rec.id);
    assert_eq!(back.manifest_digest, rec.manifest_digest);
    assert_eq!(s2.read_blob(&d(&sha(&big))).unwrap(), big);
}

#[tokio::test]
async fn push_unknown_image_and_missing_blob() {
    let fake = Fake::start().await;
    let (_t, s) = store();
    let e = reg()
        .push(
            &r(&format!("{}/x", fake.host())),
            &s,
            &Digest::of(b"nope"),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("no such image"), "{e}");

    let rec = local_image(&s, &[b"gone".to_vec()]);
    s.remove_blob(&Digest::of(b"gone")).unwrap();
    let e = reg()
        .push(&r(&format!("{}/x", fake.host())), &s, &rec.id, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&Digest::of(b"gone").to_string()),
        "{e}"
    );
    assert!(fake.state().manifests.is_empty(), "no manifest pushed");
}

#[tokio::test]
async fn push_to_a_private_registry_needs_login() {
    let fake = Fake::start().await;
    fake.state().auth = Auth::Basic {
        user: "user".into(),
        pass: "pass".into(),
    };
    let (_t, s) = store();
    let rec = local_image(&s, &[b"layer".to_vec()]);
    let reference = r(&format!("{}/priv:1", fake.host()));
    let e = reg()
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRequired { .. }), "{e:?}");

    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("docker").join("config.json");
    let registry = Registry::new(RegistryConfig {
        docker_config: Some(cfg.clone()),
        ..RegistryConfig::default()
    });
    let e = registry
        .login(&fake.host(), "user", "wrong", &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
    assert!(!cfg.exists(), "nothing saved on failure");
    registry
        .login(&fake.host(), "user", "pass", &cfg)
        .await
        .unwrap();
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("dXNlcjpwYXNz")
    );
    registry
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap();
    assert!(
        fake.state()
            .manifests
            .contains_key(&("priv".into(), "1".into()))
    );
}

#[tokio::test]
async fn login_to_a_dead_registry_fails_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let e = reg().login(&addr, "u", "p", &cfg).await.unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(!cfg.exists());
    let _ = std::io::stdout().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_pulls_into_one_store() {
    let fake = Fake::start().await;
    let layers: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 700_000]).collect();
    let img = publish(&fake, "same", "latest", OCI_MANIFEST, "amd64", &layers);
    fake.state().blob_delay = Some(std::time::Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    // Two handles on one root, as two processes would have.
    let s1 = Store::open(dir.path()).unwrap();
    let s2 = Store::open(dir.path()).unwrap();
    let reference = r(&format!("{}/same", fake.host()));
    let (r1, r2) = (reg(), reg());
    let p = amd64();
    let (a, b) = tokio::join!(
        r1.pull(&reference, &p, &s1, &NoProgress),
        r2.pull(&reference, &p, &s2, &NoProgress)
    );
    assert_eq!(a.unwrap().id, d(&img.config));
    assert_eq!(b.unwrap().id, d(&img.config));
    let s = Store::open(dir.path()).unwrap();
    let images = s.list_images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].repo_tags,
        vec![format!("{}/same:latest", fake.host())]
    );
    assert_eq!(images[0].repo_digests.len(), 1);
    for (blob, size) in s.list_blobs().unwrap() {
        let data = s.read_blob(&blob).unwrap();
        assert_eq!(Digest::of(&data), blob);
        assert_eq!(data.len() as u64, size);
    }
    assert!(tmp_is_empty(&s));
}

#[tokio::test]
async fn login_to_a_token_registry_checks_the_credentials() {
    let fake = Fake::start().await;
    fake.state().auth = Auth::Bearer {
        user: "u".into(),
        pass: "p".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let e = reg()
        .login(&fake.host(), "u", "bad", &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
    assert!(!cfg.exists());
    reg().login(&fake.host(), "u", "p", &cfg).await.unwrap();
    match kiln_registry::credentials(Some(&cfg), &fake.host()).unwrap() {
        kiln_registry::Credentials::Basic(u, p) => {
            assert_eq!((u, p), ("u".into(), "p".into()))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn push_with_bearer_tokens() {
    let fake = Fake::start().await;
    fake.state().auth = Auth::Bearer {
        user: "u".into(),
        pass: "p".into(),
    };
    let (_t, s) = store();
    let rec = local_image(&s, &[b"bearer layer".to_vec()]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = docker_config(dir.path(), &fake.host(), "u", "p");
    let registry = Registry::new(RegistryConfig {
        docker_config: Some(cfg),
        ..RegistryConfig::default()
    });
    let reference = r(&format!("{}/tok/pushed:2", fake.host()));
    let digest = registry
        .push(&reference, &s, &rec.id, &NoProgress)
        .await
        .unwrap();
    assert_eq!(digest, rec.manifest_digest);
    assert!(
        fake.state()
            .manifests
            .contains_key(&("tok/pushed".into(), "2".into()))
    );
    assert!(fake.count("GET /token") >= 1);
}

#[test]
fn futures_are_send_so_callers_can_spawn_them() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let registry = reg();
    let reference = r("127.0.0.1:1/x");
    let p = amd64();
    let id = Digest::of(b"x");
    let pull = registry.pull(&reference, &p, &s, &NoProgress);
    assert_send(&pull);
    let push = registry.push(&reference, &s, &id, &NoProgress);
    assert_send(&push);
    let resolve = registry.resolve(&reference, &p);
    assert_send(&resolve);
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Registry>();
}

#[tokio::test]
async fn push_to_a_dead_registry_is_one_clear_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (_t, s) = store();
    let rec = local_image(&s, &[b"l".to_vec()]);
    let e = reg()
        .push(&r(&format!("{addr}/x:1")), &s, &rec.id, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach registry {addr}: connection refused")
    );
}

/// A tee collecting one blob's pieces and whether it was verified.
struct Collect {
    digest: Digest,
    tx: Mutex<Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>>>,
}

impl kiln_registry::Tee for Collect {
    fn open(&self, digest: &Digest) -> Option<tokio::sync::mpsc::Sender<kiln_registry::TeeEvent>> {
        (*digest == self.digest)
            .then(|| self.tx.lock().unwrap().take())
            .flatten()
    }
}

/// Pulls `reference` with a tee on `layer`; returns the fetch result, the
/// bytes the tee saw and whether `Verified` arrived.
async fn teed_pull(
    reference: &Reference,
    layer: &str,
    s: &Store,
) -> (Result<(), Error>, Vec<u8>, bool) {
    let registry = reg();
    let resolved = registry.resolve(reference, &amd64()).await.unwrap();
    // A small channel: the download must wait for the reader.
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let tee = Collect {
        digest: d(layer),
        tx: Mutex::new(Some(tx)),
    };
    let reader = tokio::spawn(async move {
        let (mut data, mut verified) = (Vec::new(), false);
        while let Some(ev) = rx.recv().await {
            match ev {
                kiln_registry::TeeEvent::Data(b) => data.extend_from_slice(&b),
                kiln_registry::TeeEvent::Verified => verified = true,
            }
        }
        (data, verified)
    });
    let res = registry
        .fetch_blobs_teed(&resolved, s, &NoProgress, Some(&tee))
        .await;
    drop(tee);
    let (data, verified) = reader.await.unwrap();
    (res, data, verified)
}

#[tokio::test]
async fn a_tee_sees_the_blob_and_verified_only_when_it_checks_out() {
    let fake = Fake::start().await;
    let layer: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let img = publish(
        &fake,
        "tee",
        "ok",
        OCI_MANIFEST,
        "amd64",
        std::slice::from_ref(&layer),
    );
    let (_t, s) = store();
    let (res, data, verified) =
        teed_pull(&r(&format!("{}/tee:ok", fake.host())), &img.layers[0], &s).await;
    res.unwrap();
    assert_eq!(data, layer);
    assert!(verified);
    assert!(s.has_blob(&d(&img.layers[0])));

    // A corrupted blob: the tee gets bytes but never `Verified`.
    let bad = publish(
        &fake,
        "tee",
        "bad",
        OCI_MANIFEST,
        "amd64",
        &[vec![9u8; 200_000]],
    );
    fake.state().corrupt.insert(bad.layers[0].clone());
    let (_t2, s2) = store();
    let (res, data, verified) =
        teed_pull(&r(&format!("{}/tee:bad", fake.host())), &bad.layers[0], &s2).await;
    assert!(matches!(res, Err(Error::DigestMismatch { .. })), "{res:?}");
    assert!(!data.is_empty());
    assert!(!verified);
    assert!(!s2.has_blob(&d(&bad.layers[0])));
}

fn reg_timeout(timeout: Duration) -> Registry {
    Registry::new(RegistryConfig {
        timeout,
        ..RegistryConfig::default()
    })
}

/// What a client may have made the fake write after refusing a body: the
/// socket buffers' worth at most, nowhere near the bodies offered (GBs).
const BOUNDED: u64 = 48 * 1024 * 1024;

#[tokio::test]
async fn a_huge_manifest_is_refused_without_reading_it() {
    let fake = Fake::start().await;
    for announce in [true, false] {
        {
            let mut st = fake.state();
            st.faults = vec![(
                "GET /v2/huge/manifests/".into(),
                Fault::Huge {
                    status: 200,
                    len: 3_000_000_000,
                    announce,
                },
            )];
            st.served = 0;
        }
        let (_t, s) = store();
        let started = Instant::now();
        let e = reg()
            .pull(
                &r(&format!("{}/huge:1", fake.host())),
                &amd64(),
                &s,
                &NoProgress,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ManifestTooLarge { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("huge:1") && msg.contains("too large"), "{msg}");
        if announce {
            assert!(msg.contains("3000000000 bytes"), "{msg}");
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        // Let the fake notice the closed connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let served = fake.state().served;
        assert!(served < BOUNDED, "the fake served {served} bytes");
        assert!(s.list_images().unwrap().is_empty());
    }
}

#[tokio::test]
async fn huge_token_and_error_bodies_are_not_read_whole() {
    let fake = Fake::start().await;
    fake.state().auth = Auth::Bearer {
        user: "u".into(),
        pass: "p".into(),
    };
    fake.state().faults = vec![(
        "GET /token".into(),
        Fault::Huge {
            status: 200,
            len: 2_000_000_000,
            announce: false,
        },
    )];
    let (_t, s) = store();
    let e = reg()
        .pull(
            &r(&format!("{}/tok/app:1", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&fake.host()) && msg.contains("a token from 127.0.0.1"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.state().served < BOUNDED, "{}", fake.state().served);

    // A 404 with an endless error body is still just "not found".
    let fake = Fake::start().await;
    fake.state().faults = vec![(
        "GET /v2/gone/manifests/".into(),
        Fault::Huge {
            status: 404,
            len: 2_000_000_000,
            announce: false,
        },
    )];
    let e = reg()
        .pull(
            &r(&format!("{}/gone:1", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.state().served < BOUNDED, "{}", fake.state().served);
}

#[tokio::test]
async fn a_trickling_or_silent_registry_times_out_naming_what() {
    let fake = Fake::start().await;
    let layer: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let img = publish(&fake, "slow", "1", OCI_MANIFEST, "amd64", &[layer]);
    let reference = r(&format!("{}/slow:1", fake.host()));
    let registry = reg_timeout(Duration::from_secs(1));

    // A manifest sent one byte every 2 s: nothing for the 1 s timeout.
    fake.state().faults = vec![(
        "GET /v2/slow/manifests/".into(),
        Fault::Trickle(Duration::from_secs(2)),
    )];
    let (_t, s) = store();
    let started = Instant::now();
    let e = registry
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "registry {} timed out on manifest {}/slow:1: nothing received for 1 s",
            fake.host(),
            fake.host()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A blob sent one byte every 50 ms: never idle for 1 s, but far under
    // 16 KiB a second. Retried once, then the pull fails; nothing is kept.
    fake.state().faults = vec![(
        format!("GET /v2/slow/blobs/{}", img.layers[0]),
        Fault::Trickle(Duration::from_millis(50)),
    )];
    let started = Instant::now();
    let e = registry
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "registry {} timed out on blob {} of {}/slow:1: only ",
            fake.host(),
            img.layers[0],
            fake.host()
        )) && msg.contains("too slow"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!s.has_blob(&d(&img.layers[0])));
    assert!(s.list_images().unwrap().is_empty());
    assert!(tmp_is_empty(&s));

    // A registry that never answers.
    fake.state().faults = vec![("GET /v2/slow/manifests/".into(), Fault::Silent)];
    let started = Instant::now();
    let e = registry
        .pull(&reference, &amd64(), &s, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "registry {} timed out on manifest {}/slow:1: no answer for 1 s",
            fake.host(),
            fake.host()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The default timeout is Docker's 30 s.
    assert_eq!(RegistryConfig::default().timeout, Duration::from_secs(30));
}

#[tokio::test]
async fn an_upload_the_registry_stops_reading_times_out() {
    let fake = Fake::start().await;
    fake.state().faults = vec![("PATCH /v2/stuck/blobs/uploads/".into(), Fault::StallUpload)];
    let (_t, s) = store();
    let big: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let rec = local_image(&s, std::slice::from_ref(&big));
    // One upload at a time: the big layer goes first and stalls.
    let registry = Registry::new(RegistryConfig {
        timeout: Duration::from_secs(1),
        upload_chunk_size: big.len(),
        max_concurrent_uploads: 1,
        ..RegistryConfig::default()
    });
    let started = Instant::now();
    let e = registry
        .push(
            &r(&format!("{}/stuck:1", fake.host())),
            &s,
            &rec.id,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("blob {} to {}/stuck", sha(&big), fake.host())),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{msg}");
    assert!(fake.state().manifests.is_empty());

    // A small blob fits in the socket buffers whole: then the registry's
    // answer is what does not come (10 timeouts).
    let (_t2, s2) = store();
    let rec = local_image(&s2, &[b"small".to_vec()]);
    let registry = Registry::new(RegistryConfig {
        timeout: Duration::from_millis(300),
        max_concurrent_uploads: 1,
        ..RegistryConfig::default()
    });
    let started = Instant::now();
    let e = registry
        .push(
            &r(&format!("{}/stuck:2", fake.host())),
            &s2,
            &rec.id,
            &NoProgress,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("blob {} to", Digest::of(b"small")))
            && msg.ends_with("no answer for 3 s after the upload"),
        "{msg}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

fn upload_lines(fake: &Fake, repo: &str) -> Vec<String> {
    fake.state()
        .log
        .iter()
        .filter(|l| {
            (l.starts_with("PATCH ") || l.starts_with("PUT "))
                && l.contains(&format!("/v2/{repo}/blobs/uploads/"))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn push_mounts_blobs_from_another_repository_and_skips_existing_ones() {
    let fake = Fake::start().await;
    fake.state().repo_blobs = Some(HashSet::new());
    let (_t, s) = store();
    let rec = local_image(&s, &[vec![7u8; 200_000], b"second".to_vec()]);
    let blobs: Vec<Digest> = {
        let m: serde_json::Value =
            serde_json::from_slice(&s.read_blob(&rec.manifest_digest).unwrap()).unwrap();
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| d(l["digest"].as_str().unwrap()))
            .chain([rec.id])
            .collect()
    };
    let registry = reg();

    let ev = Events::default();
    let a = r(&format!("{}/team/a:1", fake.host()));
    registry.push(&a, &s, &rec.id, &ev).await.unwrap();
    assert_eq!(ev.count("done"), 3);
    assert_eq!(ev.count("mounted"), 0);
    assert!(!upload_lines(&fake, "team/a").is_empty());

    // Another repository of the same registry: every blob is mounted from
    // the first, nothing is uploaded.
    let ev = Events::default();
    let b = r(&format!("{}/b:1", fake.host()));
    registry.push(&b, &s, &rec.id, &ev).await.unwrap();
    assert_eq!(ev.count("mounted"), 3, "{:?}", ev.0.lock().unwrap());
    assert_eq!(ev.count("mounted sha256:"), 3);
    assert!(
        ev.0.lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("mounted"))
            .all(|e| e.ends_with(" from team/a"))
    );
    assert_eq!(ev.count("done"), 0);
    assert!(
        upload_lines(&fake, "b").is_empty(),
        "{:?}",
        fake.state().log
    );
    for blob in &blobs {
        let line = format!(
            "POST /v2/b/blobs/uploads/?mount={}&from=team%2Fa",
            blob.to_string().replace(':', "%3A")
        );
        assert_eq!(fake.count(&line), 1, "{line} in {:?}", fake.state().log);
        assert!(
            fake.state()
                .repo_blobs
                .as_ref()
                .unwrap()
                .contains(&("b".into(), blob.to_string()))
        );
    }
    let pair = |repo: &str| (fake.host(), repo.to_string());
    assert_eq!(
        kiln_registry::blob_sources(&s, &blobs[0]).unwrap(),
        vec![pair("b"), pair("team/a")]
    );

    // Pushing to b again: every blob is already there.
    let posts = fake.count("POST");
    let ev = Events::default();
    registry.push(&b, &s, &rec.id, &ev).await.unwrap();
    assert_eq!(ev.count("exists"), 3);
    assert_eq!(fake.count("POST"), posts);

    // A registry elsewhere is never asked to mount from this one's repos.
    let other = Fake::start().await;
    let ev = Events::default();
    registry
        .push(&r(&format!("{}/c:1", other.host())), &s, &rec.id, &ev)
        .await
        .unwrap();
    assert_eq!(ev.count("done"), 3);
    assert_eq!(other.count("mount="), 0);
}

#[tokio::test]
async fn pulled_blobs_mount_from_their_repository_and_a_refused_mount_uploads() {
    let fake = Fake::start().await;
    let img = publish(
        &fake,
        "src/app",
        "1",
        OCI_MANIFEST,
        "amd64",
        &[vec![1u8; 50_000], vec![2u8; 60_000]],
    );
    let all: Vec<String> = img
        .layers
        .iter()
        .cloned()
        .chain([img.config.clone()])
        .collect();
    fake.state().repo_blobs = Some(
        all.iter()
            .map(|b| ("src/app".to_string(), b.clone()))
            .collect(),
    );
    let (_t, s) = store();
    let registry = reg();
    let rec = registry
        .pull(
            &r(&format!("{}/src/app:1", fake.host())),
            &amd64(),
            &s,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(
        kiln_registry::blob_sources(&s, &d(&img.layers[0])).unwrap(),
        vec![(fake.host(), "src/app".to_string())]
    );
    let ev = Events::default();
    registry
        .push(&r(&format!("{}/dst:1", fake.host())), &s, &rec.id, &ev)
        .await
        .unwrap();
    assert_eq!(ev.count("mounted"), 3);

    // Neither dst nor src/app has the first layer any more: both mounts
    // are refused (202, an upload session); the first session is
    // cancelled, the blob goes up through the last one.
    {
        let mut st = fake.state();
        let rb = st.repo_blobs.as_mut().unwrap();
        rb.remove(&("dst".to_string(), img.layers[0].clone()));
        rb.remove(&("src/app".to_string(), img.layers[0].clone()));
    }
    let ev = Events::default();
    registry
        .push(&r(&format!("{}/third:1", fake.host())), &s, &rec.id, &ev)
        .await
        .unwrap();
    assert_eq!(ev.count("mounted"), 2, "{:?}", ev.0.lock().unwrap());
    assert_eq!(ev.count(&format!("done {}", img.layers[0])), 1);
    assert_eq!(fake.count("DELETE /v2/third/blobs/uploads/"), 1);
    assert_eq!(fake.count("POST /v2/third/blobs/uploads/?mount="), 4);
    assert!(
        fake.state()
            .repo_blobs
            .as_ref()
            .unwrap()
            .contains(&("third".to_string(), img.layers[0].clone()))
    );
    assert!(fake.state().uploads.is_empty(), "no upload session left");
}

#[tokio::test]
async fn mount_tokens_cover_pull_on_the_source_repository() {
    let fake = Fake::start().await;
    fake.state().repo_blobs = Some(HashSet::new());
    fake.state().auth = Auth::Bearer {
        user: "u".into(),
        pass: "p".into(),
    };
    let (_t, s) = store();
    let rec = local_image(&s, &[b"tok layer".to_vec()]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = docker_config(dir.path(), &fake.host(), "u", "p");
    let registry = Registry::new(RegistryConfig {
        docker_config: Some(cfg),
        ..RegistryConfig::default()
    });
    registry
        .push(
            &r(&format!("{}/one:1", fake.host())),
            &s,
            &rec.id,
            &NoProgress,
        )
        .await
        .unwrap();
    let ev = Events::default();
    registry
        .push(&r(&format!("{}/two:1", fake.host())), &s, &rec.id, &ev)
        .await
        .unwrap();
    assert_eq!(ev.count("mounted"), 2);
    assert!(
        fake.state().log.iter().any(|l| l.starts_with("GET /token?")
            && l.contains("scope=repository%3Atwo%3Apull%2Cpush")
            && l.contains("scope=repository%3Aone%3Apull")),
        "{:?}",
        fake.state().log
    );
}
