//! Credentials in Docker's `config.json`: reading them for a registry
//! (through the `docker_credential` crate, so `auths`, `credsStore` and
//! `credHelpers` all work) and writing `auths` entries on login.

use std::fs;
use std::io;
use std::path::Path;

use base64::Engine as _;

use crate::{Credentials, Error, Result};

/// The key Docker uses in `auths` for a registry host.
pub fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// Credentials for `registry` from the Docker config at `path`; anonymous
/// when the file or an entry for the registry is missing.
pub fn credentials(path: Option<&Path>, registry: &str) -> Result<Credentials> {
    let Some(path) = path else {
        return Ok(Credentials::Anonymous);
    };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(source) => {
            return Err(Error::DockerConfig {
                path: path.to_path_buf(),
                reason: source.to_string(),
            });
        }
    };
    use docker_credential::{CredentialRetrievalError as E, DockerCredential as C};
    match docker_credential::get_credential_from_reader(
        io::BufReader::new(file),
        &config_key(registry),
    ) {
        Ok(C::UsernamePassword(u, p)) => Ok(Credentials::Basic(u, p)),
        Ok(C::IdentityToken(t)) => Ok(Credentials::IdentityToken(t)),
        Err(E::NoCredentialConfigured) => Ok(Credentials::Anonymous),
        Err(e) => Err(Error::DockerConfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Writes (or replaces) the `auths` entry for `registry` in the Docker
/// config at `path`, keeping every other setting. The file is written
/// atomically with mode 0600.
pub fn save_login(path: &Path, registry: &str, username: &str, password: &str) -> Result<()> {
    let cfg_err = |reason: String| Error::DockerConfig {
        path: path.to_path_buf(),
        reason,
    };
    let mut doc: serde_json::Value = match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| cfg_err(e.to_string()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(cfg_err(e.to_string())),
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| cfg_err("not a json object".into()))?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| cfg_err("\"auths\" is not an object".into()))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(config_key(registry), serde_json::json!({ "auth": token }));
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| cfg_err(e.to_string()))?;
    write_private(path, &bytes).map_err(|e| cfg_err(e.to_string()))
}

/// Removes the `auths` entry for `registry`; returns whether there was one.
pub fn remove_login(path: &Path, registry: &str) -> Result<bool> {
    let cfg_err = |reason: String| Error::DockerConfig {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(cfg_err(e.to_string())),
    };
    let mut doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| cfg_err(e.to_string()))?;
    let removed = doc
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .and_then(|a| a.remove(&config_key(registry)))
        .is_some();
    if removed {
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| cfg_err(e.to_string()))?;
        write_private(path, &bytes).map_err(|e| cfg_err(e.to_string()))?;
    }
    Ok(removed)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".kiln-tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_read_back_keeping_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        assert!(matches!(
            credentials(Some(&path), "127.0.0.1:5000").unwrap(),
            Credentials::Anonymous
        ));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            r#"{"psFormat":"table","auths":{"other:1":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        save_login(&path, "127.0.0.1:5000", "user", "p:ss").unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "table");
        assert_eq!(doc["auths"]["other:1"]["auth"], "eDp5");
        assert_eq!(doc["auths"]["127.0.0.1:5000"]["auth"], "dXNlcjpwOnNz");
        match credentials(Some(&path), "127.0.0.1:5000").unwrap() {
            Credentials::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("user", "p:ss")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            credentials(Some(&path), "elsewhere:1").unwrap(),
            Credentials::Anonymous
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert!(remove_login(&path, "127.0.0.1:5000").unwrap());
        assert!(!remove_login(&path, "127.0.0.1:5000").unwrap());
        assert!(matches!(
            credentials(Some(&path), "127.0.0.1:5000").unwrap(),
            Credentials::Anonymous
        ));
    }

    #[test]
    fn docker_hub_key_and_bad_files() {
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(config_key("localhost:5000"), "localhost:5000");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        save_login(&path, "docker.io", "a", "b").unwrap();
        assert!(matches!(
            credentials(Some(&path), "docker.io").unwrap(),
            Credentials::Basic(..)
        ));
        fs::write(&path, "{not json").unwrap();
        let e = credentials(Some(&path), "docker.io")
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json"), "{e}");
        assert!(save_login(&path, "x", "a", "b").is_err());
    }
}
