//! Path patterns: Go `filepath.Match` syntax (`*`, `?`, `[a-z]`, `[^x]`, `\`
//! escapes) plus `**` for any number of directories, matched against
//! slash-separated relative paths. Used by `.dockerignore`, COPY globs and
//! `--exclude`.

/// One compiled pattern element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character except `/`.
    Any,
    /// `*`: any run of characters except `/`.
    Star,
    /// `**`: anything, `/` included.
    DoubleStar,
    /// `**/`: empty, or anything ending with `/`.
    DoubleStarSlash,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A malformed pattern (unclosed `[`, trailing `\`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct PatternError(pub String);

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
    text: String,
}

impl Pattern {
    /// Compiles `text`; `double_star` enables `**` (dockerignore), otherwise
    /// `**` is two `*` (Go `filepath.Match`, used for COPY sources).
    pub fn new(text: &str, double_star: bool) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = text.chars().collect();
        let err = || PatternError(text.to_string());
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if double_star && chars.get(i + 1) == Some(&'*') {
                        i += 2;
                        while chars.get(i) == Some(&'*') {
                            i += 1;
                        }
                        if chars.get(i) == Some(&'/') {
                            i += 1;
                            toks.push(Tok::DoubleStarSlash);
                        } else {
                            toks.push(Tok::DoubleStar);
                        }
                        continue;
                    }
                    toks.push(Tok::Star);
                }
                '?' => toks.push(Tok::Any),
                '\\' => {
                    i += 1;
                    toks.push(Tok::Lit(*chars.get(i).ok_or_else(err)?));
                }
                '[' => {
                    i += 1;
                    let negated = matches!(chars.get(i), Some('^') | Some('!'));
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *chars.get(i).ok_or_else(err)?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            i += 1;
                            *chars.get(i).ok_or_else(err)?
                        } else {
                            c
                        };
                        i += 1;
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']')
                        {
                            i += 1;
                            hi = if chars[i] == '\\' {
                                i += 1;
                                *chars.get(i).ok_or_else(err)?
                            } else {
                                chars[i]
                            };
                            i += 1;
                        }
                        ranges.push((lo, hi));
                    }
                    toks.push(Tok::Class { negated, ranges });
                }
                c => toks.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Pattern {
            toks,
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern contains any wildcard.
    pub fn has_wildcards(&self) -> bool {
        self.toks.iter().any(|t| !matches!(t, Tok::Lit(_)))
    }

    /// Whether the whole of `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let p: Vec<char> = path.chars().collect();
        match_at(&self.toks, &p)
    }

    /// Whether `path` or one of its parent directories matches.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        let mut prefix = path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if self.matches(parent) {
                return true;
            }
            prefix = parent;
        }
        false
    }
}

fn match_at(toks: &[Tok], s: &[char]) -> bool {
    let Some((tok, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match tok {
        Tok::Lit(c) => s.first() == Some(c) && match_at(rest, &s[1..]),
        Tok::Any => s.first().is_some_and(|c| *c != '/') && match_at(rest, &s[1..]),
        Tok::Class { negated, ranges } => match s.first() {
            Some(c) if *c != '/' => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && match_at(rest, &s[1..])
            }
            _ => false,
        },
        Tok::Star => {
            for n in 0..=s.len() {
                if match_at(rest, &s[n..]) {
                    return true;
                }
                if s.get(n) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Tok::DoubleStar => (0..=s.len()).any(|n| match_at(rest, &s[n..])),
        Tok::DoubleStarSlash => {
            if match_at(rest, s) {
                return true;
            }
            (0..s.len()).any(|n| s[n] == '/' && match_at(rest, &s[n + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p, true).expect("valid").matches(s)
    }

    #[test]
    fn go_match_rules() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "d/a.txt"));
        assert!(m("d/*.go", "d/x.go"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(Pattern::new("[abc", true).is_err());
        assert!(Pattern::new("ab\\", true).is_err());
    }

    #[test]
    fn double_star() {
        assert!(m("**/foo", "foo"));
        assert!(m("**/foo", "a/b/foo"));
        assert!(!m("**/foo", "a/bfoo"));
        assert!(m("foo/**", "foo/a/b"));
        assert!(!m("foo/**", "foo"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(m("**", "anything/at/all"));
        assert!(m("**/*.go", "x/y/z.go"));
        // Without `**` support, `**` behaves as `*`.
        assert!(
            !Pattern::new("**/foo", false)
                .expect("valid")
                .matches("a/b/foo")
        );
    }

    #[test]
    fn parent_matching() {
        let p = Pattern::new("build", true).expect("valid");
        assert!(p.matches_or_parent("build/x/y.o"));
        assert!(!p.matches_or_parent("src/build.rs"));
    }
}
