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

    /// Adds the states reachable from `states` without input (a `*` may
    /// match nothing).
    fn close(&self, states: &mut [bool]) {
        for p in 0..self.toks.len() {
            if states[p] && self.toks[p] == Tok::Star {
                states[p + 1] = true;
            }
        }
    }

    /// Runs the pattern over `s` from its start and returns the shortest and
    /// longest lengths of `s` that the whole pattern matches. One pass,
    /// O(len(s) x len(pattern)).
    fn prefix_lengths(&self, s: &[char]) -> Option<(usize, usize)> {
        let m = self.toks.len();
        let mut cur = vec![false; m + 1];
        let mut next = vec![false; m + 1];
        cur[0] = true;
        self.close(&mut cur);
        let mut found: Option<(usize, usize)> = None;
        let note = |l: usize, found: &mut Option<(usize, usize)>| {
            *found = Some(found.map_or((l, l), |(lo, _)| (lo, l)));
        };
        if cur[m] {
            note(0, &mut found);
        }
        for (i, &c) in s.iter().enumerate() {
            next.iter_mut().for_each(|x| *x = false);
            let mut any = false;
            for p in 0..m {
                if !cur[p] {
                    continue;
                }
                match self.toks[p] {
                    Tok::Star => next[p] = true,
                    Tok::Any => next[p + 1] = true,
                    Tok::Lit(x) if x == c => next[p + 1] = true,
                    Tok::Lit(_) => continue,
                }
                any = true;
            }
            if !any {
                break;
            }
            self.close(&mut next);
            std::mem::swap(&mut cur, &mut next);
            if cur[m] {
                note(i + 1, &mut found);
            }
        }
        found
    }

    fn reversed(&self) -> Pattern {
        Pattern {
            toks: self.toks.iter().rev().copied().collect(),
        }
    }

    /// Removes the shortest (or longest, `greedy`) matching prefix.
    pub(crate) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self.prefix_lengths(&chars) {
            Some((lo, hi)) => chars[if greedy { hi } else { lo }..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// Removes the shortest (or longest, `greedy`) matching suffix.
    pub(crate) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let rev: Vec<char> = value.chars().rev().collect();
        match self.reversed().prefix_lengths(&rev) {
            Some((lo, hi)) => {
                let cut = if greedy { hi } else { lo };
                rev[cut..].iter().rev().collect()
            }
            None => value.to_owned(),
        }
    }

    /// The leftmost-longest match starting at or after `from`.
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len())
            .find_map(|s| self.prefix_lengths(&chars[s..]).map(|(_, hi)| (s, s + hi)))
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
    fn long_inputs_are_fast() {
        let value = "ab".repeat(5_000);
        let p = Pattern::new("*a*b*a*b*x").unwrap();
        assert_eq!(p.trim_prefix(&value, true), value);
        assert_eq!(p.replace(&value[..600], "-", true), &value[..600]);
        let p = Pattern::new("a").unwrap();
        assert_eq!(p.replace(&value, "", true), "b".repeat(5_000));
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
