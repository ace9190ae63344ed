//! `import`: a one-layer image from a rootfs tarball, as `docker import`
//! makes it, and the `--change` instructions that `import` and `commit`
//! apply to a config.

use std::io::{self, BufReader, Read, Write};

use kiln_content::{ImageRecord, Reference, Store};
use kiln_layer::{Compression, LayerWriter};
use tracing::debug;

use crate::archive::{decompress, sniff};
use crate::error::{layer_err, parse_digest};
use crate::image::write_image;
use crate::{Error, Result, Timestamp};
use kiln_model::Descriptor;
use kiln_model::{ContainerConfig, History, ImageConfig};

/// How [`import`] makes the image.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The image's `created` time (the caller reads the clock or
    /// `SOURCE_DATE_EPOCH`).
    pub created: Timestamp,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture, e.g. `amd64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v8`.
    pub variant: Option<String>,
    /// The history comment; Docker writes `Imported from -` (stdin) or
    /// `Imported from FILE`, or the `-m` message.
    pub comment: String,
    /// Compression of the stored layer (Docker uses gzip).
    pub compression: Compression,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            created: Timestamp::from_unix(0),
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            variant: None,
            comment: "Imported from -".to_owned(),
            compression: Compression::Gzip,
        }
    }
}

/// Makes a one-layer image from the rootfs tarball `input` (plain, gzip or
/// zstd) and records it, tagged `reference` when given.
///
/// The (decompressed) tarball is the layer, byte for byte, as Docker does:
/// it is read once, checked to be a tar, hashed (diff ID), compressed as
/// `opts.compression` and hashed again straight into a store blob. `changes`
/// are Dockerfile instructions applied to the config (see [`apply_change`]).
/// The history has one entry with `opts.comment`.
pub fn import<R: Read>(
    store: &Store,
    input: R,
    reference: Option<&Reference>,
    changes: &[String],
    opts: &ImportOptions,
) -> Result<ImageRecord> {
    let _lease = store.lease()?;
    let mut config = ImageConfig::new(&opts.os, &opts.architecture);
    config.variant.clone_from(&opts.variant);
    let created = opts.created.to_string();
    config.created = Some(created.clone());
    for change in changes {
        apply_change(config.container_config_mut(), change)?;
    }
    let mut input = BufReader::with_capacity(1 << 20, input);
    let compression = sniff(&mut input).map_err(read_err)?;
    let digest_of_input = kiln_model::Digest::of(b"import input");
    let plain = decompress(input, compression, &digest_of_input)?;

    let blob = store.blob_writer()?;
    let mut writer = LayerWriter::new(blob, opts.compression).map_err(layer_err("import"))?;
    {
        // Parse the tar while copying it, so that garbage is refused.
        let mut tee = Tee {
            inner: plain,
            out: &mut writer,
        };
        let mut archive = tar::Archive::new(&mut tee);
        let mut entries = 0u64;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            check_member(&entry)?;
            io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
            entries += 1;
        }
        if entries == 0 {
            return Err(Error::InvalidArchive {
                reason: "import input has no tar entries".to_owned(),
            });
        }
        io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
    }
    let (digests, blob) = writer.finish().map_err(layer_err("import"))?;
    let want = parse_digest(&digests.digest)?;
    let (digest, size) = blob.commit(Some((&want, digests.size)))?;
    config.push_layer(
        &digests.diff_id,
        History {
            created: Some(created),
            comment: Some(opts.comment.clone()),
            ..History::default()
        },
    );
    config
        .extra
        .insert("comment".to_owned(), opts.comment.clone().into());
    let layer = Descriptor::new(opts.compression.oci_media_type(), digest, size);
    let tags: Vec<Reference> = reference.cloned().into_iter().collect();
    let record = write_image(store, &config, vec![layer], &tags)?;
    debug!(image = %record.id, "imported");
    Ok(record)
}

/// Refuses a member that no unpacker may apply: kiln-layer refuses every
/// `..` component in a member's name or a hard link's target (Docker
/// refuses those that climb out of the root), so an image holding one could
/// be recorded but never unpacked. Checked while the tar is read, before
/// anything is recorded.
fn check_member<R: Read>(entry: &tar::Entry<'_, R>) -> Result<()> {
    let has_dotdot = |raw: &[u8]| raw.split(|&b| b == b'/').any(|c| c == b"..");
    let name = entry.path_bytes();
    if has_dotdot(&name) {
        return Err(Error::InvalidArchive {
            reason: format!(
                "member {:?} has a \"..\" component: it would land outside the image's root",
                String::from_utf8_lossy(&name)
            ),
        });
    }
    if entry.header().entry_type().is_hard_link()
        && let Some(target) = entry.link_name_bytes()
        && has_dotdot(&target)
    {
        return Err(Error::InvalidArchive {
            reason: format!(
                "hard link {:?} points at {:?}, outside the image's root",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&target)
            ),
        });
    }
    Ok(())
}

/// Copies what is read from `inner` into `out`.
struct Tee<'w, R, W> {
    inner: R,
    out: &'w mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn read_err(source: io::Error) -> Error {
    Error::Archive {
        op: "reading",
        source,
    }
}

/// Applies one Dockerfile instruction to `config`, as `docker import -c` and
/// `docker commit -c` do: `CMD`, `ENTRYPOINT` (exec form as JSON, or shell
/// form run with `/bin/sh -c`), `ENV k=v ...` (or legacy `ENV k v`),
/// `EXPOSE port[/proto] ...`, `LABEL k=v ...`, `ONBUILD instruction`,
/// `STOPSIGNAL sig`, `USER u[:g]`, `VOLUME` (JSON or words), `WORKDIR dir`.
/// Instruction names are case-insensitive; values may be quoted with `"` or
/// `'`. No variable expansion is done.
pub fn apply_change(config: &mut ContainerConfig, change: &str) -> Result<()> {
    let bad = |reason| Error::InvalidChange {
        change: change.to_owned(),
        reason,
    };
    let trimmed = change.trim();
    let (name, rest) = trimmed
        .split_once(char::is_whitespace)
        .map(|(n, r)| (n, r.trim()))
        .unwrap_or((trimmed, ""));
    if rest.is_empty() {
        return Err(bad("missing arguments"));
    }
    match name.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(exec_or_shell(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(rest)),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest, true).map_err(bad)? {
                let prefix = format!("{k}=");
                env.retain(|e| !e.starts_with(&prefix) && e != &k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(Default::default);
            // `LABEL foo bar` (the legacy space form) is Docker's too.
            for (k, v) in key_values(rest, true).map_err(bad)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(Default::default);
            for p in words(rest).map_err(bad)? {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let valid = !port.is_empty()
                    && port.split('-').all(|n| n.parse::<u16>().is_ok())
                    && matches!(proto, "tcp" | "udp" | "sctp");
                if !valid {
                    return Err(bad("invalid port"));
                }
                ports.insert(format!("{port}/{proto}"));
            }
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(Default::default);
            let list = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => words(rest).map_err(bad)?,
            };
            vols.extend(list);
        }
        "ONBUILD" => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(rest.to_owned()),
        "STOPSIGNAL" => config.stop_signal = Some(rest.to_owned()),
        "USER" => config.user = Some(rest.to_owned()),
        "WORKDIR" => config.working_dir = Some(rest.to_owned()),
        _ => return Err(bad("unsupported instruction")),
    }
    Ok(())
}

/// `["a","b"]` as is; anything else run by `/bin/sh -c`.
fn exec_or_shell(text: &str) -> Vec<String> {
    if text.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(text)
    {
        return v;
    }
    vec!["/bin/sh".to_owned(), "-c".to_owned(), text.to_owned()]
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
fn words(text: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => cur.push(chars.next().ok_or("trailing backslash")?),
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `k=v k2="v 2"`; with `legacy`, `k rest of line` too (ENV).
fn key_values(text: &str, legacy: bool) -> Result<Vec<(String, String)>, &'static str> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if legacy && !first.contains('=') {
        let value = text[first.len()..].trim();
        // `LABEL name` / `ENV name` alone: Docker's "must have two arguments".
        if value.is_empty() {
            return Err("must have two arguments");
        }
        return Ok(vec![(first.to_owned(), value.to_owned())]);
    }
    words(text)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err("expected key=value"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for ch in changes {
            apply_change(&mut c, ch).unwrap();
        }
        c
    }

    #[test]
    fn cmd_and_entrypoint_forms() {
        let c = applied(&[r#"CMD ["cat", "/hello.txt"]"#, "entrypoint echo hi there"]);
        assert_eq!(c.cmd.unwrap(), ["cat", "/hello.txt"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "echo hi there"]);
    }

    #[test]
    fn env_forms_replace_keys() {
        let c = applied(&[
            "ENV PATH=/bin A=1",
            r#"ENV B="two words" A=3"#,
            "ENV LEGACY some value here",
        ]);
        assert_eq!(
            c.env.unwrap(),
            ["PATH=/bin", "B=two words", "A=3", "LEGACY=some value here"]
        );
    }

    #[test]
    fn labels_ports_volumes_and_scalars() {
        let c = applied(&[
            r#"LABEL a=1 "b c"='d e'"#,
            "EXPOSE 80 53/udp 8000-8010",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "USER app:app",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN make",
        ]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["b c"], "d e");
        let ports: Vec<_> = c.exposed_ports.unwrap().into_iter().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000-8010/tcp"]);
        let vols: Vec<_> = c.volumes.unwrap().into_iter().collect();
        assert_eq!(vols, ["/cache", "/data", "/logs"]);
        assert_eq!(c.user.as_deref(), Some("app:app"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.on_build.unwrap(), ["RUN make"]);
    }

    #[test]
    fn bad_changes_are_errors() {
        let mut c = ContainerConfig::default();
        for bad in [
            "RUN echo",
            "CMD",
            "EXPOSE eighty",
            "EXPOSE 80/xyz",
            r#"LABEL a="unterminated"#,
            "LABEL novalue",
        ] {
            let err = apply_change(&mut c, bad).unwrap_err();
            assert!(err.to_string().contains("invalid change"), "{bad}: {err}");
        }
    }
}
