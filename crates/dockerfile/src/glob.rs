//! Shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`:
//! `*` (any run), `?` (any character), `\` escaping `*`, `?`, `\`, `}` and
//! `/`; no bracket expressions (as BuildKit).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    /// Compiles `src`; the error says which escape is invalid.
    pub(crate) fn new(src: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut it = src.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match it.peek().copied() {
                    Some('}' | '/') => {}
                    Some(n @ ('*' | '?' | '\\')) => {
                        it.next();
                        toks.push(Tok::Lit(n));
                    }
                    Some(n) => return Err(format!("invalid escape '\\{n}'")),
                    None => return Err("invalid escape '\\\u{fffd}'".to_owned()),
                },
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern { toks })
    }

    /// Whether the whole of `s` matches.
    fn matches(&self, s: &[char]) -> bool {
        let (mut p, mut i) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match self.toks.get(p) {
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(Tok::Any) => {
                    p += 1;
                    i += 1;
                }
                Some(Tok::Lit(c)) if *c == s[i] => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        p = sp + 1;
                        i = si + 1;
                        star = Some((sp, si + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Star)
    }

    /// Removes the shortest (or longest, `greedy`) matching prefix.
    pub(crate) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let found = if greedy {
            (0..=n).rev().find(|&l| self.matches(&chars[..l]))
        } else {
            (0..=n).find(|&l| self.matches(&chars[..l]))
        };
        match found {
            Some(l) => chars[l..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// Removes the shortest (or longest, `greedy`) matching suffix.
    pub(crate) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let found = if greedy {
            (0..=n).find(|&s| self.matches(&chars[s..]))
        } else {
            (0..=n).rev().find(|&s| self.matches(&chars[s..]))
        };
        match found {
            Some(s) => chars[..s].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// The leftmost-longest match starting at or after `from`.
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len()).find_map(|s| {
            (s..=chars.len())
                .rev()
                .find(|&e| self.matches(&chars[s..e]))
                .map(|e| (s, e))
        })
    }

    /// Replaces the first match (or every non-overlapping match, `all`).
    pub(crate) fn replace(&self, value: &str, repl: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        if !all {
            return match self.find(&chars, 0) {
                Some((s, e)) => {
                    let mut out: String = chars[..s].iter().collect();
                    out.push_str(repl);
                    out.extend(&chars[e..]);
                    out
                }
                None => value.to_owned(),
            };
        }
        let mut out = String::new();
        let (mut search, mut last_end) = (0, 0);
        while search <= chars.len() {
            let Some((s, e)) = self.find(&chars, search) else {
                break;
            };
            out.extend(&chars[last_end..s]);
            // An empty match right after a match is not replaced again.
            if e > last_end || s == 0 {
                out.push_str(repl);
            }
            last_end = e;
            search = if e > search { e } else { search + 1 };
        }
        out.extend(&chars[last_end.min(chars.len())..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_suffix() {
        let p = Pattern::new("*x*y").unwrap();
        assert_eq!(p.trim_prefix("xxyy", false), "y");
        assert_eq!(p.trim_prefix("xxyy", true), "");
        let p = Pattern::new("\\**\\*").unwrap();
        assert_eq!(p.trim_suffix("a***yy*", true), "a");
        assert_eq!(p.trim_suffix("a***yy*", false), "a**");
        assert!(Pattern::new("\\a").is_err());
    }

    #[test]
    fn replace_first_and_all() {
        let p = Pattern::new("/?/").unwrap();
        assert_eq!(p.replace("/a/foo/b/c.txt", "/", false), "/foo/b/c.txt");
        assert_eq!(p.replace("/a/foo/b/c.txt", "/", true), "/foo/c.txt");
        let p = Pattern::new("").unwrap();
        assert_eq!(p.replace("xxyy", "ww", false), "wwxxyy");
        let p = Pattern::new("\\/").unwrap();
        assert_eq!(p.replace("/tmp/foo.txt", "\\/", true), "\\/tmp\\/foo.txt");
    }
}
