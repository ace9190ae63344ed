//! Public-API tests of the content store: verified blob writes, crash
//! leftovers, image records and resolution, generic records, locking and gc.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use kiln_content::{Error, ImageRecord, Record, Reference, Store};
use kiln_model::Digest;
use serde::{Deserialize, Serialize};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    (dir, s)
}

fn tmp_entries(s: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".active")
        .collect();
    v.sort();
    v
}

/// Stores a config, layers and a manifest pointing at them; returns (config, manifest).
fn make_image(s: &Store, seed: &str) -> (Digest, Digest) {
    let config = s
        .write_blob(format!(r#"{{"os":"linux","seed":"{seed}"}}"#).as_bytes())
        .unwrap();
    let layer = s.write_blob(format!("layer-{seed}").as_bytes()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{config}","size":1}},"layers":[{{"digest":"{layer}","size":1}}]}}"#
    );
    let m = s.write_blob(manifest.as_bytes()).unwrap();
    (config, m)
}

#[test]
fn layout_is_created() {
    let (_d, s) = store();
    for p in ["blobs/sha256", "tmp", "images", "records", "lock"] {
        assert!(s.root().join(p).exists(), "{p}");
    }
}

#[test]
fn blob_round_trip() {
    let (_d, s) = store();
    let data = b"hello blob".repeat(100_000);
    let mut w = s.blob_writer().unwrap();
    for chunk in data.chunks(7777) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.len(), data.len() as u64);
    let want = Digest::of(&data);
    let (d, size) = w.commit(Some((&want, data.len() as u64))).unwrap();
    assert_eq!(d, want);
    assert_eq!(size, data.len() as u64);
    assert!(s.has_blob(&d));
    assert_eq!(s.blob_size(&d).unwrap(), data.len() as u64);
    assert_eq!(s.read_blob(&d).unwrap(), data);
    assert_eq!(s.blob_path(&d), s.root().join("blobs/sha256").join(d.hex()));
    let mut f = s.open_blob(&d).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut back).unwrap();
    assert_eq!(back, data);
    assert!(tmp_entries(&s).is_empty());
    // Writing the same content again is fine and idempotent.
    assert_eq!(s.write_blob(&data).unwrap(), d);
    assert_eq!(s.list_blobs().unwrap(), vec![(d, data.len() as u64)]);
}

#[test]
fn prehashed_blobs_are_filed_under_the_writers_digest_with_their_size_checked() {
    let (_d, s) = store();
    let data = b"layer bytes".repeat(50_000);
    let want = Digest::of(&data);
    let mut w = s.blob_writer_prehashed().unwrap();
    for chunk in data.chunks(4093) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.len(), data.len() as u64);
    let (d, size) = w.commit(&want, data.len() as u64).unwrap();
    assert_eq!((d, size), (want, data.len() as u64));
    assert_eq!(s.read_blob(&d).unwrap(), data);
    assert!(tmp_entries(&s).is_empty());
    // A short write is caught by its size, and nothing is kept.
    let other = Digest::of(b"other");
    let mut w = s.blob_writer_prehashed().unwrap();
    w.write_all(b"othe").unwrap();
    let e = w.commit(&other, 5).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { actual: 4, .. }), "{e}");
    assert!(!s.has_blob(&other));
    assert!(tmp_entries(&s).is_empty());
    // Dropped unfinished: the temporary file goes.
    let mut w = s.blob_writer_prehashed().unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert!(tmp_entries(&s).is_empty());
}

#[test]
fn big_blobs_written_back_while_written_commit_and_abandon_cleanly() {
    // Over the 32 MiB mark the blob's pages are synced in the background
    // while writing goes on; the result is the same blob.
    let (_d, s) = store();
    let data: Vec<u8> = (0..(70u32 << 20)).map(|i| (i / 4093) as u8).collect();
    let want = Digest::of(&data);
    let mut w = s.blob_writer().unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    let (d, size) = w.commit(Some((&want, data.len() as u64))).unwrap();
    assert_eq!((d, size), (want, data.len() as u64));
    assert_eq!(s.read_blob(&d).unwrap(), data);
    // Abandoned past the mark: nothing stays behind.
    let mut w = s.blob_writer_prehashed().unwrap();
    w.write_all(&data[..40 << 20]).unwrap();
    drop(w);
    assert!(tmp_entries(&s).is_empty());
    assert_eq!(s.list_blobs().unwrap(), vec![(d, data.len() as u64)]);
}

#[test]
fn missing_blob_is_named() {
    let (_d, s) = store();
    let d = Digest::of(b"nope");
    assert!(!s.has_blob(&d));
    let e = s.read_blob(&d).unwrap_err();
    assert!(matches!(e, Error::BlobNotFound(x) if x == d));
    assert_eq!(e.to_string(), format!("blob not found: {d}"));
    assert!(s.open_blob(&d).is_err());
    assert!(s.blob_size(&d).is_err());
}

#[test]
fn bad_digest_is_rejected_and_nothing_kept() {
    let (_d, s) = store();
    let claimed = Digest::of(b"the real thing");
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"the fake thing").unwrap();
    let e = w.commit(Some((&claimed, 14))).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { expected, .. } if expected == claimed));
    assert!(e.to_string().contains(&claimed.to_string()), "{e}");
    assert!(!s.has_blob(&claimed));
    assert!(!s.has_blob(&Digest::of(b"the fake thing")));
    assert!(tmp_entries(&s).is_empty());
    assert!(s.list_blobs().unwrap().is_empty());
}

#[test]
fn bad_size_is_rejected_and_nothing_kept() {
    let (_d, s) = store();
    let want = Digest::of(b"truncated content");
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"truncated").unwrap();
    let e = w.commit(Some((&want, 17))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SizeMismatch {
                expected: 17,
                actual: 9,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&want.to_string()));
    assert!(s.list_blobs().unwrap().is_empty());
    assert!(tmp_entries(&s).is_empty());
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"partial").unwrap();
    assert_eq!(tmp_entries(&s).len(), 1);
    drop(w);
    assert!(tmp_entries(&s).is_empty());
    assert!(s.list_blobs().unwrap().is_empty());
}

#[test]
fn crash_leftovers_are_cleaned_on_open_but_not_under_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // What a process killed mid-write leaves: files in tmp/ nobody locks.
    std::fs::write(s.root().join("tmp/blob-99999-0"), b"half a layer").unwrap();
    std::fs::create_dir(s.root().join("tmp/some-dir")).unwrap();
    assert_eq!(tmp_entries(&s).len(), 2);
    let s2 = Store::open(dir.path()).unwrap();
    assert!(tmp_entries(&s2).is_empty());

    // A live writer (here another handle, same as another process) keeps its file.
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"in progress").unwrap();
    std::fs::write(s.root().join("tmp/blob-99999-1"), b"old leftover").unwrap();
    let s3 = Store::open(dir.path()).unwrap();
    assert_eq!(
        tmp_entries(&s3).len(),
        2,
        "nothing removed while a writer is active"
    );
    let (d, _) = w.commit(None).unwrap();
    assert_eq!(s3.read_blob(&d).unwrap(), b"in progress");
    // Now idle: the old leftover goes.
    assert_eq!(s3.clean_tmp().unwrap(), 1);
    assert!(tmp_entries(&s3).is_empty());
}

#[test]
fn killed_child_process_leaves_a_usable_store() {
    // A real process holding a writer is killed with SIGKILL; the next open
    // cleans its temporary file.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let tmp = s.root().join("tmp");
    let leftover = tmp.join("blob-killed-0");
    // flock(1) from util-linux holds a shared lock on tmp/.active while the
    // child sleeps, as a writer would, and writes its file.
    let script = format!("echo partial > {} && sleep 30", leftover.display());
    let mut child = std::process::Command::new("flock")
        .arg("--shared")
        .arg("--close")
        .arg(tmp.join(".active"))
        .args(["sh", "-c", &script])
        .spawn()
        .expect("flock(1) from util-linux");
    for _ in 0..200 {
        if leftover.exists() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(leftover.exists());
    Store::open(dir.path()).unwrap();
    assert!(leftover.exists(), "not removed while the writer lives");
    child.kill().unwrap();
    child.wait().unwrap();
    for _ in 0..300 {
        Store::open(dir.path()).unwrap();
        if !leftover.exists() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!leftover.exists(), "cleaned once the writer is gone");
}

#[test]
fn image_records_and_tags() {
    let (_d, s) = store();
    let (c1, m1) = make_image(&s, "one");
    let (c2, m2) = make_image(&s, "two");
    let mut r1 = ImageRecord::new(c1, m1, OCI_MANIFEST);
    r1.repo_tags.push("busybox:latest".into());
    r1.size = 42;
    s.put_image(&r1).unwrap();
    s.put_image(&ImageRecord::new(c2, m2, OCI_MANIFEST))
        .unwrap();
    assert_eq!(s.get_image(&c1).unwrap().unwrap(), r1);
    assert_eq!(s.list_images().unwrap().len(), 2);

    // Tagging moves the tag.
    let busybox: Reference = "docker.io/library/busybox".parse().unwrap();
    let rec = s.tag_image(&busybox, &c2).unwrap();
    assert_eq!(rec.repo_tags, vec!["busybox:latest"]);
    assert!(s.get_image(&c1).unwrap().unwrap().repo_tags.is_empty());
    assert_eq!(s.resolve_image("busybox").unwrap().id, c2);

    let other: Reference = "127.0.0.1:5000/app:v1".parse().unwrap();
    s.tag_image(&other, &c2).unwrap();
    assert_eq!(
        s.get_image(&c2).unwrap().unwrap().repo_tags,
        vec!["busybox:latest", "127.0.0.1:5000/app:v1"]
    );
    assert_eq!(s.resolve_image("127.0.0.1:5000/app:v1").unwrap().id, c2);

    // Repo digests resolve by name@digest.
    s.add_repo_digest(&other, &m2, &c2).unwrap();
    s.add_repo_digest(&other, &m2, &c2).unwrap();
    let rec = s.get_image(&c2).unwrap().unwrap();
    assert_eq!(rec.repo_digests, vec![format!("127.0.0.1:5000/app@{m2}")]);
    assert_eq!(
        s.resolve_image(&format!("127.0.0.1:5000/app@{m2}"))
            .unwrap()
            .id,
        c2
    );

    // Names go one by one (put_image would merge them back).
    let gone = s.remove_names(&c2, |n| n.contains('@')).unwrap();
    assert_eq!(gone, vec![format!("127.0.0.1:5000/app@{m2}")]);
    assert!(s.get_image(&c2).unwrap().unwrap().repo_digests.is_empty());
    assert!(s.remove_names(&c2, |_| false).unwrap().is_empty());

    // Untag.
    let after = s.untag(&busybox).unwrap();
    assert_eq!(after.repo_tags, vec!["127.0.0.1:5000/app:v1"]);
    let e = s.untag(&busybox).unwrap_err();
    assert_eq!(e.to_string(), "no such image: busybox:latest");
    assert_eq!(
        s.resolve_image("busybox").unwrap_err().to_string(),
        "no such image: busybox"
    );

    // Tagging an unknown image fails.
    assert!(matches!(
        s.tag_image(&busybox, &Digest::of(b"x")),
        Err(Error::NoSuchImage(_))
    ));
    // `sha256:<hex>` as a name is refused (ambiguous with an image ID), as
    // Docker's reference store refuses it, and nothing is recorded.
    let ambiguous: Reference = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let e = s.tag_image(&ambiguous, &c2).unwrap_err();
    assert!(
        e.to_string()
            .contains("refusing to create an ambiguous tag using digest algorithm as name"),
        "{e}"
    );
    assert!(
        !s.get_image(&c2)
            .unwrap()
            .unwrap()
            .repo_tags
            .iter()
            .any(|t| t.starts_with("sha256"))
    );

    assert!(s.remove_image(&c1).unwrap());
    assert!(!s.remove_image(&c1).unwrap());
    assert!(s.get_image(&c1).unwrap().is_none());
}

#[test]
fn resolve_by_id_prefix_and_ambiguity() {
    let (_d, s) = store();
    let mut ids = Vec::new();
    for i in 0..17 {
        let (c, m) = make_image(&s, &i.to_string());
        s.put_image(&ImageRecord::new(c, m, OCI_MANIFEST)).unwrap();
        ids.push(c);
    }
    let id = ids[0];
    assert_eq!(s.resolve_image(&id.to_string()).unwrap().id, id);
    assert_eq!(s.resolve_image(&id.hex()).unwrap().id, id);
    assert_eq!(s.resolve_image(&id.hex()[..12]).unwrap().id, id);
    assert_eq!(
        s.resolve_image(&format!("sha256:{}", &id.hex()[..12]))
            .unwrap()
            .id,
        id
    );

    // 17 IDs over 16 hex digits: some first digit is shared.
    let (a, b) = ids
        .iter()
        .enumerate()
        .flat_map(|(i, a)| ids[i + 1..].iter().map(move |b| (a, b)))
        .find(|(a, b)| a.hex()[..1] == b.hex()[..1])
        .unwrap();
    let prefix = &a.hex()[..1];
    let e = s.resolve_image(prefix).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("ambiguous image id prefix \"{prefix}\"")),
        "{msg}"
    );
    assert!(
        msg.contains(&a.short()) && msg.contains(&b.short()),
        "{msg}"
    );

    // A unique one-character prefix works, if there is one.
    let mut counts = std::collections::HashMap::new();
    for i in &ids {
        *counts.entry(i.hex()[..1].to_string()).or_insert(0) += 1;
    }
    if let Some((p, _)) = counts.iter().find(|(_, n)| **n == 1) {
        let want = ids
            .iter()
            .find(|i| i.hex().starts_with(p.as_str()))
            .unwrap();
        assert_eq!(s.resolve_image(p).unwrap().id, *want);
    }

    let unknown = "f".repeat(64);
    if !ids.iter().any(|i| i.hex() == unknown) {
        assert_eq!(
            s.resolve_image(&unknown).unwrap_err().to_string(),
            format!("no such image: {unknown}")
        );
    }
    assert_eq!(
        s.resolve_image("nosuchthing:1").unwrap_err().to_string(),
        "no such image: nosuchthing:1"
    );
    assert!(s.resolve_image("").is_err());
}

#[test]
fn name_wins_over_prefix() {
    let (_d, s) = store();
    let (c1, m1) = make_image(&s, "a");
    let (c2, m2) = make_image(&s, "b");
    s.put_image(&ImageRecord::new(c1, m1, OCI_MANIFEST))
        .unwrap();
    s.put_image(&ImageRecord::new(c2, m2, OCI_MANIFEST))
        .unwrap();
    let name = c1.hex()[..3].to_string();
    let name = if name.bytes().all(|b| b.is_ascii_digit()) {
        format!("a{name}")
    } else {
        name
    };
    s.tag_image(&name.parse().unwrap(), &c2).unwrap();
    assert_eq!(s.resolve_image(&name).unwrap().id, c2);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Container {
    id: String,
    name: String,
    state: u32,
}

impl Record for Container {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

fn ctr(id: &str, name: &str) -> Container {
    Container {
        id: id.into(),
        name: name.into(),
        state: 0,
    }
}

#[test]
fn generic_records() {
    let (_d, s) = store();
    let cs = s.records::<Container>("containers").unwrap();
    assert!(s.root().join("records/containers").is_dir());
    cs.put(&ctr("abc123", "web")).unwrap();
    cs.put(&ctr("abd456", "db")).unwrap();
    cs.put(&ctr("f00", "cache")).unwrap();
    assert_eq!(cs.get("abc123").unwrap().unwrap().name, "web");
    assert!(cs.get("nope").unwrap().is_none());
    assert_eq!(cs.list().unwrap().len(), 3);

    assert_eq!(cs.resolve("abc123").unwrap().name, "web");
    assert_eq!(cs.resolve("db").unwrap().id, "abd456");
    assert_eq!(cs.resolve("abc").unwrap().id, "abc123");
    assert_eq!(cs.resolve("f").unwrap().id, "f00");
    let e = cs.resolve("ab").unwrap_err().to_string();
    assert!(e.contains("ambiguous container id prefix \"ab\""), "{e}");
    assert!(e.contains("abc123") && e.contains("abd456"), "{e}");
    assert_eq!(
        cs.resolve("zzz").unwrap_err().to_string(),
        "no such container: zzz"
    );

    // Names are unique.
    let e = cs.put(&ctr("999", "web")).unwrap_err();
    assert!(
        matches!(e, Error::NameInUse { ref id, .. } if id == "abc123"),
        "{e}"
    );
    // Updating a record keeps its own name.
    let old = cs
        .update("abc123", |c| std::mem::replace(&mut c.state, 7))
        .unwrap();
    assert_eq!(old, 0);
    assert_eq!(cs.get("abc123").unwrap().unwrap().state, 7);

    assert!(cs.remove("abc123").unwrap());
    assert!(!cs.remove("abc123").unwrap());
    assert!(cs.resolve("web").is_err());

    // Unsafe ids and kinds are refused.
    assert!(cs.put(&ctr("../evil", "x")).is_err());
    assert!(cs.get("a/b").is_err());
    assert!(s.records::<Container>("../x").is_err());
    assert!(s.records::<Container>("").is_err());
}

#[test]
fn digest_ids_resolve_with_or_without_prefix() {
    let (_d, s) = store();
    let cache = s.records::<Container>("cache").unwrap();
    let d = Digest::of(b"key");
    cache.put(&ctr(&d.to_string(), "k")).unwrap();
    assert_eq!(cache.resolve(&d.hex()[..6]).unwrap().id, d.to_string());
    assert_eq!(cache.resolve(&d.to_string()).unwrap().id, d.to_string());
    assert!(cache.get(&d.to_string()).unwrap().is_some());
}

#[test]
fn store_lock_serialises_read_modify_write_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    let s0 = Store::open(dir.path()).unwrap();
    s0.records::<Container>("counters")
        .unwrap()
        .put(&ctr("c", "c"))
        .unwrap();
    let threads = 4;
    let per = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let path = dir.path().to_path_buf();
            let barrier = barrier.clone();
            thread::spawn(move || {
                // Separate handles: separate flock descriptions, as separate processes.
                let s = Store::open(&path).unwrap();
                let recs = s.records::<Container>("counters").unwrap();
                barrier.wait();
                for _ in 0..per {
                    let _g = s.lock().unwrap();
                    let mut c = recs.get("c").unwrap().unwrap();
                    thread::yield_now();
                    c.state += 1;
                    recs.put(&c).unwrap(); // re-entrant lock
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let c = s0
        .records::<Container>("counters")
        .unwrap()
        .get("c")
        .unwrap()
        .unwrap();
    assert_eq!(c.state, (threads * per) as u32);
}

#[test]
fn lock_is_shared_by_threads_of_one_handle() {
    let (_d, s) = store();
    let recs = s.records::<Container>("counters").unwrap();
    recs.put(&ctr("c", "c")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || {
                let recs = s.records::<Container>("counters").unwrap();
                for _ in 0..20 {
                    recs.update("c", |c| c.state += 1).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(recs.get("c").unwrap().unwrap().state, 80);
}

#[test]
fn concurrent_pulls_of_the_same_image_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let layer = vec![7u8; 3 * 1024 * 1024];
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let path = dir.path().to_path_buf();
            let layer = layer.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let s = Store::open(&path).unwrap();
                let _lease = s.lease().unwrap();
                barrier.wait();
                let want = Digest::of(&layer);
                let mut w = s.blob_writer().unwrap();
                for c in layer.chunks(64 * 1024) {
                    w.write_all(c).unwrap();
                }
                w.commit(Some((&want, layer.len() as u64))).unwrap();
                let (c, m) = make_image(&s, "same");
                let mut rec = ImageRecord::new(c, m, OCI_MANIFEST);
                rec.repo_tags.push("app:latest".into());
                s.put_image(&rec).unwrap();
                s.tag_image(&format!("app:t{i}").parse().unwrap(), &c)
                    .unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let imgs = s.list_images().unwrap();
    assert_eq!(imgs.len(), 1);
    let mut tags = imgs[0].repo_tags.clone();
    tags.sort();
    assert_eq!(
        tags,
        vec!["app:latest", "app:t0", "app:t1", "app:t2", "app:t3"]
    );
    for (d, size) in s.list_blobs().unwrap() {
        assert_eq!(Digest::of(&s.read_blob(&d).unwrap()), d);
        assert_eq!(s.blob_size(&d).unwrap(), size);
    }
    assert!(tmp_entries(&s).is_empty());
}

#[test]
fn gc_removes_unreferenced_blobs_and_df_counts() {
    let (_d, s) = store();
    let (c, m) = make_image(&s, "kept");
    s.put_image(&ImageRecord::new(c, m, OCI_MANIFEST)).unwrap();
    let referenced = s.referenced_blobs().unwrap();
    assert_eq!(referenced.len(), 3, "manifest, config, layer");
    let orphan = s.write_blob(b"orphan layer").unwrap();
    let cached = s.write_blob(b"build cache layer").unwrap();

    let df = s.df().unwrap();
    assert_eq!(df.images, 1);
    assert_eq!(df.blobs, 5);
    assert_eq!(
        df.reclaimable_bytes,
        (b"orphan layer".len() + b"build cache layer".len()) as u64
    );

    let report = s.gc(|d| *d == cached).unwrap();
    assert_eq!(report.removed, vec![orphan]);
    assert_eq!(report.freed, b"orphan layer".len() as u64);
    assert!(s.has_blob(&cached));
    for d in referenced {
        assert!(s.has_blob(&d));
    }

    // Once the image is gone, its blobs go too.
    s.remove_image(&c).unwrap();
    let report = s.gc(|_| false).unwrap();
    assert_eq!(report.removed.len(), 4);
    assert!(s.list_blobs().unwrap().is_empty());
}

#[test]
fn gc_follows_indexes() {
    let (_d, s) = store();
    let (c, m) = make_image(&s, "child");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{m}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    );
    let idx = s.write_blob(index.as_bytes()).unwrap();
    s.put_image(&ImageRecord::new(
        c,
        idx,
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();
    assert_eq!(s.gc(|_| false).unwrap().removed, Vec::<Digest>::new());
    assert!(s.has_blob(&m));
}

#[test]
fn gc_keeps_what_distribution_manifests_name() {
    let (_d, s) = store();
    let (c, m) = make_image(&s, "plain");
    let gz = s.write_blob(b"compressed copy of the layer").unwrap();
    let dist = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{c}","size":1}},"layers":[{{"digest":"{gz}","size":28}}]}}"#
    );
    let dist = s.write_blob(dist.as_bytes()).unwrap();
    let other = s.write_blob(b"unrelated").unwrap();
    let mut rec = ImageRecord::new(c, m, OCI_MANIFEST);
    rec.annotations.insert(
        format!("{}gzip", kiln_content::DISTRIBUTION_MANIFEST_PREFIX),
        dist.to_string(),
    );
    // An annotation outside the prefix keeps nothing.
    rec.annotations
        .insert("kiln.other".into(), other.to_string());
    s.put_image(&rec).unwrap();
    let report = s.gc(|_| false).unwrap();
    assert_eq!(report.removed, vec![other]);
    assert!(s.has_blob(&gz) && s.has_blob(&dist));
    s.remove_image(&c).unwrap();
    s.gc(|_| false).unwrap();
    assert!(!s.has_blob(&gz) && !s.has_blob(&dist));
}

#[test]
fn gc_waits_for_leases() {
    let (_d, s) = store();
    let lease = s.lease().unwrap();
    let orphan = s.write_blob(b"being pulled").unwrap();
    let s2 = s.clone();
    let gc = thread::spawn(move || s2.gc(|_| false).unwrap());
    thread::sleep(Duration::from_millis(200));
    assert!(s.has_blob(&orphan), "gc must not run while a lease is held");
    assert!(!gc.is_finished());
    drop(lease);
    let report = gc.join().unwrap();
    assert_eq!(report.removed, vec![orphan]);
}

#[test]
fn put_image_merges_tags_of_the_same_image() {
    let (_d, s) = store();
    let (c, m) = make_image(&s, "m");
    let mut a = ImageRecord::new(c, m, OCI_MANIFEST);
    a.repo_tags.push("a:1".into());
    s.put_image(&a).unwrap();
    let mut b = ImageRecord::new(c, m, OCI_MANIFEST);
    b.repo_tags.push("b:1".into());
    b.size = 9;
    s.put_image(&b).unwrap();
    let got = s.get_image(&c).unwrap().unwrap();
    assert_eq!(got.repo_tags, vec!["b:1", "a:1"]);
    assert_eq!(got.size, 9);
}

#[test]
fn a_puller_recording_its_image_while_gc_waits_does_not_deadlock() {
    let (_d, s) = store();
    let (tx, rx) = std::sync::mpsc::channel();
    let puller = {
        let s = s.clone();
        let tx = tx.clone();
        thread::spawn(move || {
            let _lease = s.lease().unwrap();
            let (c, m) = make_image(&s, "pulled");
            thread::sleep(Duration::from_millis(300)); // gc starts waiting meanwhile
            s.put_image(&ImageRecord::new(c, m, OCI_MANIFEST)).unwrap();
            tx.send("puller").unwrap();
            c
        })
    };
    thread::sleep(Duration::from_millis(100));
    let gc = {
        let s = s.clone();
        thread::spawn(move || {
            let r = s.gc(|_| false).unwrap();
            tx.send("gc").unwrap();
            r
        })
    };
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("deadlock");
    let second = rx.recv_timeout(Duration::from_secs(20)).expect("deadlock");
    assert_eq!((first, second), ("puller", "gc"));
    let id = puller.join().unwrap();
    assert!(
        gc.join().unwrap().removed.is_empty(),
        "the recorded image keeps its blobs"
    );
    assert_eq!(s.referenced_blobs().unwrap().len(), 3);
    assert!(s.get_image(&id).unwrap().is_some());
}

#[test]
fn metadata_write_leftovers_are_cleaned_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let recs = s.records::<Container>("containers").unwrap();
    recs.put(&ctr("a1", "one")).unwrap();
    // What a process killed between create and rename leaves behind.
    std::fs::write(s.root().join("images/.tmp-4242-0"), b"{half").unwrap();
    std::fs::write(s.root().join("records/containers/.tmp-4242-1"), b"{half").unwrap();
    assert!(s.list_images().unwrap().is_empty());
    assert_eq!(recs.list().unwrap().len(), 1);
    // Not removed while the store lock is held elsewhere.
    let guard = s.lock().unwrap();
    Store::open(dir.path()).unwrap();
    assert!(s.root().join("images/.tmp-4242-0").exists());
    drop(guard);
    Store::open(dir.path()).unwrap();
    assert!(!s.root().join("images/.tmp-4242-0").exists());
    assert!(!s.root().join("records/containers/.tmp-4242-1").exists());
    assert_eq!(recs.get("a1").unwrap().unwrap().name, "one");
}
