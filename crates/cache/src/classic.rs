//! Docker's classic `--cache-from IMAGE`: an image (pulled, loaded, or
//! built elsewhere) is a cache source for every step whose parent is a
//! prefix of it. A step on parent P hits when P's history and layers are
//! the first entries of the image's, and the image's next history entry was
//! made by the same instruction (its `created_by` is the step's key: a
//! step with kiln-only flags, whose key carries more, never hits). The hit
//! is the image itself at its last step; before that, an image cut from it:
//! P's history and layers plus that entry and its layer, with the config
//! the step would have given. Only what the store has is used.

use kiln_builder::ImageId;
use kiln_content::{ImageRecord, Store};
use kiln_model::ContainerConfig;
use kiln_model::Digest;
use serde_json::{Map, Value, json};

use crate::blobs::{history_and_layers, read_json};

/// An image used as a cache source, read once.
pub(crate) struct Target {
    id: Digest,
    config: Value,
    history: Vec<Value>,
    diff_ids: Vec<Value>,
    /// The manifest's layer descriptors, one per diffID.
    layers: Vec<Value>,
}

fn empty_layer(h: &Value) -> bool {
    h.get("empty_layer").and_then(Value::as_bool) == Some(true)
}

/// Reads image `id` of `store` as a cache source.
pub(crate) fn load(store: &Store, id: &Digest) -> Result<Target, String> {
    let rec = store
        .get_image(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("image {id} is not in the store"))?;
    let config = read_json(store, id, "config")?;
    let manifest = read_json(store, &rec.manifest_digest, "manifest")?;
    let (history, diff_ids) = history_and_layers(&config);
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let with_layer = history.iter().filter(|h| !empty_layer(h)).count();
    if layers.len() != diff_ids.len() || with_layer != diff_ids.len() {
        return Err(format!(
            "image {id}: {} layers, {} diffIDs and {with_layer} history entries with a layer do not match",
            layers.len(),
            diff_ids.len()
        ));
    }
    Ok(Target {
        id: *id,
        config,
        history,
        diff_ids,
        layers,
    })
}

/// The image that running the step `key` on `parent` gives according to
/// `t`, made in `store` when it is a cut; `None` when `t` does not have
/// that step on that parent.
pub(crate) fn cut(
    store: &Store,
    t: &Target,
    parent: Option<&ImageId>,
    key: &str,
    step_config: &ContainerConfig,
) -> Result<Option<Digest>, String> {
    let (p_history, p_layers) = match parent {
        Some(p) => {
            let d: Digest = p.0.parse().map_err(|e| format!("image {p}: {e}"))?;
            history_and_layers(&read_json(store, &d, "config")?)
        }
        None => (Vec::new(), Vec::new()),
    };
    let n = p_history.len();
    if n >= t.history.len()
        || t.history[..n] != p_history[..]
        || p_layers.len() > t.diff_ids.len()
        || t.diff_ids[..p_layers.len()] != p_layers[..]
    {
        return Ok(None);
    }
    let step = &t.history[n];
    if step.get("created_by").and_then(Value::as_str) != Some(key) {
        return Ok(None);
    }
    let layer_count = p_layers.len() + usize::from(!empty_layer(step));
    if layer_count > t.diff_ids.len() {
        return Ok(None);
    }
    if n + 1 == t.history.len() {
        return Ok((layer_count == t.diff_ids.len()).then_some(t.id));
    }
    let mut config = Map::new();
    for k in [
        "architecture",
        "os",
        "variant",
        "os.version",
        "os.features",
        "author",
    ] {
        if let Some(v) = t.config.get(k) {
            config.insert(k.to_string(), v.clone());
        }
    }
    if let Some(c) = step.get("created") {
        config.insert("created".into(), c.clone());
    }
    config.insert(
        "config".into(),
        serde_json::to_value(step_config).map_err(|e| e.to_string())?,
    );
    config.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": &t.diff_ids[..layer_count]}),
    );
    config.insert("history".into(), Value::Array(t.history[..=n].to_vec()));
    let config = serde_json::to_vec(&Value::Object(config)).map_err(|e| e.to_string())?;
    let id = store.write_blob(&config).map_err(|e| e.to_string())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": kiln_registry::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": id.to_string(),
            "size": config.len(),
        },
        "layers": &t.layers[..layer_count],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = store.write_blob(&manifest).map_err(|e| e.to_string())?;
    let mut rec = ImageRecord::new(id, manifest_digest, kiln_registry::OCI_MANIFEST);
    rec.created = step
        .get("created")
        .and_then(Value::as_str)
        .map(str::to_string);
    rec.size = config.len() as u64;
    store.put_image(&rec).map_err(|e| e.to_string())?;
    Ok(Some(id))
}
