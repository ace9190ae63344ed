//! From syntax-tree nodes to typed instructions and stages, with BuildKit's
//! checks and error messages.

use std::time::Duration;

use super::flags::{Flags, Kind};
use super::mount::parse_mount;
use super::suggest::did_you_mean;
use super::types::*;
use crate::ast::{Ast, Heredoc, Node};
use crate::diagnostic::{Diagnostic, Error};
use crate::parser::parse_heredoc;

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

impl Dockerfile {
    /// Parses and types a Dockerfile; fails with every error found.
    ///
    /// Warnings are kept in [`Dockerfile::warnings`].
    pub fn parse(bytes: &[u8]) -> Result<Dockerfile, Error> {
        let (df, diagnostics) = parse_dockerfile(bytes);
        let errors: Vec<Diagnostic> = diagnostics
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect();
        if errors.is_empty() {
            Ok(df)
        } else {
            Err(Error::Invalid {
                diagnostics: errors,
            })
        }
    }

    /// Types a syntax tree. Instructions with errors are left out; the
    /// diagnostics (errors only) say why.
    pub fn from_ast(ast: &Ast) -> (Dockerfile, Vec<Diagnostic>) {
        let mut df = Dockerfile {
            directives: ast.directives.clone(),
            escape: ast.escape(),
            meta_args: Vec::new(),
            warnings: Vec::new(),
            stages: Vec::new(),
        };
        let mut errors = Vec::new();
        for node in &ast.nodes {
            let ins = match parse_instruction(node) {
                Ok(i) => i,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            };
            if let Some(w) = legacy_warning(node, &ins) {
                df.warnings.push(w);
            }
            match ins {
                Instruction::From(f) => df.stages.push(Stage {
                    name: f.name,
                    base: f.image,
                    platform: f.platform,
                    source: f.source,
                    instructions: Vec::new(),
                }),
                Instruction::Arg(a) if df.stages.is_empty() => df.meta_args.push(a),
                other => match df.stages.last_mut() {
                    Some(stage) => stage.instructions.push(other),
                    None => errors.push(
                        Diagnostic::error(
                            node.start_line,
                            node.column,
                            "no build stage in current context",
                        )
                        .until(node.end_line),
                    ),
                },
            }
        }
        (df, errors)
    }
}

/// Parses and types a Dockerfile, returning what could be typed and every
/// diagnostic (syntax and typed layers, errors and warnings) in line order.
pub fn parse_dockerfile(bytes: &[u8]) -> (Dockerfile, Vec<Diagnostic>) {
    let parsed = crate::parse(bytes);
    // `from_ast` puts legacy-syntax warnings in `warnings`; add the parser's.
    let (mut df, errors) = Dockerfile::from_ast(&parsed.ast);
    let (syntax_errors, syntax_warnings): (Vec<_>, Vec<_>) = parsed
        .diagnostics
        .into_iter()
        .partition(Diagnostic::is_error);
    df.warnings.extend(syntax_warnings);
    df.warnings.sort_by_key(|d| (d.line, d.column));
    let mut all: Vec<Diagnostic> = syntax_errors
        .into_iter()
        .chain(errors)
        .chain(df.warnings.iter().cloned())
        .collect();
    all.sort_by_key(|d| (d.line, d.column));
    (df, all)
}

fn legacy_warning(node: &Node, ins: &Instruction) -> Option<Diagnostic> {
    let pairs = match ins {
        Instruction::Env(kv) | Instruction::Label(kv) => &kv.pairs,
        _ => return None,
    };
    pairs.iter().any(|p| p.legacy).then(|| {
        Diagnostic::warning(
            node.start_line,
            node.column,
            format!(
                "\"{} key=value\" should be used instead of legacy \"{} key value\" format",
                node.keyword.to_uppercase(),
                node.keyword.to_uppercase()
            ),
        )
        .until(node.end_line)
    })
}

/// Types one syntax-tree node.
pub fn parse_instruction(node: &Node) -> Result<Instruction, Diagnostic> {
    typed(node, &node.heredocs)
        .map_err(|msg| Diagnostic::error(node.start_line, node.column, msg).until(node.end_line))
}

fn source(node: &Node) -> Source {
    Source {
        start_line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
    }
}

fn chomped(heredocs: &[Heredoc]) -> Vec<Heredoc> {
    heredocs
        .iter()
        .map(|h| Heredoc {
            content: h.chomped(),
            ..h.clone()
        })
        .collect()
}

fn exactly_one(node: &Node, name: &str) -> Result<String, String> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{name} requires exactly one argument")),
    }
}

fn at_least_one(node: &Node, name: &str) -> Result<(), String> {
    if node.args.is_empty() {
        Err(format!("{name} requires at least one argument"))
    } else {
        Ok(())
    }
}

fn command(node: &Node, args: &[String]) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(args.to_vec())
    } else {
        ShellOrExec::Shell(args.first().cloned().unwrap_or_default())
    }
}

/// The typed instruction of a node, by keyword.
fn typed(node: &Node, heredocs: &[Heredoc]) -> Result<Instruction, String> {
    let kw = node.keyword.to_ascii_uppercase();
    let src = source(node);
    match kw.as_str() {
        "FROM" => from(node, src),
        "RUN" => run(node, heredocs, src),
        "CMD" | "ENTRYPOINT" => {
            no_flags(node)?;
            let ins = CmdInstruction {
                cmd: command(node, &node.args),
                source: src,
            };
            Ok(if kw == "CMD" {
                Instruction::Cmd(ins)
            } else {
                Instruction::Entrypoint(ins)
            })
        }
        "COPY" | "ADD" => copy(node, &kw, heredocs, src),
        "ENV" | "LABEL" => key_values(node, &kw, src),
        "ARG" => arg(node, src),
        "EXPOSE" | "VOLUME" | "SHELL" => list(node, &kw, src),
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            no_flags(node)?;
            let value = exactly_one(node, &kw)?;
            let ins = ValueInstruction { value, source: src };
            Ok(match kw.as_str() {
                "USER" => Instruction::User(ins),
                "WORKDIR" => Instruction::Workdir(ins),
                "STOPSIGNAL" => Instruction::StopSignal(ins),
                _ => Instruction::Maintainer(ins),
            })
        }
        "HEALTHCHECK" => healthcheck(node, src),
        "ONBUILD" => onbuild(node, heredocs, src),
        _ => Err(format!(
            "unknown instruction: {}{}",
            node.keyword,
            did_you_mean(&node.keyword, INSTRUCTIONS, "")
        )),
    }
}

/// Fails on any flag: the instruction takes none.
fn no_flags(node: &Node) -> Result<(), String> {
    Flags::parse(&node.flags, &[]).map(|_| ())
}

/// `FROM [--platform=p] image [AS name]`.
fn from(node: &Node, src: Source) -> Result<Instruction, String> {
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    crate::quote::go_quote(name)
                ));
            }
            Some(lower)
        }
        _ => return Err("FROM requires either one or three arguments".to_owned()),
    };
    let flags = Flags::parse(&node.flags, &[("platform", Kind::Str)])?;
    Ok(Instruction::From(FromInstruction {
        image: node.args[0].clone(),
        name,
        platform: flags.string("platform").filter(|p| !p.is_empty()),
        source: src,
    }))
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
fn run(node: &Node, heredocs: &[Heredoc], src: Source) -> Result<Instruction, String> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("mount", Kind::Strings),
            ("network", Kind::Str),
            ("security", Kind::Str),
        ],
    )?;
    let mounts = flags
        .strings("mount")
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => return Err(format!("unsupported network mode {other:?}")),
    };
    let security = match flags.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(SecurityMode::Sandbox),
        Some("insecure") => Some(SecurityMode::Insecure),
        Some(other) => return Err(format!("unsupported security mode {other:?}")),
    };
    Ok(Instruction::Run(RunInstruction {
        cmd: command(node, &node.args),
        mounts,
        network,
        security,
        heredocs: chomped(heredocs),
        source: src,
    }))
}

/// `ENV` or `LABEL`: `key=value` pairs (the node holds key, value, and
/// whether the legacy `KEY value` form was used).
fn key_values(node: &Node, kw: &str, src: Source) -> Result<Instruction, String> {
    no_flags(node)?;
    at_least_one(node, kw)?;
    if !node.args.len().is_multiple_of(3) {
        return Err(format!("Bad input to {kw}, too many arguments"));
    }
    let mut pairs = Vec::new();
    for t in node.args.chunks(3) {
        if t[0].is_empty() {
            return Err(format!("{kw} names can not be blank"));
        }
        pairs.push(KeyValue {
            key: t[0].clone(),
            value: t[1].clone(),
            legacy: t[2].is_empty(),
        });
    }
    let ins = KeyValueInstruction { pairs, source: src };
    Ok(if kw == "ENV" {
        Instruction::Env(ins)
    } else {
        Instruction::Label(ins)
    })
}

/// `ARG name[=default] ...`.
fn arg(node: &Node, src: Source) -> Result<Instruction, String> {
    no_flags(node)?;
    at_least_one(node, "ARG")?;
    let mut args = Vec::new();
    for a in &node.args {
        args.push(match a.split_once('=') {
            Some(("", _)) => return Err("ARG names can not be blank".to_owned()),
            Some((k, v)) => ArgDef {
                name: k.to_owned(),
                default: Some(v.to_owned()),
            },
            None => ArgDef {
                name: a.clone(),
                default: None,
            },
        });
    }
    Ok(Instruction::Arg(ArgInstruction { args, source: src }))
}

/// `EXPOSE`, `VOLUME` (no empty value) and `SHELL` (JSON form only).
fn list(node: &Node, kw: &str, src: Source) -> Result<Instruction, String> {
    no_flags(node)?;
    at_least_one(node, kw)?;
    match kw {
        "EXPOSE" => Ok(Instruction::Expose(ListInstruction {
            values: node.args.clone(),
            json: false,
            source: src,
        })),
        "VOLUME" => {
            let mut values = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_owned());
                }
                values.push(v.to_owned());
            }
            Ok(Instruction::Volume(ListInstruction {
                values,
                json: node.json,
                source: src,
            }))
        }
        _ => {
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_owned());
            }
            Ok(Instruction::Shell(ListInstruction {
                values: node.args.clone(),
                json: true,
                source: src,
            }))
        }
    }
}

/// `ONBUILD instruction`: the trigger typed, and its text as the image
/// config stores it.
fn onbuild(node: &Node, heredocs: &[Heredoc], src: Source) -> Result<Instruction, String> {
    no_flags(node)?;
    let Some(child) = node.child.as_deref() else {
        return Err("ONBUILD requires at least one argument".to_owned());
    };
    let trigger = child.keyword.to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned());
        }
        "FROM" | "MAINTAINER" => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"));
        }
        _ => {}
    }
    let inner = typed(child, heredocs)?;
    let mut expression = strip_onbuild(&node.original).to_owned();
    for h in heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    Ok(Instruction::Onbuild(OnbuildInstruction {
        instruction: Box::new(inner),
        expression,
        source: src,
    }))
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => t,
    }
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn copy(node: &Node, kw: &str, heredocs: &[Heredoc], src: Source) -> Result<Instruction, String> {
    if node.args.len() < 2 {
        return Err(format!(
            "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let allowed: &[(&str, Kind)] = if kw == "COPY" {
        &[
            ("chown", Kind::Str),
            ("from", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::Strings),
        ]
    } else {
        &[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("exclude", Kind::Strings),
            ("unpack", Kind::Bool),
        ]
    };
    let flags = Flags::parse(&node.flags, allowed)?;
    let (dest, srcs) = node
        .args
        .split_last()
        .expect("at least two arguments were checked above");
    let heredocs = chomped(heredocs);
    if !node.json && parse_heredoc(dest).ok().flatten().is_some() {
        return Err(format!("{kw} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::new();
    for s in srcs {
        match parse_heredoc(s).ok().flatten().filter(|_| !node.json) {
            Some(marker) => {
                let content = heredocs
                    .iter()
                    .find(|h| h.name == marker.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                sources.push(CopySource::Heredoc(Heredoc { content, ..marker }));
            }
            None => sources.push(CopySource::Path(s.clone())),
        }
    }
    let ins = CopyInstruction {
        sources,
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        exclude: flags.strings("exclude"),
        parents: flags.bool("parents"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool_opt("unpack"),
        json: node.json,
        heredocs,
        source: src,
    };
    Ok(if kw == "COPY" {
        Instruction::Copy(ins)
    } else {
        Instruction::Add(ins)
    })
}

fn healthcheck(node: &Node, src: Source) -> Result<Instruction, String> {
    let Some((typ, rest)) = node.args.split_first() else {
        return Err("HEALTHCHECK requires at least one argument".to_owned());
    };
    let typ = typ.to_uppercase();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_owned());
        }
        // BuildKit does not look at the flags of HEALTHCHECK NONE.
        return Ok(Instruction::Healthcheck(HealthcheckInstruction {
            check: Healthcheck::None,
            source: src,
        }));
    }
    let flags = Flags::parse(
        &node.flags,
        &[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
    }
    if rest.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_owned());
    }
    let interval = |name: &str| -> Result<Option<Duration>, String> {
        match flags.string(name) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => {
                let d = parse_go_duration(&s)?;
                if !d.is_zero() && d < Duration::from_millis(1) {
                    return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
                }
                Ok(Some(d))
            }
        }
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => {
            let n: i64 = s
                .parse()
                .map_err(|_| format!("invalid value {s:?} for --retries"))?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            Some(u32::try_from(n).map_err(|_| format!("invalid value {s:?} for --retries"))?)
        }
    };
    Ok(Instruction::Healthcheck(HealthcheckInstruction {
        check: Healthcheck::Cmd {
            cmd: command(node, rest),
            interval: interval("interval")?,
            timeout: interval("timeout")?,
            start_period: interval("start-period")?,
            start_interval: interval("start-interval")?,
            retries,
        },
        source: src,
    }))
}

/// Go's `time.ParseDuration` for non-negative durations (`1h30m`, `1.5s`, `300ms`).
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {}", crate::quote::go_quote(s));
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() || body.starts_with('-') {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * nanos;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("abc").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1build"));
        assert!(!valid_stage_name("b@d"));
    }
}
