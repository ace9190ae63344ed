//! The `docker image inspect` and `docker history` views of a stored image.
//!
//! They sit above both `image.rs` (reading the image) and `size.rs`
//! (unpacked layer sizes), so neither of those imports the other's users.

use kiln_content::Store;
use kiln_model::Digest;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::image::read_image;
use crate::{Result, Timestamp};

/// `docker image inspect` for image `id`: an object with `Id`, `RepoTags`,
/// `RepoDigests`, `Parent`, `Comment`, `Created`, `DockerVersion`, `Author`,
/// `Config` (Docker's container config with its usual empty defaults filled
/// in), `Architecture`, `Variant` (when set), `Os`, `Size` (compressed bytes:
/// config plus layer blobs), `RootFS` (`Type`, `Layers` = diff IDs) and
/// `Metadata`. The CLI prints it inside a JSON array, as Docker does.
pub fn inspect(store: &Store, id: &Digest) -> Result<Value> {
    let img = read_image(store, id)?;
    let cfg = &img.config;
    let extra_str = |k: &str| {
        cfg.extra
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut container = match &cfg.config {
        Some(c) => serde_json::to_value(c).expect("container config serializes"),
        None => Value::Object(Map::new()),
    };
    if let Value::Object(map) = &mut container {
        let defaults = [
            ("Hostname", json!("")),
            ("Domainname", json!("")),
            ("User", json!("")),
            ("AttachStdin", json!(false)),
            ("AttachStdout", json!(false)),
            ("AttachStderr", json!(false)),
            ("Tty", json!(false)),
            ("OpenStdin", json!(false)),
            ("StdinOnce", json!(false)),
            ("Env", Value::Null),
            ("Cmd", Value::Null),
            ("Image", json!("")),
            ("Volumes", Value::Null),
            ("WorkingDir", json!("")),
            ("Entrypoint", Value::Null),
            ("OnBuild", Value::Null),
            ("Labels", Value::Null),
        ];
        for (k, v) in defaults {
            map.entry(k).or_insert(v);
        }
    }
    let mut out = Map::new();
    out.insert("Id".into(), json!(img.record.id.to_string()));
    out.insert("RepoTags".into(), json!(img.record.repo_tags));
    out.insert("RepoDigests".into(), json!(img.record.repo_digests));
    // Set for images made here (built or committed), as Docker's legacy
    // builder sets it; pulled images have none.
    let parent = img
        .record
        .annotations
        .get(kiln_content::PARENT_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    out.insert("Parent".into(), json!(parent));
    out.insert("Comment".into(), json!(extra_str("comment")));
    out.insert(
        "Created".into(),
        json!(cfg.created.clone().unwrap_or_default()),
    );
    out.insert("DockerVersion".into(), json!(extra_str("docker_version")));
    out.insert(
        "Author".into(),
        json!(cfg.author.clone().unwrap_or_default()),
    );
    out.insert("Config".into(), container);
    out.insert("Architecture".into(), json!(cfg.architecture));
    if let Some(v) = &cfg.variant {
        out.insert("Variant".into(), json!(v));
    }
    out.insert("Os".into(), json!(cfg.os));
    let size = crate::size::image_size(store, &img)
        .ok()
        .flatten()
        .unwrap_or(img.record.size);
    out.insert("Size".into(), json!(size));
    out.insert(
        "RootFS".into(),
        json!({"Type": cfg.rootfs.kind, "Layers": cfg.rootfs.diff_ids}),
    );
    out.insert(
        "Metadata".into(),
        json!({"LastTagTime": "0001-01-01T00:00:00Z"}),
    );
    Ok(Value::Object(out))
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// The image whose last step this row is: the top row's image, and each
    /// image of its local parent chain (a build's intermediate images, the
    /// base it was built on); `None` (shown `<missing>`) elsewhere, as Docker
    /// shows them.
    pub id: Option<Digest>,
    /// When the step ran (`None` if the config has no or a bad time).
    pub created: Option<Timestamp>,
    /// The step's command (`/bin/sh -c #(nop)  CMD ["sh"]`).
    pub created_by: String,
    /// Size of the step's layer in bytes: unpacked, as Docker counts it,
    /// once the layer was unpacked or committed here (see
    /// [`layer_sizes`](crate::layer_sizes)), else its blob's size; 0 for
    /// steps that made no layer.
    pub size: u64,
    /// The step's comment.
    pub comment: String,
    /// Whether the step made no layer.
    pub empty_layer: bool,
}

/// The rows `docker history IMAGE` shows for image `id`, newest first.
/// An image whose config has no history gets one row per layer.
pub fn history(store: &Store, id: &Digest) -> Result<Vec<HistoryRow>> {
    let img = read_image(store, id)?;
    // Unpacked sizes where measured, as Docker shows them; else the blob's.
    let measured = crate::size::layer_sizes(store, &img).unwrap_or_default();
    let sizes: Vec<u64> = img
        .manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| measured.get(i).copied().flatten().unwrap_or(l.size))
        .collect();
    let mut layers = sizes.iter().copied();
    let mut rows = Vec::new();
    if img.config.history.is_empty() {
        for l in layers {
            rows.push(HistoryRow {
                id: None,
                created: None,
                created_by: String::new(),
                size: l,
                comment: String::new(),
                empty_layer: false,
            });
        }
    } else {
        for h in &img.config.history {
            let size = if h.empty_layer {
                0
            } else {
                layers.next().unwrap_or(0)
            };
            rows.push(HistoryRow {
                id: None,
                created: h.created.as_deref().and_then(|c| c.parse().ok()),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
                empty_layer: h.empty_layer,
            });
        }
    }
    // Docker shows an image ID on the last row of each image of the local
    // parent chain (a build's intermediate images), `<missing>` elsewhere.
    let mut cur = Some(img.record.id);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = cur.take() {
        if !seen.insert(id) {
            break;
        }
        let Ok(Some(rec)) = store.get_image(&id) else {
            break;
        };
        let Ok(cfg) = crate::image_config(store, &id) else {
            break;
        };
        let n = cfg.history.len();
        if n == 0 || n > rows.len() {
            break;
        }
        if rows[n - 1].id.is_none() {
            rows[n - 1].id = Some(id);
        }
        cur = rec
            .annotations
            .get(kiln_content::PARENT_ANNOTATION)
            .and_then(|p| p.parse().ok());
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = Some(img.record.id);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{sample, store};

    #[test]
    fn inspect_has_docker_shape() {
        let (_t, s) = store();
        let r = sample(&s);
        let v = inspect(&s, &r.id).unwrap();
        assert_eq!(v["Id"], json!(r.id.to_string()));
        assert_eq!(v["RepoTags"], json!(["example/app:1"]));
        assert_eq!(v["Created"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(v["Config"]["Entrypoint"], Value::Null);
        assert_eq!(v["Config"]["WorkingDir"], json!(""));
        assert_eq!(v["Architecture"], json!("amd64"));
        assert_eq!(v["Os"], json!("linux"));
        assert_eq!(v["RootFS"]["Type"], json!("layers"));
        assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
        assert_eq!(v["Size"], json!(r.size));
    }

    #[test]
    fn history_is_newest_first_with_sizes() {
        let (_t, s) = store();
        let r = sample(&s);
        let rows = history(&s, &r.id).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, Some(r.id));
        assert!(rows[0].empty_layer);
        assert_eq!(rows[0].size, 0);
        assert!(rows[0].created_by.contains("CMD"));
        assert_eq!(rows[1].id, None);
        assert_eq!(rows[1].size, 16);
        assert_eq!(rows[1].created, Some(Timestamp::from_unix(1_700_000_000)));
    }
}
