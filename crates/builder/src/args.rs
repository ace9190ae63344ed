//! Build-argument scoping as Docker/BuildKit define it.
//!
//! - ARGs before the first FROM are global: usable in FROM lines, and inside
//!   a stage only after being redeclared (`ARG NAME` takes the global value).
//! - A stage ARG's value is the `--build-arg` value, else its default, else
//!   the global value; it is visible from its declaration to the stage's end.
//! - ENV wins over ARG of the same name.
//! - The predefined proxy args (`HTTP_PROXY`, ...) are usable from
//!   `--build-arg` without a declaration and stay out of history and the cache.
//! - The platform args (`TARGETPLATFORM`, `BUILDARCH`, ...) are set
//!   automatically in the global scope and need `ARG` to be seen in a stage.

use std::collections::{BTreeMap, BTreeSet};

use kiln_model::{ContainerConfig, Platform};

/// Proxy args Docker accepts without a declaration.
pub(crate) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The automatic platform args for `target` and `build` platforms.
pub(crate) fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

/// The args visible in one stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageArgs {
    /// Global values (meta ARGs after `--build-arg`, platform args).
    global: BTreeMap<String, String>,
    /// `--build-arg` values.
    build_args: BTreeMap<String, String>,
    /// Declared in this stage, in order, with their value (`None`: unset).
    declared: Vec<(String, Option<String>)>,
}

impl StageArgs {
    pub(crate) fn new(
        global: BTreeMap<String, String>,
        build_args: BTreeMap<String, String>,
    ) -> StageArgs {
        StageArgs {
            global,
            build_args,
            declared: Vec::new(),
        }
    }

    /// Declares `name` with an (already expanded) default.
    pub(crate) fn declare(&mut self, name: &str, default: Option<String>) {
        let value = self
            .build_args
            .get(name)
            .cloned()
            .or(default)
            .or_else(|| self.global.get(name).cloned());
        self.declared.retain(|(n, _)| n != name);
        self.declared.push((name.to_string(), value));
    }

    /// The declared args that have a value, in declaration order.
    fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.declared
            .iter()
            .filter_map(|(n, v)| v.as_deref().map(|v| (n.as_str(), v)))
    }

    /// The environment for word expansion: args, then the config's ENV
    /// (later entries win, so ENV overrides ARG).
    pub(crate) fn expansion_env(&self, config: &ContainerConfig) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .values()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        env.extend(config.env_pairs());
        env
    }

    /// The args a RUN step sees and records (`|N K=V ...`): declared, with a
    /// value, not overridden by ENV, sorted. Proxy args count only when declared.
    pub(crate) fn run_args(&self, config: &ContainerConfig) -> Vec<String> {
        let env: BTreeSet<String> = config.env_pairs().into_iter().map(|(k, _)| k).collect();
        let mut out: Vec<String> = self
            .values()
            .filter(|(n, _)| !env.contains(*n))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        out.sort();
        out
    }

    /// The process environment of a RUN step: ENV, the visible args, and the
    /// undeclared proxy args given with `--build-arg` (never recorded).
    pub(crate) fn run_env(&self, config: &ContainerConfig) -> Vec<String> {
        let mut env: Vec<String> = config.env.clone().unwrap_or_default();
        let env_keys: BTreeSet<String> = config.env_pairs().into_iter().map(|(k, _)| k).collect();
        for (n, v) in self.values() {
            if !env_keys.contains(n) {
                env.push(format!("{n}={v}"));
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.build_args.get(*p)
                && !env_keys.contains(*p)
                && !self.declared.iter().any(|(n, _)| n == p)
            {
                env.push(format!("{p}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            );
        }
        env
    }
}

/// Computes the global scope: platform args, then meta ARGs in order (each
/// default expanded with the scope so far), `--build-arg` overriding.
pub(crate) fn global_scope(
    meta: &[(String, Option<String>)],
    build_args: &BTreeMap<String, String>,
    platform: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut scope = platform;
    for (name, default) in meta {
        if let Some(v) = build_args.get(name).cloned().or_else(|| default.clone()) {
            scope.insert(name.clone(), v);
        }
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ba(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scoping_rules() {
        let build = ba(&[
            ("B", "from-cli"),
            ("HTTP_PROXY", "http://p"),
            ("G", "g-cli"),
        ]);
        let global = global_scope(
            &[
                ("G".into(), Some("g-default".into())),
                ("V".into(), Some("1".into())),
            ],
            &build,
            BTreeMap::new(),
        );
        assert_eq!(global.get("G").map(String::as_str), Some("g-cli"));
        let mut s = StageArgs::new(global, build);
        let cfg = ContainerConfig::default();
        // Globals are not visible until redeclared.
        assert!(s.expansion_env(&cfg).is_empty());
        s.declare("V", None);
        s.declare("A", Some("a".into()));
        s.declare("B", Some("b".into()));
        s.declare("U", None);
        assert_eq!(s.run_args(&cfg), ["A=a", "B=from-cli", "V=1"]);
        // ENV overrides ARG.
        let mut cfg = ContainerConfig::default();
        cfg.env_set("A", "env");
        assert_eq!(s.run_args(&cfg), ["B=from-cli", "V=1"]);
        let env = s.run_env(&cfg);
        assert!(env.contains(&"A=env".to_string()));
        assert!(
            env.contains(&"HTTP_PROXY=http://p".to_string()),
            "proxy args reach RUN"
        );
        assert!(
            !s.run_args(&cfg).iter().any(|a| a.starts_with("HTTP_PROXY")),
            "but are not recorded"
        );
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        let exp = s.expansion_env(&cfg);
        assert_eq!(
            exp.last().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("A", "env"))
        );
    }

    #[test]
    fn platform_args_are_named_as_buildkit() {
        let t: Platform = "linux/arm/v7".parse().expect("platform");
        let b: Platform = "linux/amd64".parse().expect("platform");
        let m = platform_args(&t, &b);
        assert_eq!(m["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(m["TARGETVARIANT"], "v7");
        assert_eq!(m["BUILDARCH"], "amd64");
    }
}
