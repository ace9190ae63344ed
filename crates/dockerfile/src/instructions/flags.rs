//! Instruction flags (`--from=x`, `--link`, `--exclude=a --exclude=b`),
//! checked against what each instruction accepts, as BuildKit's `BFlags`.

use super::suggest::did_you_mean;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--link`, `--link=true|false`.
    Bool,
    /// `--from=x`, once.
    Str,
    /// `--exclude=x`, repeatable.
    Strings,
}

/// The flags of one instruction, parsed.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: Vec<(&'static str, Vec<String>)>,
}

impl Flags {
    /// Parses `raw` (each `--name[=value]`) against `allowed`.
    pub(crate) fn parse(raw: &[String], allowed: &[(&'static str, Kind)]) -> Result<Self, String> {
        let mut flags = Flags::default();
        for arg in raw {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown flag: --{name}{}",
                    did_you_mean(name, &names, "--")
                ));
            };
            if kind != Kind::Strings && flags.get_all(key).is_some() {
                return Err(format!("duplicate flag specified: {name}"));
            }
            let v = match kind {
                Kind::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                    Some("") => return Err(format!("missing a value on flag: {name}")),
                    None | Some("true") => "true".to_owned(),
                    Some("false") => "false".to_owned(),
                    Some(_) => {
                        return Err(format!(
                            "expecting boolean value for flag {name}, not: {}",
                            value.unwrap_or_default()
                        ));
                    }
                },
                Kind::Str | Kind::Strings => match value {
                    Some(v) => v.to_owned(),
                    None => return Err(format!("missing a value on flag: {name}")),
                },
            };
            match flags.values.iter_mut().find(|(n, _)| *n == key) {
                Some((_, vs)) => vs.push(v),
                None => flags.values.push((key, vec![v])),
            }
        }
        Ok(flags)
    }

    fn get_all(&self, name: &str) -> Option<&Vec<String>> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A string flag's value.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get_all(name).and_then(|v| v.last().cloned())
    }

    /// A boolean flag: `None` when absent.
    pub(crate) fn bool_opt(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// A boolean flag, false when absent.
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.bool_opt(name).unwrap_or(false)
    }

    /// A repeatable flag's values.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.get_all(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_and_rejects() {
        let allowed = [
            ("from", Kind::Str),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
        ];
        let f = Flags::parse(
            &s(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
            &allowed,
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        assert_eq!(
            Flags::parse(&s(&["--fro=a"]), &allowed).unwrap_err(),
            "unknown flag: --fro (did you mean --from?)"
        );
        assert_eq!(
            Flags::parse(&s(&["--from"]), &allowed).unwrap_err(),
            "missing a value on flag: from"
        );
        assert_eq!(
            Flags::parse(&s(&["--link=maybe"]), &allowed).unwrap_err(),
            "expecting boolean value for flag link, not: maybe"
        );
        assert_eq!(
            Flags::parse(&s(&["--from=a", "--from=b"]), &allowed).unwrap_err(),
            "duplicate flag specified: from"
        );
    }
}
