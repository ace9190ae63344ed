//! Docker's `--format` templates: the subset of Go's `text/template` that
//! Docker's CLI users write, evaluated over JSON values.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming; fields
//! (`.ID`, `.Config.Env`, `$`, `$var.Field`); pipelines with `|`;
//! parentheses; string, integer and boolean literals; `{{if}}`/`{{else if}}`/
//! `{{else}}`, `{{range}}` (with `$i, $v :=`), `{{with}}`, `{{end}}`;
//! variables (`$x := ...`); Go's `index`, `len`, `print`, `printf` (`%s %d
//! %v %q %%`), `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`,
//! `not`; Docker's `json`, `join`, `split`, `lower`, `upper`, `title`, `pad`,
//! `truncate`; and the `.Label "key"` method of `ps` and `images` rows.
//!
//! A format starting with `table` prints a header (the same template over the
//! caller's header names) and aligns the tab-separated cells as Docker's
//! tabwriter does (minimum width 10, padding 3). `\t` and `\n` written as two
//! characters are turned into a tab and a newline first, as Docker does.
//!
//! Values print as Go prints them: `<no value>` for a missing map key,
//! `<nil>` for null, `[a b]` for lists, `map[k:v]` for objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

/// A parsed `--format` value.
#[derive(Debug)]
pub(crate) struct Format {
    table: bool,
    nodes: Vec<Node>,
}

impl Format {
    /// Parses a `--format` value (`table ...`, `json`, or a template).
    pub(crate) fn parse(format: &str) -> Result<Format> {
        let (table, body) = match format.trim_start().strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let body = if body == "json" && !table {
            "{{json .}}".to_owned()
        } else {
            body
        };
        let tokens = lex(&body).with_context(|| format!("template parsing error: {format}"))?;
        let mut parser = Parser { tokens, pos: 0 };
        let nodes = parser
            .nodes(&[])
            .with_context(|| format!("template parsing error: {format}"))?;
        if parser.pos < parser.tokens.len() {
            bail!("template parsing error: {format}: unexpected {{{{end}}}} or {{{{else}}}}");
        }
        Ok(Format { table, nodes })
    }

    /// Renders one value: the template's output for it.
    pub(crate) fn render(&self, value: &Value) -> Result<String> {
        let mut out = String::new();
        let mut scope = Scope {
            vars: vec![("$".to_owned(), value.clone())],
        };
        exec(&self.nodes, value, &mut scope, &mut out)?;
        Ok(out)
    }

    /// Renders every row, one per line (Docker adds the newline), with the
    /// header first and aligned columns when the format is a table.
    /// `headers` maps field names to Docker's column titles (`ID` →
    /// `CONTAINER ID`).
    pub(crate) fn render_rows(&self, headers: &[(&str, &str)], rows: &[Value]) -> Result<String> {
        let mut lines = Vec::new();
        if self.table {
            let header: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect();
            lines.push(self.render(&Value::Object(header))?);
        }
        for row in rows {
            lines.push(self.render(row)?);
        }
        let mut text = String::new();
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        Ok(if self.table {
            tabwrite(&text, 10, 3)
        } else {
            text
        })
    }
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    /// The words of one `{{ ... }}` action.
    Action(Vec<Word>),
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Dot,
    Str(String),
    Int(i64),
    Pipe,
    Open,
    Close,
    Declare,
    Comma,
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            toks.push(Tok::Text(text.to_owned()));
            break;
        };
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[start + 2..];
        if let Some(r) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = r;
        }
        if !text.is_empty() {
            toks.push(Tok::Text(text.to_owned()));
        }
        let end = find_close(inner).ok_or_else(|| anyhow!("unclosed action"))?;
        let mut body = &inner[..end];
        trim_next = false;
        if let Some(b) = body.strip_suffix(" -") {
            body = b;
            trim_next = true;
        }
        rest = &inner[end + 2..];
        let body = body.trim();
        if body.starts_with("/*") {
            continue;
        }
        toks.push(Tok::Action(words(body)?));
    }
    Ok(toks)
}

/// The offset of the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn words(s: &str) -> Result<Vec<Word>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let (word, next) = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '|' => (Word::Pipe, i + 1),
            '(' => (Word::Open, i + 1),
            ')' => (Word::Close, i + 1),
            ',' => (Word::Comma, i + 1),
            ':' if chars.get(i + 1) == Some(&'=') => (Word::Declare, i + 2),
            '=' => (Word::Declare, i + 1),
            '"' => quoted(&chars, i + 1)?,
            '`' => raw_quoted(&chars, i + 1)?,
            '.' | '$' => dotted(&chars, i),
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                number(&chars, i)?
            }
            c if name_char(c) => {
                let end = name_end(&chars, i);
                (Word::Ident(chars[i..end].iter().collect()), end)
            }
            other => bail!("unexpected {other:?} in action"),
        };
        out.push(word);
        i = next;
    }
    Ok(out)
}

/// The end of the run of name characters starting at `i`.
fn name_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && name_char(chars[i]) {
        i += 1;
    }
    i
}

/// A `"..."` string whose contents start at `i` (`\n`, `\t` and `\X`
/// escapes); returns it and the offset after the closing quote.
fn quoted(chars: &[char], mut i: usize) -> Result<(Word, usize)> {
    let mut v = String::new();
    loop {
        let Some(&c) = chars.get(i) else {
            bail!("unterminated quoted string");
        };
        i += 1;
        match c {
            '"' => break,
            '\\' => {
                let e = chars.get(i).copied().unwrap_or('\\');
                i += 1;
                v.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            other => v.push(other),
        }
    }
    Ok((Word::Str(v), i))
}

/// A `` `...` `` string whose contents start at `start`, taken as is.
fn raw_quoted(chars: &[char], start: usize) -> Result<(Word, usize)> {
    let end = chars[start..]
        .iter()
        .position(|&c| c == '`')
        .ok_or_else(|| anyhow!("unterminated raw quoted string"))?;
    Ok((
        Word::Str(chars[start..start + end].iter().collect()),
        start + end + 1,
    ))
}

/// `.`, `.A.B`, `$x` or `$x.A.B` starting at `i`.
fn dotted(chars: &[char], i: usize) -> (Word, usize) {
    let var = chars[i] == '$';
    let mut j = i + 1;
    let mut name = String::new();
    if var {
        let end = name_end(chars, j);
        name.extend(&chars[j..end]);
        j = end;
    }
    let mut fields = Vec::new();
    let mut first = !var;
    loop {
        if !first {
            if chars.get(j) != Some(&'.') {
                break;
            }
            j += 1;
        }
        first = false;
        let end = name_end(chars, j);
        if end == j {
            break;
        }
        fields.push(chars[j..end].iter().collect());
        j = end;
    }
    let word = if var {
        Word::Var(format!("${name}"), fields)
    } else if fields.is_empty() {
        Word::Dot
    } else {
        Word::Field(fields)
    };
    (word, j)
}

/// A decimal integer, maybe negative, starting at `i`.
fn number(chars: &[char], i: usize) -> Result<(Word, usize)> {
    let mut j = i + 1;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    let n: String = chars[i..j].iter().collect();
    let v = n.parse().with_context(|| format!("bad number {n}"))?;
    Ok((Word::Int(v), j))
}

// ---------------------------------------------------------------- parsing

#[derive(Debug)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// `$k, $v :=` or `$x :=`.
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Dot,
    Lit(Value),
    Sub(Box<Pipeline>),
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    /// Parses nodes until one of `stops` (`end`, `else`) or the end.
    fn nodes(&mut self, stops: &[&str]) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        while let Some(tok) = self.tokens.get(self.pos).cloned() {
            match tok {
                Tok::Text(t) => {
                    self.pos += 1;
                    out.push(Node::Text(t));
                }
                Tok::Action(words) => {
                    let keyword = match words.first() {
                        Some(Word::Ident(k)) => k.as_str(),
                        _ => "",
                    };
                    if stops.contains(&keyword) {
                        return Ok(out);
                    }
                    self.pos += 1;
                    match keyword {
                        "if" | "range" | "with" => {
                            let kind = keyword.to_owned();
                            out.push(self.block(&kind, &words[1..])?);
                        }
                        "end" | "else" => bail!("unexpected {{{{{keyword}}}}}"),
                        _ => out.push(Node::Print(pipeline(&words)?)),
                    }
                }
            }
        }
        if stops.is_empty() {
            Ok(out)
        } else {
            bail!("missing {{{{end}}}}")
        }
    }

    fn block(&mut self, kind: &str, words: &[Word]) -> Result<Node> {
        let cond = pipeline(words)?;
        let body = self.nodes(&["end", "else"])?;
        let mut branches = vec![(cond, body)];
        let mut otherwise = Vec::new();
        loop {
            let Some(Tok::Action(w)) = self.tokens.get(self.pos).cloned() else {
                bail!("missing {{{{end}}}}");
            };
            self.pos += 1;
            match w.first() {
                Some(Word::Ident(k)) if k == "end" => break,
                Some(Word::Ident(k)) if k == "else" => {
                    if kind == "if" && matches!(w.get(1), Some(Word::Ident(i)) if i == "if") {
                        let cond = pipeline(&w[2..])?;
                        let body = self.nodes(&["end", "else"])?;
                        branches.push((cond, body));
                        continue;
                    }
                    otherwise = self.nodes(&["end"])?;
                }
                _ => bail!("missing {{{{end}}}}"),
            }
        }
        Ok(match kind {
            "if" => Node::If(branches, otherwise),
            "range" => {
                let (cond, body) = branches.remove(0);
                Node::Range(cond, body, otherwise)
            }
            _ => {
                let (cond, body) = branches.remove(0);
                Node::With(cond, body, otherwise)
            }
        })
    }
}

fn pipeline(words: &[Word]) -> Result<Pipeline> {
    let mut decl = Vec::new();
    let mut words = words;
    if let Some(at) = words.iter().position(|w| *w == Word::Declare) {
        for w in &words[..at] {
            match w {
                Word::Var(name, f) if f.is_empty() => decl.push(name.clone()),
                Word::Comma => {}
                _ => bail!("bad variable declaration"),
            }
        }
        words = &words[at + 1..];
    }
    let mut cmds = Vec::new();
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < words.len() {
        match &words[i] {
            Word::Pipe => {
                if cmd.is_empty() {
                    bail!("missing command before |");
                }
                cmds.push(std::mem::take(&mut cmd));
                i += 1;
            }
            Word::Open => {
                let mut depth = 0;
                let mut j = i;
                loop {
                    match words.get(j) {
                        Some(Word::Open) => depth += 1,
                        Some(Word::Close) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => bail!("unclosed left paren"),
                    }
                    j += 1;
                }
                cmd.push(Arg::Sub(Box::new(pipeline(&words[i + 1..j])?)));
                i = j + 1;
            }
            Word::Close => bail!("unexpected right paren"),
            Word::Comma | Word::Declare => bail!("unexpected , or :="),
            w => {
                cmd.push(match w {
                    Word::Ident(n) if n == "true" => Arg::Lit(Value::Bool(true)),
                    Word::Ident(n) if n == "false" => Arg::Lit(Value::Bool(false)),
                    Word::Ident(n) if n == "nil" => Arg::Lit(Value::Null),
                    Word::Ident(n) => Arg::Ident(n.clone()),
                    Word::Field(f) => Arg::Field(f.clone()),
                    Word::Var(n, f) => Arg::Var(n.clone(), f.clone()),
                    Word::Dot => Arg::Dot,
                    Word::Str(s) => Arg::Lit(Value::String(s.clone())),
                    Word::Int(n) => Arg::Lit(Value::from(*n)),
                    _ => bail!("unexpected token"),
                });
                i += 1;
            }
        }
    }
    if cmd.is_empty() {
        bail!("missing value for command");
    }
    cmds.push(cmd);
    Ok(Pipeline { decl, cmds })
}

// ---------------------------------------------------------------- evaluation

struct Scope {
    vars: Vec<(String, Value)>,
}

impl Scope {
    fn get(&self, name: &str) -> Result<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("undefined variable: {name}"))
    }
}

/// A value, or the absence Go prints as `<no value>` (a missing map key).
#[derive(Debug, Clone)]
enum Val {
    Some(Value),
    Missing,
}

impl Val {
    fn value(&self) -> Value {
        match self {
            Val::Some(v) => v.clone(),
            Val::Missing => Value::Null,
        }
    }
}

fn exec(nodes: &[Node], dot: &Value, scope: &mut Scope, out: &mut String) -> Result<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(p) => {
                let v = eval_pipeline(p, dot, scope)?;
                if p.decl.is_empty() {
                    print_val(&v, out);
                }
            }
            Node::If(branches, otherwise) => {
                let depth = scope.vars.len();
                let mut done = false;
                for (cond, body) in branches {
                    if truthy(&eval_pipeline(cond, dot, scope)?.value()) {
                        exec(body, dot, scope, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec(otherwise, dot, scope, out)?;
                }
                scope.vars.truncate(depth);
            }
            Node::With(cond, body, otherwise) => {
                let depth = scope.vars.len();
                let v = eval_pipeline(cond, dot, scope)?.value();
                if truthy(&v) {
                    exec(body, &v, scope, out)?;
                } else {
                    exec(otherwise, dot, scope, out)?;
                }
                scope.vars.truncate(depth);
            }
            Node::Range(cond, body, otherwise) => {
                let depth = scope.vars.len();
                let mut plain = cond.clone();
                let decl = std::mem::take(&mut plain.decl);
                let v = eval_pipeline(&plain, dot, scope)?.value();
                let items: Vec<(Value, Value)> = match v {
                    Value::Array(a) => a
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v))
                        .collect(),
                    Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
                    Value::Null => Vec::new(),
                    Value::Number(n) => {
                        let count = n.as_u64().unwrap_or(0);
                        (0..count)
                            .map(|i| (Value::from(i), Value::from(i)))
                            .collect()
                    }
                    other => bail!("range can't iterate over {}", go_string(&other)),
                };
                if items.is_empty() {
                    exec(otherwise, dot, scope, out)?;
                }
                for (key, item) in items {
                    scope.vars.truncate(depth);
                    match decl.as_slice() {
                        [] => {}
                        [one] => scope.vars.push((one.clone(), item.clone())),
                        [k, v, ..] => {
                            scope.vars.push((k.clone(), key));
                            scope.vars.push((v.clone(), item.clone()));
                        }
                    }
                    exec(body, &item, scope, out)?;
                }
                scope.vars.truncate(depth);
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: &Value, scope: &mut Scope) -> Result<Val> {
    let mut prev: Option<Val> = None;
    for cmd in &p.cmds {
        prev = Some(eval_command(cmd, dot, scope, prev)?);
    }
    let v = prev.unwrap_or(Val::Missing);
    if let Some(name) = p.decl.first() {
        scope.vars.push((name.clone(), v.value()));
    }
    Ok(v)
}

fn eval_command(cmd: &[Arg], dot: &Value, scope: &mut Scope, piped: Option<Val>) -> Result<Val> {
    let Some(first) = cmd.first() else {
        bail!("empty command");
    };
    let mut args = Vec::new();
    for a in &cmd[1..] {
        args.push(eval_arg(a, dot, scope)?.value());
    }
    if let Some(p) = piped.clone() {
        args.push(p.value());
    }
    match first {
        Arg::Ident(name) => call(name, &args),
        // `.Label "key"`: the method of Docker's ps and images rows.
        Arg::Field(path) if path.last().is_some_and(|l| l == "Label") && !args.is_empty() => {
            let parent = lookup(dot, &path[..path.len() - 1]);
            let key = as_str(&args[0]);
            Ok(label(&parent.value(), &key))
        }
        other => {
            if cmd.len() > 1 || piped.is_some() {
                bail!("can't give arguments to a non-function value");
            }
            eval_arg(other, dot, scope)
        }
    }
}

fn eval_arg(a: &Arg, dot: &Value, scope: &mut Scope) -> Result<Val> {
    Ok(match a {
        Arg::Dot => Val::Some(dot.clone()),
        Arg::Field(path) => lookup(dot, path),
        Arg::Var(name, path) => lookup(&scope.get(name)?, path),
        Arg::Lit(v) => Val::Some(v.clone()),
        Arg::Sub(p) => eval_pipeline(p, dot, scope)?,
        Arg::Ident(name) => call(name, &[])?,
    })
}

fn lookup(v: &Value, path: &[String]) -> Val {
    let mut cur = Val::Some(v.clone());
    for f in path {
        cur = match cur {
            Val::Some(Value::Object(m)) => match m.get(f) {
                Some(v) => Val::Some(v.clone()),
                None => Val::Missing,
            },
            _ => Val::Missing,
        };
    }
    cur
}

fn label(labels_owner: &Value, key: &str) -> Val {
    match labels_owner.get("Labels") {
        Some(Value::Object(m)) => {
            Val::Some(m.get(key).cloned().unwrap_or(Value::String(String::new())))
        }
        Some(Value::String(s)) => Val::Some(Value::String(
            s.split(',')
                .find_map(|kv| {
                    kv.split_once('=')
                        .filter(|(k, _)| *k == key)
                        .map(|(_, v)| v.to_owned())
                })
                .unwrap_or_default(),
        )),
        _ => Val::Some(Value::String(String::new())),
    }
}

fn call(name: &str, args: &[Value]) -> Result<Val> {
    if name == "index" {
        return index(args);
    }
    let found = match text_fn(name, args)? {
        Some(v) => Some(v),
        None => logic_fn(name, args)?,
    };
    let Some(v) = found else {
        bail!("function \"{name}\" not defined");
    };
    Ok(Val::Some(v))
}

/// Fails unless function `name` got exactly `n` arguments.
fn want(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() != n {
        bail!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        );
    }
    Ok(())
}

/// The functions on strings and lists (`json`, `lower`, `join`, `len`,
/// `print`...); `None` when `name` is none of them.
fn text_fn(name: &str, args: &[Value]) -> Result<Option<Value>> {
    let want = |n: usize| want(name, args, n);
    let v = match name {
        "json" => {
            want(1)?;
            Value::String(serde_json::to_string(&args[0])?)
        }
        "lower" => {
            want(1)?;
            Value::String(as_str(&args[0]).to_lowercase())
        }
        "upper" => {
            want(1)?;
            Value::String(as_str(&args[0]).to_uppercase())
        }
        "title" => {
            want(1)?;
            Value::String(title(&as_str(&args[0])))
        }
        "join" => {
            want(2)?;
            let sep = as_str(&args[1]);
            let items: Vec<String> = match &args[0] {
                Value::Array(a) => a.iter().map(as_str).collect(),
                other => vec![as_str(other)],
            };
            Value::String(items.join(&sep))
        }
        "split" => {
            want(2)?;
            let s = as_str(&args[0]);
            let sep = as_str(&args[1]);
            Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            )
        }
        "pad" => {
            want(3)?;
            let s = as_str(&args[0]);
            let (l, r) = (int(&args[1])?, int(&args[2])?);
            let (l, r) = (
                usize::try_from(l).unwrap_or(0),
                usize::try_from(r).unwrap_or(0),
            );
            Value::String(format!("{}{s}{}", " ".repeat(l), " ".repeat(r)))
        }
        "truncate" => {
            want(2)?;
            let s = as_str(&args[0]);
            let n = usize::try_from(int(&args[1])?).unwrap_or(0);
            Value::String(s.chars().take(n).collect())
        }
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                other => bail!("len of {}", go_string(other)),
            })
        }
        "print" | "println" => Value::String(print_fn(name == "println", args)),
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                bail!("wrong number of args for printf: want at least 1 got 0");
            };
            Value::String(printf(&as_str(fmt), rest))
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// Each word's first letter in upper case.
fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// `print` (spaces between operands when neither is a string) and
/// `println` (spaces always, and a newline).
fn print_fn(line: bool, args: &[Value]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && (line || !(a.is_string() || args[i - 1].is_string())) {
            s.push(' ');
        }
        print_val(&Val::Some(a.clone()), &mut s);
    }
    if line {
        s.push('\n');
    }
    s
}

/// `index X K...`: X's element at each key in turn.
fn index(args: &[Value]) -> Result<Val> {
    if args.is_empty() {
        bail!("wrong number of args for index: want at least 1 got 0");
    }
    let mut cur = Val::Some(args[0].clone());
    for key in &args[1..] {
        cur = match (cur.value(), key) {
            (Value::Object(m), k) => match m.get(&as_str(k)) {
                Some(v) => Val::Some(v.clone()),
                None => Val::Missing,
            },
            (Value::Array(a), k) => {
                let i = int(k)?;
                match usize::try_from(i).ok().and_then(|i| a.get(i)) {
                    Some(v) => Val::Some(v.clone()),
                    None => bail!("error calling index: index out of range: {i}"),
                }
            }
            (Value::Null, _) => Val::Missing,
            (other, _) => bail!("can't index item of type {}", go_type(&other)),
        };
    }
    Ok(cur)
}

/// The logic and comparison functions (`not`, `and`, `or`, `eq`, `ne`,
/// `lt`, `le`, `gt`, `ge`); `None` when `name` is none of them.
fn logic_fn(name: &str, args: &[Value]) -> Result<Option<Value>> {
    let want = |n: usize| want(name, args, n);
    let v = match name {
        "not" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" | "or" => {
            if args.is_empty() {
                bail!("wrong number of args for {name}");
            }
            let pick = args
                .iter()
                .find(|a| truthy(a) != (name == "and"))
                .unwrap_or(&args[args.len() - 1]);
            pick.clone()
        }
        "eq" => {
            if args.len() < 2 {
                bail!("wrong number of args for eq: want at least 2");
            }
            Value::Bool(args[1..].iter().any(|a| same(&args[0], a)))
        }
        "ne" => {
            want(2)?;
            Value::Bool(!same(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => ord.is_lt(),
                "le" => ord.is_le(),
                "gt" => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .ok_or_else(|| anyhow!("incompatible types for comparison")),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => bail!("incompatible types for comparison"),
    }
}

fn int(v: &Value) -> Result<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| anyhow!("expected an integer, got {}", go_string(v)))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_string(other),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of a decoded JSON value.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_string).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn print_val(v: &Val, out: &mut String) {
    match v {
        Val::Missing => out.push_str("<no value>"),
        Val::Some(v) => out.push_str(&go_string(v)),
    }
}

fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Flags and width are taken as written and applied to strings only.
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if n == '-' || n.is_ascii_digit() {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let text = match verb {
            'q' => serde_json::to_string(&as_str(arg)).unwrap_or_default(),
            'd' => int(arg)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| format!("%!d({})", go_string(arg))),
            _ => go_string(arg),
        };
        let left = spec.starts_with('-');
        let width: usize = spec.trim_start_matches('-').parse().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// Go's `text/tabwriter` with Docker's settings (padding with spaces, no
/// flags): tab-terminated cells in consecutive lines form a column whose
/// width is its widest cell plus `padding`, at least `minwidth`.
pub(crate) fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    column_widths(&lines, &mut widths, 0, lines.len(), 0, minwidth, padding);
    let mut out = String::new();
    for (l, line) in lines.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < line.len() {
                let pad = widths[l][c].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
        if text
            .split_inclusive('\n')
            .nth(l)
            .is_some_and(|s| s.ends_with('\n'))
        {
            out.push('\n');
        }
    }
    out
}

fn column_widths(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    line0: usize,
    line1: usize,
    column: usize,
    minwidth: usize,
    padding: usize,
) {
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block of consecutive lines with a terminated cell in `column`.
        let start = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        for w in &mut widths[start..this] {
            w[column] = width;
        }
        column_widths(lines, widths, start, this, column + 1, minwidth, padding);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(fmt: &str, v: Value) -> String {
        Format::parse(fmt).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_nested_missing_and_go_printing() {
        let v = json!({"ID": "abc", "State": {"Pid": 42, "Running": true},
                       "Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}, "Nil": null});
        assert_eq!(
            render("{{.ID}} {{.State.Pid}} {{.State.Running}}", v.clone()),
            "abc 42 true"
        );
        assert_eq!(render("{{.Env}}", v.clone()), "[A=1 B=2]");
        assert_eq!(render("{{.Labels}}", v.clone()), "map[a:1 b:2]");
        assert_eq!(
            render("{{.Nope}}|{{.State.Nope}}", v.clone()),
            "<no value>|<no value>"
        );
        assert_eq!(render("{{.Nil}}", v.clone()), "<nil>");
        assert_eq!(render("{{json .State}}", v), r#"{"Pid":42,"Running":true}"#);
    }

    #[test]
    fn functions_and_pipes() {
        let v = json!({"Names": ["web", "db"], "Name": "Web", "Labels": {"com.x": "y"}});
        assert_eq!(render(r#"{{join .Names ","}}"#, v.clone()), "web,db");
        assert_eq!(
            render("{{.Name | lower}} {{upper .Name}}", v.clone()),
            "web WEB"
        );
        assert_eq!(render(r#"{{index .Labels "com.x"}}"#, v.clone()), "y");
        assert_eq!(render(r#"{{index .Names 1}}"#, v.clone()), "db");
        assert_eq!(render(r#"{{.Label "com.x"}}"#, v.clone()), "y");
        assert_eq!(render(r#"{{printf "%-5s|" .Name}}"#, v.clone()), "Web  |");
        assert_eq!(render("{{len .Names}}", v.clone()), "2");
        assert_eq!(render(r#"{{(index .Names 0) | upper}}"#, v), "WEB");
    }

    #[test]
    fn words_and_builtin_functions() {
        let v = json!({"State": {"Pid": 42}, "Names": ["a", "b"], "Up": false});
        // Quoted strings with escapes, raw strings, negative numbers,
        // variables with fields.
        assert_eq!(render(r#"{{"a\tb\"c"}}"#, v.clone()), "a\tb\"c");
        assert_eq!(render(r#"{{`a\x"`}}"#, v.clone()), r#"a\x""#);
        assert_eq!(render("{{-3}}", v.clone()), "-3");
        assert_eq!(render("{{$s := .State}}{{$s.Pid}}", v.clone()), "42");
        // Text functions.
        assert_eq!(
            render(r#"{{title "hello world-x"}}"#, v.clone()),
            "Hello World-X"
        );
        assert_eq!(render(r#"{{pad "a" 1 2}}|"#, v.clone()), " a  |");
        assert_eq!(render(r#"{{truncate "abcdef" 3}}"#, v.clone()), "abc");
        assert_eq!(render(r#"{{split "a,b" ","}}"#, v.clone()), "[a b]");
        assert_eq!(
            render(r#"{{print 1 2}}{{print "a" "b"}}"#, v.clone()),
            "1 2ab"
        );
        assert_eq!(render(r#"{{println "a" "b"}}"#, v.clone()), "a b\n");
        // Logic functions.
        assert_eq!(
            render(r#"{{and 1 0}} {{or 0 "x"}} {{not .Up}}"#, v.clone()),
            "0 x true"
        );
        assert_eq!(
            render("{{lt 1 2}} {{ge 1 2}} {{ne 1 2}}", v.clone()),
            "true false true"
        );
        // Errors name the function.
        let err = |fmt: &str| {
            Format::parse(fmt)
                .unwrap()
                .render(&v)
                .unwrap_err()
                .to_string()
        };
        assert!(err("{{index .Names 5}}").contains("index out of range: 5"));
        assert!(err("{{lower}}").contains("wrong number of args for lower: want 1 got 0"));
        assert!(Format::parse("{{.A ~}}").is_err());
    }

    #[test]
    fn label_method_on_docker_style_strings() {
        let v = json!({"Labels": "a=1,b=two"});
        assert_eq!(render(r#"{{.Label "b"}}|{{.Label "c"}}"#, v), "two|");
    }

    #[test]
    fn control_flow_and_variables() {
        let v = json!({"Mounts": [{"Destination": "/a"}, {"Destination": "/b"}],
                       "Labels": {"k1": "v1", "k2": "v2"}, "Up": false, "N": 3});
        assert_eq!(
            render("{{range .Mounts}}{{.Destination}};{{end}}", v.clone()),
            "/a;/b;"
        );
        assert_eq!(
            render(
                "{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}",
                v.clone()
            ),
            "k1=v1 k2=v2 "
        );
        assert_eq!(
            render("{{range $i, $m := .Mounts}}{{$i}}{{end}}", v.clone()),
            "01"
        );
        assert_eq!(
            render(
                "{{if .Up}}up{{else if eq .N 3}}three{{else}}down{{end}}",
                v.clone()
            ),
            "three"
        );
        assert_eq!(render("{{with .Mounts}}{{len .}}{{end}}", v.clone()), "2");
        assert_eq!(
            render("{{range .None}}x{{else}}empty{{end}}", v.clone()),
            "empty"
        );
        assert_eq!(render("{{$n := .N}}{{$n}}", v.clone()), "3");
        assert_eq!(render("{{range .Mounts}}{{$.N}}{{end}}", v.clone()), "33");
        assert_eq!(render("a {{- .N -}} b", v), "a3b");
    }

    #[test]
    fn errors_are_reported() {
        assert!(Format::parse("{{.A").is_err());
        assert!(Format::parse("{{if .A}}x").is_err());
        assert!(Format::parse("{{end}}").is_err());
        let f = Format::parse("{{nosuch .A}}").unwrap();
        let e = f.render(&json!({})).unwrap_err().to_string();
        assert!(e.contains("function \"nosuch\" not defined"), "{e}");
    }

    #[test]
    fn tables_align_as_docker_does() {
        let f = Format::parse(r"table {{.ID}}\t{{.Name}}").unwrap();
        let rows = vec![
            json!({"ID": "abcdef123456", "Name": "web"}),
            json!({"ID": "1", "Name": "db"}),
        ];
        let out = f
            .render_rows(&[("ID", "CONTAINER ID"), ("Name", "NAMES")], &rows)
            .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\nabcdef123456   web\n1              db\n"
        );
        // A narrow column still takes the minimum width of 10.
        assert_eq!(tabwrite("a\tb\n", 10, 3), "a         b\n");
    }

    #[test]
    fn json_shorthand_and_escapes() {
        let f = Format::parse("json").unwrap();
        assert_eq!(f.render(&json!({"A": 1})).unwrap(), r#"{"A":1}"#);
        let f = Format::parse(r"{{.A}}\t{{.B}}").unwrap();
        assert_eq!(f.render(&json!({"A": 1, "B": 2})).unwrap(), "1\t2");
    }
}
