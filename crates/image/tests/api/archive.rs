//! Archive tests: save in both formats and load back (plain and gzip),
//! determinism, Docker-to-OCI media type conversion, tampered archives, and
//! import of a rootfs tarball with changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use kiln_content::{ImageRecord, Reference, Store};
use kiln_image::{
    Format, ImportOptions, Index, Manifest, SaveImage, Timestamp, distribution_manifest,
    ensure_unpacked, import, inspect, load, media_type, read_image, save, save_compressed,
};
use kiln_model::{Digest, ImageConfig};
use kiln_snapshot::{CopySnapshotter, Snapshotter};

use crate::{env, rootless, two_layer_image};

fn members(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(name, buf);
    }
    out
}

fn fresh_store(dir: &std::path::Path, name: &str) -> Store {
    Store::open(dir.join(name)).unwrap()
}

fn unpacked_file(store: &Store, dir: PathBuf, id: &Digest, file: &str) -> Option<Vec<u8>> {
    let sn = CopySnapshotter::new(dir).unwrap();
    let top = ensure_unpacked(store, &sn, id, &rootless())
        .unwrap()
        .unwrap();
    let mounts = sn.view("look", Some(&top)).unwrap();
    fs::read(PathBuf::from(&mounts[0].source).join(file)).ok()
}

fn saved(store: &Store, id: Digest, tag: &str, format: Format) -> Vec<u8> {
    let images = [SaveImage {
        id,
        tags: vec![Reference::parse(tag).unwrap()],
    }];
    save(store, &images, format, Vec::new()).unwrap()
}

#[test]
fn docker_archive_round_trips() {
    let e = env();
    let (_base, top) = two_layer_image(&e);
    let bytes = saved(&e.store, top, "test/top:1", Format::DockerArchive);
    let m = members(&bytes);
    let manifest: serde_json::Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["Config"], format!("{}.json", top.hex()));
    assert_eq!(manifest[0]["RepoTags"][0], "test/top:1");
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    // Layer tars are uncompressed: their sha256 is the diff ID.
    let img = read_image(&e.store, &top).unwrap();
    for (path, diff_id) in layers.iter().zip(&img.config.rootfs.diff_ids) {
        let data = &m[path.as_str().unwrap()];
        assert_eq!(&Digest::of(data).to_string(), diff_id);
    }
    // Same images, same bytes.
    assert_eq!(
        bytes,
        saved(&e.store, top, "test/top:1", Format::DockerArchive)
    );

    let other = fresh_store(&e.dir, "other");
    let loaded = load(&other, bytes.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, top, "image ID kept");
    assert_eq!(loaded[0].repo_tags, ["test/top:1"]);
    assert_eq!(other.resolve_image("test/top:1").unwrap().id, top);
    let got = unpacked_file(&other, e.dir.join("sn-da"), &top, "etc/second");
    assert_eq!(got.as_deref(), Some(&b"two\n"[..]));
    assert_eq!(
        unpacked_file(&other, e.dir.join("sn-da2"), &top, "gone"),
        None
    );
}

#[test]
fn oci_layout_round_trips_and_is_annotated() {
    let e = env();
    let (base, top) = two_layer_image(&e);
    let images = [
        SaveImage {
            id: top,
            tags: vec![
                Reference::parse("test/top:1").unwrap(),
                Reference::parse("localhost:5000/top:v2").unwrap(),
            ],
        },
        SaveImage {
            id: base,
            tags: vec![],
        },
    ];
    let bytes = save(&e.store, &images, Format::OciLayout, Vec::new()).unwrap();
    let m = members(&bytes);
    assert_eq!(m["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = Index::from_json(&m["index.json"]).unwrap();
    assert_eq!(index.manifests.len(), 3);
    let ann = index.manifests[0].annotations.as_ref().unwrap();
    assert_eq!(ann["org.opencontainers.image.ref.name"], "1");
    assert_eq!(ann["io.containerd.image.name"], "docker.io/test/top:1");
    assert_eq!(
        index.manifests[1].annotations.as_ref().unwrap()["org.opencontainers.image.ref.name"],
        "v2"
    );
    assert!(index.manifests[2].annotations.is_none());
    // Every blob is named by its digest; shared layers appear once.
    let blobs: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("blobs/sha256/"))
        .collect();
    for b in &blobs {
        assert_eq!(Digest::of(&m[*b]).hex(), b["blobs/sha256/".len()..]);
    }
    // configs 2 + manifests 2 + layers 2
    assert_eq!(blobs.len(), 6, "{blobs:?}");

    let other = fresh_store(&e.dir, "other");
    let loaded = load(&other, bytes.as_slice()).unwrap();
    let ids: Vec<Digest> = loaded.iter().map(|r| r.id).collect();
    assert_eq!(ids, [top, base]);
    let mut tags = loaded[0].repo_tags.clone();
    tags.sort();
    assert_eq!(tags, ["localhost:5000/top:v2", "test/top:1"]);
    assert!(loaded[1].repo_tags.is_empty());
    let got = unpacked_file(&other, e.dir.join("sn-oci"), &top, "etc/motd");
    assert_eq!(got.as_deref(), Some(&b"hello\n"[..]));
}

#[test]
fn gzip_compressed_archives_load() {
    let e = env();
    let (_base, top) = two_layer_image(&e);
    for format in [Format::DockerArchive, Format::OciLayout] {
        let bytes = saved(&e.store, top, "test/top:1", format);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let gz = gz.finish().unwrap();
        let other = fresh_store(&e.dir, &format!("gz-{format:?}"));
        let loaded = load(&other, gz.as_slice()).unwrap();
        assert_eq!(loaded[0].id, top);
    }
}

/// Rewrites one member of a tar archive.
fn replace_member(tar_bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in members(tar_bytes) {
        let d = if n == name { data.to_vec() } else { d };
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &n, d.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn tampered_archives_are_refused() {
    let e = env();
    let (_base, top) = two_layer_image(&e);
    let img = read_image(&e.store, &top).unwrap();

    let oci = saved(&e.store, top, "test/top:1", Format::OciLayout);
    let layer = format!("blobs/sha256/{}", img.manifest.layers[1].digest.hex());
    let bad = replace_member(&oci, &layer, b"tampered");
    let other = fresh_store(&e.dir, "t1");
    assert!(load(&other, bad.as_slice()).is_err());
    assert!(other.list_images().unwrap().is_empty());

    let da = saved(&e.store, top, "test/top:1", Format::DockerArchive);
    let diff = Digest::from_hex(
        img.config.rootfs.diff_ids[1]
            .strip_prefix("sha256:")
            .unwrap(),
    )
    .unwrap();
    let path = format!("{}/layer.tar", diff.hex());
    let mut other_tar = tar::Builder::new(Vec::new());
    other_tar.finish().unwrap();
    let bad = replace_member(&da, &path, &other_tar.into_inner().unwrap());
    let other = fresh_store(&e.dir, "t2");
    let err = load(&other, bad.as_slice()).unwrap_err();
    assert!(err.to_string().contains("diff id"), "{err}");
    assert!(other.list_images().unwrap().is_empty());

    let other = fresh_store(&e.dir, "t3");
    let err = load(&other, &b"definitely not a tar archive"[..]).unwrap_err();
    assert!(err.to_string().contains("image archive"), "{err}");
}

/// An image stored with Docker schema 2 media types (as pulled from Docker
/// Hub) is saved in an OCI layout with OCI types and the same blobs.
#[test]
fn docker_media_types_become_oci_in_a_layout() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let img = read_image(&e.store, &base).unwrap();
    let mut docker = img.manifest.clone();
    docker.media_type = Some(media_type::DOCKER_MANIFEST.into());
    docker.config.media_type = media_type::DOCKER_CONFIG.into();
    docker.layers[0].media_type = media_type::DOCKER_LAYER_GZIP.into();
    let mdigest = e.store.write_blob(&docker.to_json()).unwrap();
    e.store.remove_image(&base).unwrap();
    e.store
        .put_image(&ImageRecord::new(
            base,
            mdigest,
            media_type::DOCKER_MANIFEST,
        ))
        .unwrap();

    let bytes = saved(&e.store, base, "docker/style:1", Format::OciLayout);
    let m = members(&bytes);
    let index = Index::from_json(&m["index.json"]).unwrap();
    let d = &index.manifests[0];
    assert_eq!(d.media_type, media_type::OCI_MANIFEST);
    let written = Manifest::from_json(&m[&format!("blobs/sha256/{}", d.digest.hex())]).unwrap();
    assert_eq!(
        written.media_type.as_deref(),
        Some(media_type::OCI_MANIFEST)
    );
    assert_eq!(written.config.media_type, media_type::OCI_CONFIG);
    assert_eq!(written.layers[0].media_type, media_type::OCI_LAYER_GZIP);
    assert_eq!(written.layers[0].digest, docker.layers[0].digest);
    assert_ne!(d.digest, mdigest);
}

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(1_600_000_000);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o644);
    f.set_size(6);
    f.set_mtime(1_600_000_000);
    f.set_uid(0);
    f.set_gid(0);
    b.append_data(&mut f, "etc/os-release", &b"ID=ok\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn import_opts() -> ImportOptions {
    ImportOptions {
        created: Timestamp::from_unix(1_700_000_000),
        ..ImportOptions::default()
    }
}

#[test]
fn import_makes_a_one_layer_image() {
    let e = env();
    let tar = rootfs_tar();
    let r = Reference::parse("imported/base:1").unwrap();
    let changes = vec![
        r#"CMD ["cat", "/etc/os-release"]"#.to_owned(),
        "ENV A=1".to_owned(),
    ];
    let rec = import(&e.store, tar.as_slice(), Some(&r), &changes, &import_opts()).unwrap();
    assert_eq!(rec.repo_tags, ["imported/base:1"]);
    let img = read_image(&e.store, &rec.id).unwrap();
    assert_eq!(img.manifest.layers.len(), 1);
    assert_eq!(
        img.manifest.layers[0].media_type,
        media_type::OCI_LAYER_GZIP
    );
    // The layer is the input tar byte for byte.
    assert_eq!(img.config.rootfs.diff_ids[0], Digest::of(&tar).to_string());
    assert_eq!(
        img.config.history[0].comment.as_deref(),
        Some("Imported from -")
    );
    assert_eq!(img.config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    let c = img.config.config.clone().unwrap();
    assert_eq!(c.cmd.unwrap(), ["cat", "/etc/os-release"]);
    assert_eq!(c.env.unwrap(), ["A=1"]);
    assert_eq!(
        inspect(&e.store, &rec.id).unwrap()["Comment"],
        "Imported from -"
    );
    let got = unpacked_file(&e.store, e.dir.join("sn-imp"), &rec.id, "etc/os-release");
    assert_eq!(got.as_deref(), Some(&b"ID=ok\n"[..]));

    // Deterministic, and a gzip input gives the same image.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let other = fresh_store(&e.dir, "imp2");
    let again = import(&other, gz.as_slice(), None, &changes, &import_opts()).unwrap();
    assert_eq!(again.id, rec.id);
    assert!(again.repo_tags.is_empty());
}

#[test]
fn import_refuses_garbage_and_bad_changes() {
    let e = env();
    let err = import(&e.store, &b"not a tar"[..], None, &[], &import_opts()).unwrap_err();
    assert!(err.to_string().contains("image archive"), "{err}");
    let err = import(
        &e.store,
        rootfs_tar().as_slice(),
        None,
        &["RUN rm -rf /".to_owned()],
        &import_opts(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid change"), "{err}");
    assert!(e.store.list_images().unwrap().is_empty());
    let _ = ImageConfig::default();
}

#[test]
fn zstd_layers_round_trip_through_both_formats() {
    let e = env();
    e.sn.prepare("z", None).unwrap();
    let root = e.sn.apply_target("z").unwrap().dir;
    fs::write(root.join("zfile"), b"zstd content\n").unwrap();
    let mut o = crate::opts("zstd layer", &["test/zstd:1"]);
    o.compression = kiln_layer::Compression::Zstd;
    let c = kiln_image::commit_layer(
        &e.store,
        &e.sn,
        "z",
        ImageConfig::new("linux", "amd64"),
        vec![],
        &o,
    )
    .unwrap();
    let (desc, diff_id) = c.layer.unwrap();
    assert_eq!(desc.media_type, media_type::OCI_LAYER_ZSTD);
    for format in [Format::DockerArchive, Format::OciLayout] {
        let bytes = saved(&e.store, c.record.id, "test/zstd:1", format);
        if format == Format::DockerArchive {
            let m = members(&bytes);
            let tar = &m[&format!("{}/layer.tar", diff_id.hex())];
            assert_eq!(
                Digest::of(tar),
                diff_id,
                "docker-archive layers are plain tars"
            );
        }
        let other = fresh_store(&e.dir, &format!("z-{format:?}"));
        let loaded = load(&other, bytes.as_slice()).unwrap();
        assert_eq!(loaded[0].id, c.record.id);
        let got = unpacked_file(
            &other,
            e.dir.join(format!("sn-z-{format:?}")),
            &c.record.id,
            "zfile",
        );
        assert_eq!(got.as_deref(), Some(&b"zstd content\n"[..]));
    }
}

/// A docker-archive as older `docker save` wrote it (legacy `json`,
/// `VERSION` and `repositories` files, layer directories named by v1 IDs),
/// here with a gzip-compressed layer.tar as some tools write.
#[test]
fn legacy_docker_save_archives_with_gzip_layers_load() {
    let e = env();
    let layer_tar = rootfs_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer_tar).unwrap();
    let gz = gz.finish().unwrap();
    let mut cfg = ImageConfig::new("linux", "amd64");
    cfg.push_layer(&Digest::of(&layer_tar).to_string(), Default::default());
    let config = cfg.to_json();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let v1 = "a".repeat(64);
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["legacy/app:old"],"Layers":["{v1}/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(Vec::new());
    let files: Vec<(String, Vec<u8>)> = vec![
        (format!("{v1}/VERSION"), b"1.0".to_vec()),
        (format!("{v1}/json"), br#"{"id":"aaaa"}"#.to_vec()),
        (format!("{v1}/layer.tar"), gz.clone()),
        (config_name.clone(), config.clone()),
        (
            "repositories".into(),
            br#"{"legacy/app":{"old":"aaaa"}}"#.to_vec(),
        ),
        ("manifest.json".into(), manifest.into_bytes()),
    ];
    for (name, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let archive = b.into_inner().unwrap();
    let loaded = load(&e.store, archive.as_slice()).unwrap();
    assert_eq!(loaded[0].id, Digest::of(&config));
    assert_eq!(loaded[0].repo_tags, ["legacy/app:old"]);
    let img = read_image(&e.store, &loaded[0].id).unwrap();
    assert_eq!(
        img.manifest.layers[0].media_type,
        media_type::OCI_LAYER_GZIP
    );
    assert_eq!(img.manifest.layers[0].digest, Digest::of(&gz));
    let got = unpacked_file(
        &e.store,
        e.dir.join("sn-legacy"),
        &loaded[0].id,
        "etc/os-release",
    );
    assert_eq!(got.as_deref(), Some(&b"ID=ok\n"[..]));
}

/// An OCI layout whose index points at a multi-platform index: the entry for
/// this host is loaded, under the outer entry's name.
#[test]
fn nested_indexes_pick_the_host_platform() {
    let e = env();
    let (base, _top) = two_layer_image(&e);
    let bytes = saved(&e.store, base, "test/multi:1", Format::OciLayout);
    let m = members(&bytes);
    let index = Index::from_json(&m["index.json"]).unwrap();
    let mut native = index.manifests[0].clone();
    native.annotations = None;
    let host = kiln_model::Platform::native();
    native.platform = Some(host);
    let mut foreign = native.clone();
    foreign.platform = Some(kiln_model::Platform::new("linux", "s390x-not-here", None));
    foreign.digest = Digest::of(b"absent manifest");
    let inner = Index::new_oci(vec![foreign, native]).to_json();
    let inner_digest = Digest::of(&inner);
    let mut outer_entry = index.manifests[0].clone();
    outer_entry.media_type = media_type::OCI_INDEX.into();
    outer_entry.digest = inner_digest;
    outer_entry.size = inner.len() as u64;
    let outer = Index::new_oci(vec![outer_entry]).to_json();
    let with_inner = add_member(
        &replace_member(&bytes, "index.json", &outer),
        &format!("blobs/sha256/{}", inner_digest.hex()),
        &inner,
    );
    let other = fresh_store(&e.dir, "multi");
    let loaded = load(&other, with_inner.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, base);
    assert_eq!(loaded[0].repo_tags, ["test/multi:1"]);
}

fn add_member(tar_bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut all = members(tar_bytes);
    all.insert(name.to_owned(), data.to_vec());
    for (n, d) in all {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &n, d.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn plain_layers_get_compressed_copies_for_distribution_once() {
    let e = env();
    let tar = rootfs_tar();
    let opts = ImportOptions {
        compression: kiln_layer::Compression::None,
        ..import_opts()
    };
    let rec = import(&e.store, tar.as_slice(), None, &[], &opts).unwrap();
    let img = read_image(&e.store, &rec.id).unwrap();
    assert_eq!(img.manifest.layers[0].media_type, media_type::OCI_LAYER);
    assert_eq!(img.manifest.layers[0].digest, Digest::of(&tar));

    // none: the image's own manifest.
    let own = distribution_manifest(&e.store, &rec.id, kiln_layer::Compression::None).unwrap();
    assert_eq!(own.manifest_digest, rec.manifest_digest);
    assert_eq!(own.compressed_now, 0);

    let gz = distribution_manifest(&e.store, &rec.id, kiln_layer::Compression::Gzip).unwrap();
    assert_eq!(gz.compressed_now, 1);
    assert_ne!(gz.manifest_digest, rec.manifest_digest);
    assert_eq!(gz.media_type, media_type::OCI_MANIFEST);
    let m = Manifest::from_json(&e.store.read_blob(&gz.manifest_digest).unwrap()).unwrap();
    assert_eq!(m.config.digest, rec.id, "same config, same image ID");
    assert_eq!(m.layers[0].media_type, media_type::OCI_LAYER_GZIP);
    let blob = e.store.read_blob(&m.layers[0].digest).unwrap();
    assert_eq!(m.layers[0].size, blob.len() as u64);
    assert_eq!(&blob[..2], &[0x1f, 0x8b], "gzip magic");
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(blob.as_slice())
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, tar, "the copy decompresses to the layer");

    // A second call reuses the copy; zstd makes its own.
    let again = distribution_manifest(&e.store, &rec.id, kiln_layer::Compression::Gzip).unwrap();
    assert_eq!(again.compressed_now, 0);
    assert_eq!(again.manifest_digest, gz.manifest_digest);
    let zs = distribution_manifest(&e.store, &rec.id, kiln_layer::Compression::Zstd).unwrap();
    assert_eq!(zs.compressed_now, 1);
    let mz = Manifest::from_json(&e.store.read_blob(&zs.manifest_digest).unwrap()).unwrap();
    assert_eq!(mz.layers[0].media_type, media_type::OCI_LAYER_ZSTD);

    // The copies survive gc while the image lives.
    e.store.gc(|_| false).unwrap();
    assert!(e.store.has_blob(&m.layers[0].digest));
    assert!(e.store.has_blob(&mz.layers[0].digest));

    // An OCI layout saved with gzip holds the compressed layer and loads
    // back as the same image.
    let images = [SaveImage {
        id: rec.id,
        tags: vec![Reference::parse("dist/plain:1").unwrap()],
    }];
    let bytes = save_compressed(
        &e.store,
        &images,
        Format::OciLayout,
        kiln_layer::Compression::Gzip,
        Vec::new(),
    )
    .unwrap();
    let members = members(&bytes);
    assert!(members.contains_key(&format!("blobs/sha256/{}", m.layers[0].digest.hex())));
    assert!(!members.contains_key(&format!("blobs/sha256/{}", Digest::of(&tar).hex())));
    let other = fresh_store(&e.dir, "dist-load");
    assert_eq!(load(&other, bytes.as_slice()).unwrap()[0].id, rec.id);
    // A docker archive stays plain whatever the compression.
    let docker = save_compressed(
        &e.store,
        &images,
        Format::DockerArchive,
        kiln_layer::Compression::Gzip,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(members_of(&docker, "layer.tar"), vec![tar]);
}

fn members_of(tar_bytes: &[u8], suffix: &str) -> Vec<Vec<u8>> {
    members(tar_bytes)
        .into_iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| v)
        .collect()
}

/// A tar whose one member is named `name` (raw bytes, as a hostile tool
/// writes it: the tar crate's own path checks are bypassed).
fn tar_with_raw_member(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, k, l) in [
        (&b"ok.txt"[..], tar::EntryType::Regular, None),
        (name, kind, link),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        if let Some(l) = l {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(k);
        h.set_mode(0o644);
        h.set_size(if k == tar::EntryType::Regular { 3 } else { 0 });
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        if k == tar::EntryType::Regular {
            let mut block = [0u8; 512];
            block[..3].copy_from_slice(b"hi\n");
            out.extend_from_slice(&block);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `kiln import` of a tar that climbs out with `..` (as a member name or
/// as a hard link's target) is refused while reading it: no image and no
/// layer blob is recorded (before, the image was recorded and could never
/// be unpacked).
#[test]
fn import_refuses_dotdot_members_and_records_nothing() {
    let e = env();
    type Case<'a> = (&'a [u8], tar::EntryType, Option<&'a [u8]>);
    let cases: [Case<'_>; 3] = [
        (b"../escape.txt", tar::EntryType::Regular, None),
        (b"a/../../escape.txt", tar::EntryType::Regular, None),
        (b"link", tar::EntryType::Link, Some(b"../../etc/shadow")),
    ];
    for (name, kind, link) in cases {
        let tar = tar_with_raw_member(name, kind, link);
        let r = Reference::parse("evil/import:1").unwrap();
        let err = import(&e.store, tar.as_slice(), Some(&r), &[], &import_opts()).unwrap_err();
        assert!(
            err.to_string().contains("outside the image's root"),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
        assert!(e.store.list_images().unwrap().is_empty());
        assert!(
            e.store.list_blobs().unwrap().is_empty(),
            "no layer blob is kept"
        );
    }
    // A `..` that stays inside (a/../b) is refused too: kiln's unpacker
    // refuses every `..` component, so the image could not be unpacked.
    let tar = tar_with_raw_member(b"a/../b.txt", tar::EntryType::Regular, None);
    assert!(import(&e.store, tar.as_slice(), None, &[], &import_opts()).is_err());
    // A symlink's target is resolved inside the root later: fine.
    let tar = tar_with_raw_member(b"up", tar::EntryType::Symlink, Some(b"../../.."));
    import(&e.store, tar.as_slice(), None, &[], &import_opts()).unwrap();
}

/// A docker-archive whose RepoTags holds `name@sha256:...` (no tag) is
/// refused, as `docker load` refuses it (`invalid tag`), instead of
/// tagging `name:latest`; nothing is recorded. So is `sha256:<hex>` as a
/// name.
#[test]
fn load_refuses_digest_references_in_repo_tags() {
    let layer_tar = rootfs_tar();
    let mut cfg = ImageConfig::new("linux", "amd64");
    cfg.push_layer(&Digest::of(&layer_tar).to_string(), Default::default());
    let config = cfg.to_json();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let zeros = "0".repeat(64);
    for bad in [
        format!("evil/app@sha256:{zeros}"),
        format!("sha256:{zeros}"),
    ] {
        let e = env();
        let manifest = format!(
            r#"[{{"Config":"{config_name}","RepoTags":["ok/app:1","{bad}"],"Layers":["l/layer.tar"]}}]"#
        );
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("l/layer.tar".to_owned(), layer_tar.clone()),
            (config_name.clone(), config.clone()),
            ("manifest.json".to_owned(), manifest.into_bytes()),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        let archive = b.into_inner().unwrap();
        let err = load(&e.store, archive.as_slice()).unwrap_err();
        assert!(err.to_string().contains("invalid tag"), "{bad}: {err}");
        assert!(err.to_string().contains(&bad), "{err}");
        assert!(e.store.list_images().unwrap().is_empty(), "{bad}");
    }
}
