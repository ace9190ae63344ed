//! The image configuration model: Docker's image config JSON (a superset of
//! the OCI image configuration) and the container config inside it, with
//! every field Docker writes and any unknown field preserved, serialized
//! deterministically.
//!
//! oci-spec's `ImageConfiguration` drops Docker's `Healthcheck`, `OnBuild`,
//! `Shell` and `ArgsEscaped`, and keeps labels and ports in `HashMap`s whose
//! order changes between runs; kiln needs both the Docker fields and
//! byte-identical output, so the config is modelled here with `BTreeMap`s and a
//! catch-all for fields this crate does not know, at the top level, in
//! `config` and in each history entry. The builder edits [`ContainerConfig`]
//! and kiln-image writes the [`ImageConfig`] around it: the same value, so a
//! base image's unknown fields reach the built image unchanged.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole image configuration blob (`application/vnd.oci.image.config.v1+json`
/// or Docker's `application/vnd.docker.container.image.v1+json`).
///
/// Fields serialize in a fixed order, maps are sorted, and fields this type
/// does not model are kept in [`ImageConfig::extra`] and written back, so
/// `from_json` then [`ImageConfig::to_json`] loses nothing but `null` values
/// and formatting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (`amd64`, `arm64`, ... as Go's GOARCH).
    #[serde(default)]
    pub architecture: String,
    /// Author of the image (Dockerfile `MAINTAINER`, `commit -a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Default execution parameters for containers of this image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// Creation time, RFC 3339 (kiln-image's `Timestamp` writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// One entry per build step, including steps that made no layer
    /// (`empty_layer: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// The layers' diff IDs, bottom first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// CPU variant (`v8` for arm64, `v7` for arm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Every other top-level field (`container`, `container_config`,
    /// `docker_version`, `os.features`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Docker's container configuration, the `config` object of an image config.
///
/// Field names are Docker's (PascalCase). Fields not modelled here
/// (`Hostname`, `AttachStdin`, `Image`, ...) are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`: `name`, `uid`, `name:group`, `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: `80/tcp`, `53/udp` (serialized as Docker's `{"80/tcp":{}}`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "set_as_map")]
    pub exposed_ports: Option<BTreeSet<String>>,
    /// `ENV`: `KEY=value` entries, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT` in exec form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD` in exec form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Set by Docker on Windows shell-form commands; kept for round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// `VOLUME`: container paths (serialized as `{"/data":{}}`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "set_as_map")]
    pub volumes: Option<BTreeSet<String>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `ONBUILD` triggers, as the instruction text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Docker's `Healthcheck` object. Durations are nanoseconds, as Go's
/// `time.Duration` marshals them; 0 or absent means "inherit the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`; empty
    /// inherits the parent's test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time before a check is considered hung, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period for the container to initialize, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Time between checks during the start period, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The `rootfs` object: the layers' diff IDs (sha256 of the uncompressed
/// tars), bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:<hex>` diff IDs, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry. Entries with `empty_layer: true` made no layer; the
/// others match `rootfs.diff_ids` one to one, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made the step (`/bin/sh -c #(nop)  CMD ["sh"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free comment (`commit -m`, `Imported from -`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageConfig {
    /// The platform the config names (`os` defaults to `linux`); `None`
    /// when it names no architecture.
    pub fn platform(&self) -> Option<crate::Platform> {
        if self.architecture.is_empty() {
            return None;
        }
        let os = if self.os.is_empty() {
            "linux"
        } else {
            &self.os
        };
        Some(crate::Platform::new(
            os,
            &self.architecture,
            self.variant.as_deref(),
        ))
    }

    /// A new, empty configuration for `os`/`architecture` (no layers, no
    /// history, no container config).
    pub fn new(os: &str, architecture: &str) -> ImageConfig {
        ImageConfig {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            ..ImageConfig::default()
        }
    }

    /// Parses a config blob. Unknown fields are kept.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<ImageConfig> {
        serde_json::from_slice(bytes)
    }

    /// Serializes to compact JSON with a stable key order: the same value
    /// always gives the same bytes (and so the same image ID).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("image config serialization cannot fail: string keys only")
    }

    /// The container config, created empty if absent, for editing.
    pub fn container_config_mut(&mut self) -> &mut ContainerConfig {
        self.config.get_or_insert_with(ContainerConfig::default)
    }

    /// Appends a layer: its diff ID to `rootfs.diff_ids` and `entry` (with
    /// `empty_layer` forced to false) to `history`.
    pub fn push_layer(&mut self, diff_id: &str, mut entry: History) {
        entry.empty_layer = false;
        self.rootfs.diff_ids.push(diff_id.to_owned());
        self.history.push(entry);
    }

    /// Appends a history entry for a step that made no layer (`empty_layer`
    /// forced to true).
    pub fn push_empty_history(&mut self, mut entry: History) {
        entry.empty_layer = true;
        self.history.push(entry);
    }
}

impl ContainerConfig {
    /// The value of environment variable `key`, if set.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                (k == key).then_some(v)
            })
    }

    /// Sets `key=value`, replacing an existing entry in place (Docker keeps
    /// the position).
    pub fn env_set(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }

    /// The environment as (key, value) pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// The shell used for shell-form commands: `SHELL` or `/bin/sh -c`.
    pub fn shell_or_default(&self) -> Vec<String> {
        self.shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }
}

/// Serde adapter for Go's `map[string]struct{}`: a sorted set of keys written
/// as `{"key":{}}`.
mod set_as_map {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    #[derive(Serialize)]
    struct Empty {}

    pub(super) fn serialize<S: Serializer>(
        set: &Option<BTreeSet<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match set {
            Some(set) => {
                let map: BTreeMap<&String, Empty> = set.iter().map(|k| (k, Empty {})).collect();
                map.serialize(serializer)
            }
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<BTreeSet<String>>, D::Error> {
        let map = Option::<BTreeMap<String, Value>>::deserialize(deserializer)?;
        Ok(map.map(|m| m.into_keys().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"app","AttachStdin":false,"ExposedPorts":{"443/tcp":{},"80/tcp":{}},"Env":["PATH=/usr/bin:/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"ArgsEscaped":true,"Image":"sha256:abc","Volumes":{"/data":{}},"WorkingDir":"/app","Entrypoint":null,"OnBuild":["RUN echo hi"],"Labels":{"b":"2","a":"1"},"StopSignal":"SIGINT","Shell":["/bin/bash","-c"]},"container":"deadbeef","created":"2024-01-02T03:04:05.123456789Z","docker_version":"20.10.7","history":[{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop) ADD file:x in / "},{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]}}"#;

    #[test]
    fn docker_fields_round_trip() {
        let cfg = ImageConfig::from_json(DOCKER_CONFIG.as_bytes()).unwrap();
        let c = cfg.config.as_ref().unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(c.on_build.as_ref().unwrap(), &["RUN echo hi"]);
        assert_eq!(c.shell.as_ref().unwrap(), &["/bin/bash", "-c"]);
        assert_eq!(c.extra["Hostname"], Value::String(String::new()));
        assert_eq!(cfg.extra["docker_version"], Value::String("20.10.7".into()));
        assert!(cfg.history[1].empty_layer);
        // Reparsing our output gives the same value and the same bytes.
        let out = cfg.to_json();
        let again = ImageConfig::from_json(&out).unwrap();
        assert_eq!(again, cfg);
        assert_eq!(again.to_json(), out);
        // Every non-null field of the input survives.
        let input: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let output: Value = serde_json::from_slice(&out).unwrap();
        let mut input_cfg = input["config"].clone();
        input_cfg.as_object_mut().unwrap().remove("Entrypoint");
        assert_eq!(output["config"], input_cfg);
        assert_eq!(output["history"], input["history"]);
        assert_eq!(output["container"], input["container"]);
    }

    #[test]
    fn maps_are_sorted_and_go_sets_are_objects() {
        let mut cfg = ImageConfig::new("linux", "amd64");
        let c = cfg.container_config_mut();
        c.exposed_ports = Some(["8080/tcp".to_owned(), "53/udp".to_owned()].into());
        c.labels = Some(
            [
                ("z".to_owned(), "1".to_owned()),
                ("a".to_owned(), "2".to_owned()),
            ]
            .into(),
        );
        let json = String::from_utf8(cfg.to_json()).unwrap();
        assert!(
            json.contains(r#""ExposedPorts":{"53/udp":{},"8080/tcp":{}}"#),
            "{json}"
        );
        assert!(json.contains(r#""Labels":{"a":"2","z":"1"}"#), "{json}");
        assert!(
            json.starts_with(r#"{"architecture":"amd64","config":"#),
            "{json}"
        );
        assert!(
            json.contains(r#""rootfs":{"type":"layers","diff_ids":[]}"#),
            "{json}"
        );
    }

    #[test]
    fn push_layer_and_empty_history() {
        let mut cfg = ImageConfig::new("linux", "arm64");
        cfg.push_layer(
            "sha256:aa",
            History {
                created_by: Some("RUN x".into()),
                empty_layer: true,
                ..Default::default()
            },
        );
        cfg.push_empty_history(History::default());
        assert_eq!(cfg.rootfs.diff_ids, ["sha256:aa"]);
        assert!(!cfg.history[0].empty_layer);
        assert!(cfg.history[1].empty_layer);
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(ImageConfig::from_json(b"{\"rootfs\": 3}").is_err());
    }
    #[test]
    fn unknown_fields_survive_a_read_modify_write_at_every_level() {
        let json = br#"{"architecture":"amd64","os":"linux","moby.future":{"x":[1,2]},"config":{"Env":["PATH=/bin"],"Hostname":"h","Future":{"deep":true}},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","future":7}]}"#;
        let mut cfg = ImageConfig::from_json(json).unwrap();
        let c = cfg.container_config_mut();
        c.env_set("A", "1");
        c.cmd = Some(vec!["sh".into()]);
        cfg.push_empty_history(History::default());
        let out: Value = serde_json::from_slice(&cfg.to_json()).unwrap();
        assert_eq!(out["moby.future"], serde_json::json!({"x": [1, 2]}));
        assert_eq!(out["config"]["Future"], serde_json::json!({"deep": true}));
        assert_eq!(out["config"]["Hostname"], "h");
        assert_eq!(
            out["config"]["Env"],
            serde_json::json!(["PATH=/bin", "A=1"])
        );
        assert_eq!(out["history"][0]["future"], 7);
    }

    #[test]
    fn env_helpers() {
        let mut c = ContainerConfig::default();
        c.env_set("PATH", "/bin");
        c.env_set("A", "1=2");
        c.env_set("PATH", "/usr/bin");
        assert_eq!(c.env.as_deref().unwrap(), ["PATH=/usr/bin", "A=1=2"]);
        assert_eq!(c.env_get("A"), Some("1=2"));
        assert_eq!(c.env_get("B"), None);
        assert_eq!(
            c.env_pairs(),
            [
                ("PATH".into(), "/usr/bin".into()),
                ("A".into(), "1=2".into())
            ]
        );
        assert_eq!(c.shell_or_default(), ["/bin/sh", "-c"]);
        c.shell = Some(vec!["bash".into()]);
        assert_eq!(c.shell_or_default(), ["bash"]);
    }
}
