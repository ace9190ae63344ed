//! Word expansion: the shell-like lexer Dockerfile instructions go through
//! at build time (BuildKit's dialect).
//!
//! It handles `$VAR`, `${VAR}`, the `${VAR:-x}` family, pattern removal
//! (`#`, `##`, `%`, `%%`) and replacement (`/`, `//`), single and double
//! quotes, and an escape character (`\` or `` ` ``). [`process_word`] gives
//! one string; [`process_words`] also splits the result into words (quoted
//! text and escaped characters never split; expanded values do).
//!
//! ```
//! use kiln_dockerfile::shell::{process_word, process_words};
//!
//! let env = [("NAME", "world"), ("LIST", "a b")];
//! assert_eq!(process_word("hello ${NAME:-nobody}", &env[..]).unwrap(), "hello world");
//! assert_eq!(process_words("x $LIST", &env[..]).unwrap(), ["x", "a", "b"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::glob::Pattern;

/// Where variables are looked up.
///
/// Implemented for closures `Fn(&str) -> Option<String>`, maps, and slices of
/// `(name, value)` pairs or `"name=value"` strings, where a later entry wins
/// (BuildKit's ordered environment).
pub trait Env {
    /// The value of `name`, or `None` when unset (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Env for [(K, V)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref().to_owned())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Env for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

impl Env for [String] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find_map(|e| match e.split_once('=') {
            Some((k, v)) if k == name => Some(v.to_owned()),
            None if e == name => Some(String::new()),
            _ => None,
        })
    }
}

/// Why a word could not be expanded.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandErrorKind {
    /// `${` without its `}`.
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}`.
    BadSubstitution,
    /// `${VAR/pat` without the second `/`.
    MissingSlash,
    /// `${...}` nested too deeply.
    TooDeep,
    /// The end of the word came before the expected character.
    UnexpectedEnd(char),
    /// A quote was never closed (`'` or `"`).
    UnterminatedQuote(char),
    /// `${VAR?msg}` or `${VAR:?msg}` with VAR unset (or empty).
    Required {
        /// The variable.
        name: String,
        /// The message given, or the default one.
        message: String,
    },
    /// `${VAR<op>...}` with an operator that is not supported (`:=`, `:x`).
    UnsupportedModifier(String),
    /// A `#`, `%` or `/` pattern with a bad escape.
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ExpandErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandErrorKind::MissingBrace => f.write_str("syntax error: missing '}'"),
            ExpandErrorKind::BadSubstitution => f.write_str("syntax error: bad substitution"),
            ExpandErrorKind::MissingSlash => f.write_str("syntax error: missing '/' in ${}"),
            ExpandErrorKind::TooDeep => f.write_str("substitutions nested too deeply"),
            ExpandErrorKind::UnexpectedEnd(c) => {
                write!(
                    f,
                    "unexpected end of statement while looking for matching {c}"
                )
            }
            ExpandErrorKind::UnterminatedQuote(q) => {
                let which = if *q == '\'' { "single" } else { "double" };
                write!(
                    f,
                    "unexpected end of statement while looking for matching {which}-quote"
                )
            }
            ExpandErrorKind::Required { name, message } => write!(f, "{name}: {message}"),
            ExpandErrorKind::UnsupportedModifier(m) => {
                write!(f, "unsupported modifier ({m}) in substitution")
            }
            ExpandErrorKind::InvalidPattern { pattern, reason } => {
                write!(f, "invalid pattern ({pattern}) in substitution: {reason}")
            }
        }
    }
}

/// A word that could not be expanded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    /// The word as given.
    pub word: String,
    /// What went wrong.
    pub kind: ExpandErrorKind,
}

/// The full outcome of an expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word.
    pub result: String,
    /// The expanded word split into words.
    pub words: Vec<String>,
    /// Variables that were looked up and set.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// A configured word expander.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave quotes alone (not special).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (`$X`, `${X:-y}`).
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with escape character `escape` and every option off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string.
    pub fn process_word(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<String, ExpandError> {
        self.process(word, env).map(|e| e.result)
    }

    /// Expands `word` and splits it into words.
    pub fn process_words(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|e| e.words)
    }

    /// Expands `word`, returning the string, the words, and which variables
    /// were found.
    pub fn process(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<Expansion, ExpandError> {
        let chars: Vec<char> = word.chars().collect();
        let mut st = State {
            lex: self,
            env: &|n: &str| env.get(n),
            chars: &chars,
            pos: 0,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match st.stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: st.matched,
                unmatched: st.unmatched,
            }),
            Err(kind) => Err(ExpandError {
                word: word.to_owned(),
                kind,
            }),
        }
    }
}

/// Expands `word` with escape character `\` (BuildKit's `ProcessWord`).
pub fn process_word(word: &str, env: &(impl Env + ?Sized)) -> Result<String, ExpandError> {
    Lexer::new('\\').process_word(word, env)
}

/// Expands `word` with escape character `\` and splits it into words
/// (BuildKit's `ProcessWords`).
pub fn process_words(word: &str, env: &(impl Env + ?Sized)) -> Result<Vec<String>, ExpandError> {
    Lexer::new('\\').process_words(word, env)
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

struct State<'a> {
    lex: &'a Lexer,
    env: Lookup<'a>,
    chars: &'a [char],
    pos: usize,
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// How deep `${...}` may nest (keeps the stack bounded on hostile input).
const MAX_DEPTH: usize = 128;

/// Word splitting as the expansion goes.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = (self.env)(name);
        if v.is_some() {
            self.matched.insert(name.to_owned());
        } else {
            self.unmatched.insert(name.to_owned());
        }
        v
    }

    /// Processes until `stop` (consumed) or the end.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandErrorKind::TooDeep);
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let r = self.stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let s = self.dollar()?;
                result.push_str(&s);
                words.add_str(&s);
            } else if quotes && ch == '\'' {
                let s = self.single_quote()?;
                result.push_str(&s);
                words.add_raw_str(&s);
            } else if quotes && ch == '"' {
                let s = self.double_quote()?;
                result.push_str(&s);
                words.add_raw_str(&s);
            } else {
                self.pos += 1;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(c) => {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                    }
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::UnexpectedEnd(c)),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedQuote('\'')),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedQuote('"')),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.peek().filter(|d| is_digit(*d)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphabetic() || is_digit(c) || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        let mut ops = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => {
                return Ok(match self.get_env(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.replace(name),
            ':' => {
                null_is_unset = true;
                match self.next() {
                    Some(c) => {
                        op = c;
                        ops.push(c);
                    }
                    None => return Err(ExpandErrorKind::MissingBrace),
                }
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(ExpandErrorKind::UnsupportedModifier(ops)),
        }
        let raw = op == '#' || op == '%';
        let (mut word, _) = match self.stop_on(Some('}'), raw) {
            Ok(w) => w,
            Err(e) => {
                return Err(if self.peek().is_none() {
                    ExpandErrorKind::MissingBrace
                } else {
                    e
                });
            }
        };
        let value = self.get_env(&name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{ops}{word}}}"));
        }
        let empty = value
            .as_deref()
            .is_none_or(|v| null_is_unset && v.is_empty());
        match op {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match value {
                None => Err(required(name, word, "is not allowed to be unset")),
                Some(v) if null_is_unset && v.is_empty() => {
                    Err(required(name, word, "is not allowed to be empty"))
                }
                Some(v) => Ok(v),
            },
            '#' | '%' if !null_is_unset => {
                let mut greedy = false;
                if word.starts_with(op) {
                    greedy = true;
                    word.remove(0);
                }
                let value = value.unwrap_or_default();
                let pat =
                    Pattern::new(&word).map_err(|reason| ExpandErrorKind::InvalidPattern {
                        pattern: word.clone(),
                        reason,
                    })?;
                Ok(if op == '#' {
                    pat.trim_prefix(&value, greedy)
                } else {
                    pat.trim_suffix(&value, greedy)
                })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(ops)),
        }
    }

    fn replace(&mut self, name: String) -> Result<String, ExpandErrorKind> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let (pattern, _) = self.stop_on(Some('/'), true).map_err(|e| {
            if self.peek().is_none() {
                ExpandErrorKind::MissingSlash
            } else {
                e
            }
        })?;
        let (replacement, _) = self.stop_on(Some('}'), true).map_err(|e| {
            if self.peek().is_none() {
                ExpandErrorKind::MissingBrace
            } else {
                e
            }
        })?;
        let value = self.get_env(&name);
        let Some(value) = value else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let pat = Pattern::new(&pattern).map_err(|reason| ExpandErrorKind::InvalidPattern {
            pattern: pattern.clone(),
            reason,
        })?;
        Ok(pat.replace(&value, &replacement, all))
    }
}

fn required(name: String, word: String, default: &str) -> ExpandErrorKind {
    let message = if word.is_empty() {
        default.to_owned()
    } else {
        word
    };
    ExpandErrorKind::Required { name, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let word = "${A:-".repeat(100_000);
        let none = |_: &str| None::<String>;
        let err = process_word(&word, &none).unwrap_err();
        assert_eq!(err.kind, ExpandErrorKind::TooDeep);
        let ok = format!("{}x{}", "${A:-".repeat(50), "}".repeat(50));
        assert_eq!(process_word(&ok, &none).unwrap(), "x");
    }

    #[test]
    fn patterns_and_required() {
        let env = [("FOO", "/tmp/tmp/bar.txt"), ("EMPTY", "")];
        assert_eq!(
            process_word("${FOO//\\/tmp/}", &env[..]).unwrap(),
            "/bar.txt"
        );
        assert_eq!(process_word("${FOO%.*}", &env[..]).unwrap(), "/tmp/tmp/bar");
        assert_eq!(process_word("${FOO##*/}", &env[..]).unwrap(), "bar.txt");
        let e = process_word("${EMPTY:?must be set}", &env[..]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to process \"${EMPTY:?must be set}\": EMPTY: must be set"
        );
        assert!(process_word("${FOO#\\a}", &env[..]).is_err());
        let lex = Lexer {
            skip_unset_env: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lex.process_word("$X ${Y:-z} ${FOO#/}", &env[..]).unwrap(),
            "$X ${Y:-z} tmp/tmp/bar.txt"
        );
        let e = lex.process("a $FOO $NOPE", &env[..]).unwrap();
        assert!(e.matched.contains("FOO") && e.unmatched.contains("NOPE"));
        assert_eq!(
            Lexer::new('`').process_word("a`$b", &env[..]).unwrap(),
            "a$b"
        );
    }
}
