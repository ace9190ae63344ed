//! RUN `--mount=` values: comma-separated `key=value` fields (CSV quoting),
//! checked as BuildKit checks them. Values are not expanded.

use super::suggest::did_you_mean;
use super::types::{CacheSharing, Mount, MountType};

/// Splits a CSV record: fields separated by `,`, optionally double-quoted
/// (`""` is a quote inside a quoted field).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(format!("bare \" in non-quoted-field: {s}")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "readwrite",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "env",
];

/// A `--mount` being parsed: the fields so far, and whether read-only is
/// still the type's default (no `ro`/`rw` given).
struct Parsing {
    m: Mount,
    ro_auto: bool,
}

/// Parses one `--mount` value.
pub(crate) fn parse_mount(raw: &str) -> Result<Mount, String> {
    let mut p = Parsing {
        m: Mount {
            kind: MountType::Bind,
            target: None,
            source: None,
            from: None,
            readonly: false,
            id: None,
            sharing: None,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            env: None,
            raw: raw.to_owned(),
        },
        ro_auto: true,
    };
    for field in csv_fields(raw)? {
        match field.split_once('=') {
            Some((k, v)) => p.key_value(&k.to_ascii_lowercase(), v.to_owned(), &field)?,
            None => p.bare_key(&field.to_ascii_lowercase(), &field)?,
        }
    }
    p.finish()
}

impl Parsing {
    /// A field without `=`: a boolean option set to true.
    fn bare_key(&mut self, key: &str, field: &str) -> Result<(), String> {
        let m = &mut self.m;
        match key {
            "readonly" | "ro" => {
                m.readonly = true;
                self.ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = false;
                self.ro_auto = false;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
            "required" => {
                return Err(format!(
                    "unexpected key 'required' for mount type '{}'",
                    type_name(m.kind)
                ));
            }
            _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
        }
        Ok(())
    }

    /// A `key=value` field.
    fn key_value(&mut self, key: &str, value: String, field: &str) -> Result<(), String> {
        let secretish = matches!(self.m.kind, MountType::Secret | MountType::Ssh);
        let m = &mut self.m;
        match key {
            "type" => m.kind = mount_type(&value)?,
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(key, &value)?;
                self.ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(key, &value)?;
                self.ro_auto = false;
            }
            "required" if secretish => m.required = parse_bool(key, &value)?,
            "size" if m.kind == MountType::Tmpfs => m.size = Some(value),
            "required" | "size" => {
                return Err(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    type_name(m.kind)
                ));
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("unsupported sharing value {value:?}")),
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => m.uid = Some(number(&value, "uid")?),
            "gid" => m.gid = Some(number(&value, "gid")?),
            "env" => m.env = Some(value),
            _ => {
                return Err(format!(
                    "unexpected key '{key}' in '{field}'{}",
                    did_you_mean(key, KEYS, "")
                ));
            }
        }
        Ok(())
    }

    /// The checks that need every field, and the type's read-only default.
    fn finish(self) -> Result<Mount, String> {
        let Parsing { mut m, ro_auto } = self;
        let file_info = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        let kind = type_name(m.kind);
        if !file_info {
            for (set, what) in [
                (m.mode.is_some(), "mode"),
                (m.uid.is_some(), "uid"),
                (m.gid.is_some(), "gid"),
            ] {
                if set {
                    return Err(format!("{what} not allowed for \"{kind}\" type mounts"));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(format!("invalid cache sharing set for {kind} mount"));
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err("secret mount should not have a from".to_owned());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err("one of source, target required".to_owned());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".to_owned());
            }
        }
        // No target is no error (BuildKit's own Dockerfile relies on it): the
        // builder mounts at the working directory, as BuildKit does.
        Ok(m)
    }
}

/// `type=`'s value.
fn mount_type(value: &str) -> Result<MountType, String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => {
            return Err(format!(
                "unsupported mount type {}{}",
                crate::quote::go_quote(value),
                did_you_mean(value, &["bind", "cache", "tmpfs", "secret", "ssh"], "")
            ));
        }
    })
}

/// A decimal `uid=`/`gid=` value.
fn number(value: &str, what: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value} for {what}"))
}

fn type_name(k: MountType) -> &'static str {
    match k {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=x").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert!(!m.readonly);
        let m = parse_mount("target=.,rw").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(!m.readonly);
        let m = parse_mount("type=secret,id=tok,required,mode=0400").unwrap();
        assert!(m.required);
        assert_eq!(m.mode, Some(0o400));
        let m = parse_mount("\"type=bind\",\"target=/a,b\"").unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        assert!(
            parse_mount("type=foo,target=/x")
                .unwrap_err()
                .starts_with("unsupported mount type")
        );
        assert!(parse_mount("type=bind,target=/x,mode=0700").is_err());
        assert!(parse_mount("type=bind,target=/x,sharing=locked").is_err());
        assert!(parse_mount("type=secret").is_err());
        // BuildKit mounts bind, cache and tmpfs mounts without a target at
        // the working directory.
        for m in [
            "type=cache",
            "type=bind",
            "type=tmpfs",
            "type=bind,source=src",
        ] {
            assert!(parse_mount(m).is_ok_and(|m| m.target.is_none()), "{m}");
        }
        assert!(
            parse_mount("target=/x,bogus=1")
                .unwrap_err()
                .contains("unexpected key 'bogus'")
        );
    }
}
