//! Image references with Docker's normalisation: `busybox` becomes
//! `docker.io/library/busybox:latest`, `host:5000/app` keeps its registry,
//! and `name:tag@sha256:...` keeps both tag and digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
use kiln_model::Digest;

/// The registry a name without a registry part refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference: registry, repository, and a tag
/// and/or a digest.
///
/// When neither a tag nor a digest is given the tag is `latest`; a
/// reference with only a digest has no tag.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input` (same as `input.parse()`).
    pub fn parse(input: &str) -> Result<Reference, Error> {
        input.parse()
    }

    /// The registry host (with port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when the input named neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pinned one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker prints it: `busybox`, `user/app`,
    /// `127.0.0.1:5000/busybox`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as Docker prints it: `busybox:latest`, `user/app:1`,
    /// `busybox@sha256:...`, `127.0.0.1:5000/busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The familiar `name:tag` form, using `latest` when there is no tag.
    pub fn familiar_tagged(&self) -> String {
        format!(
            "{}:{}",
            self.familiar_name(),
            self.tag.as_deref().unwrap_or(DEFAULT_TAG)
        )
    }

    /// The familiar `name@digest` form for `digest`.
    pub fn familiar_digested(&self, digest: &Digest) -> String {
        format!("{}@{}", self.familiar_name(), digest)
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        check_tag(tag).map_err(|reason| Error::InvalidReference {
            input: format!("{}:{}", self.name(), tag),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Whether the repository's familiar name is a digest algorithm
    /// (`sha256:<hex>` reads as the repository `sha256` tagged `<hex>`).
    /// Docker refuses to create such a tag, as it would be ambiguous with
    /// an image ID; [`Store::tag_image`](crate::Store::tag_image) does too.
    pub fn is_digest_algorithm_name(&self) -> bool {
        self.familiar_name() == "sha256"
    }

    /// Whether both references name the same registry and repository.
    pub fn same_repository(&self, other: &Reference) -> bool {
        self.registry == other.registry && self.repository == other.repository
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_path_component(c: &str) -> Result<(), String> {
    let b = c.as_bytes();
    if b.is_empty() {
        return Err("empty path component".into());
    }
    if b.iter().any(|x| x.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    if !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return Err(format!(
            "path component {c:?} must start and end with a lowercase letter or digit"
        ));
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        // separator: `.`, `_`, `__`, or `-`+
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            other => {
                return Err(format!(
                    "invalid character {:?} in repository name",
                    other as char
                ));
            }
        }
        if i >= b.len() || !is_lower_alnum(b[i]) {
            return Err(format!(
                "invalid separator {:?} in repository name",
                &c[start..i.min(c.len())]
            ));
        }
    }
    Ok(())
}

fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // IPv6 literal
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid registry host {d:?}"))?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("invalid registry host {d:?}"));
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("invalid registry host {d:?}")),
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid port in registry {d:?}"));
    }
    if let Some(h) = host {
        for comp in h.split('.') {
            let b = comp.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return Err(format!("invalid registry host {d:?}"));
            }
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    if b.is_empty() {
        return Err("empty tag".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if !word(b[0]) {
        return Err(format!(
            "invalid tag {t:?}: must start with a letter, digit or underscore"
        ));
    }
    if let Some(bad) = b.iter().find(|&&x| !(word(x) || x == b'.' || x == b'-')) {
        return Err(format!(
            "invalid tag {t:?}: character {:?} not allowed (only letters, digits, '_', '.', '-')",
            *bad as char
        ));
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Reference, Error> {
        let err = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference".into()));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Docker's wording (distribution/reference).
            return Err(err(format!(
                "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| err(e.to_string()))?),
            ),
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(err)?;
        }
        if name.is_empty() {
            return Err(err("empty repository name".into()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(err(format!(
                "repository name longer than {MAX_NAME_LEN} characters"
            )));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                check_domain(first).map_err(err)?;
                let reg = if first == "index.docker.io" {
                    DEFAULT_REGISTRY
                } else {
                    first
                };
                (reg.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            // Docker's wording: the whole repository path is named.
            return Err(err(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        for comp in path.split('/') {
            check_path_component(comp).map_err(err)?;
        }
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(err(format!(
                "repository name longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository: path,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    /// The full normalised form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            ("user/app:1", "docker.io/user/app:1", "user/app:1"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "host:5000/app",
                "host:5000/app:latest",
                "host:5000/app:latest",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "127.0.0.1:5000/busybox",
                "127.0.0.1:5000/busybox:latest",
                "127.0.0.1:5000/busybox:latest",
            ),
            (
                "quay.io/a/b/c:v-1.2_x",
                "quay.io/a/b/c:v-1.2_x",
                "quay.io/a/b/c:v-1.2_x",
            ),
            (
                "a__b/c-d.e--f",
                "docker.io/a__b/c-d.e--f:latest",
                "a__b/c-d.e--f:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let re = r(input);
            assert_eq!(re.to_string(), full, "{input}");
            assert_eq!(re.familiar(), familiar, "{input}");
            assert_eq!(r(full), re, "round trip {input}");
        }
    }

    #[test]
    fn accessors() {
        let re = r("127.0.0.1:5000/team/app:v2");
        assert_eq!(re.registry(), "127.0.0.1:5000");
        assert_eq!(re.repository(), "team/app");
        assert_eq!(re.tag(), Some("v2"));
        assert_eq!(re.digest(), None);
        assert_eq!(re.name(), "127.0.0.1:5000/team/app");
    }

    #[test]
    fn digests_and_tag_with_digest() {
        let re = r(&format!("busybox@{D}"));
        assert_eq!(re.tag(), None);
        assert_eq!(re.digest().map(|d| d.to_string()).as_deref(), Some(D));
        assert_eq!(re.familiar(), format!("busybox@{D}"));
        assert_eq!(re.familiar_tagged(), "busybox:latest");

        let both = r(&format!("localhost:5000/app:1@{D}"));
        assert_eq!(both.tag(), Some("1"));
        assert!(both.digest().is_some());
        assert_eq!(both.to_string(), format!("localhost:5000/app:1@{D}"));

        let t = both.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/app:2");
        assert!(both.with_tag("-x").is_err());
    }

    #[test]
    fn clear_errors() {
        let e = |s: &str| s.parse::<Reference>().unwrap_err().to_string();
        assert!(
            e("Busybox").contains("must be lowercase"),
            "{}",
            e("Busybox")
        );
        assert!(e("user/App").contains("must be lowercase"));
        assert!(
            e("busybox:bad!tag").contains("invalid tag"),
            "{}",
            e("busybox:bad!tag")
        );
        assert!(e("busybox:-x").contains("invalid tag"));
        assert!(e(&format!("a:{}", "x".repeat(129))).contains("tag longer"));
        assert!(e(&"a".repeat(300)).contains("longer than 255"));
        assert!(e("").contains("empty"));
        assert!(e("a//b").contains("empty path component"));
        assert!(e("busybox@sha256:abc").contains("invalid digest"));
        assert!(e("bad_-x").contains("invalid"));
        assert!(e("host:port/app").contains("invalid port"));
        assert!(e(&"a".repeat(64)).contains("cannot specify 64-byte hexadecimal strings"));
        // Docker's wording, naming the whole repository path.
        assert!(
            e("Upper:tag").contains(
                "invalid reference format: repository name (library/Upper) must be lowercase"
            ),
            "{}",
            e("Upper:tag")
        );
        assert!(e("user/Upper").contains("repository name (user/Upper) must be lowercase"));
        // An upper-case first component is a registry host, as in Docker.
        assert_eq!(r("Upper/case:tag").registry(), "Upper");
        assert!(r(&format!("sha256:{}", "0".repeat(64))).is_digest_algorithm_name());
        assert!(!r("busybox").is_digest_algorithm_name());
        assert!(e("-a").contains("must start"));
        // every message names the input
        assert!(e("Busybox").contains("\"Busybox\""));
    }

    #[test]
    fn serde_as_string() {
        let re = r("busybox");
        let j = serde_json::to_string(&re).unwrap();
        assert_eq!(j, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&j).unwrap(), re);
    }
}
