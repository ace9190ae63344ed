//! Splitting an instruction's logical line: keyword, leading flags, and the
//! argument splitters of BuildKit's line parsers (whitespace split,
//! quote-aware word split, key/value pairs).

/// The whitespace BuildKit's `[\t\v\f\r ]` regex matches.
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of [`is_split_space`] (quotes are not special). Like Go's
/// `regexp.Split`, a separator at either end gives an empty first or last word.
pub(crate) fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_sep = false;
    for (i, c) in rest.char_indices() {
        if is_split_space(c) {
            if !in_sep {
                out.push(rest[start..i].to_owned());
                in_sep = true;
            }
        } else if in_sep {
            in_sep = false;
            start = i;
        }
    }
    out.push(if in_sep {
        String::new()
    } else {
        rest[start..].to_owned()
    });
    out
}

/// Splits at the first run of [`is_split_space`]: `(head, Some(tail))`.
pub(crate) fn split_once_space(s: &str) -> (&str, Option<&str>) {
    match s.find(is_split_space) {
        Some(i) => {
            let tail = s[i..].trim_start_matches(is_split_space);
            (&s[..i], Some(tail))
        }
        None => (s, None),
    }
}

/// Takes the leading `--flags` off `line`; returns the rest and the flags.
///
/// Quotes are removed and escape pairs resolved inside a flag; a bare `--`
/// ends the flags and is dropped.
pub(crate) fn extract_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut it = line.char_indices().peekable();
    while let Some((pos, ch)) = it.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if ch != '-' || it.peek().map(|p| p.1) != Some('-') {
                    return (&line[pos..], flags);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[pos..], flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    if let Some((_, n)) = it.next() {
                        word.push(n);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == escape {
                    match it.next() {
                        Some((_, n)) => word.push(n),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    ("", flags)
}

/// BuildKit's quote-aware word split (ENV, LABEL, ARG): quotes and escapes
/// stay in the words; only unquoted whitespace separates. Every word is a
/// slice of `rest` (an escape at the very end is dropped).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    word_spans(rest, escape)
        .into_iter()
        .map(|(a, b)| rest[a..b].to_owned())
        .collect()
}

/// [`parse_words`] as byte ranges of `rest`.
pub(crate) fn word_spans(rest: &str, escape: char) -> Vec<(usize, usize)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let (mut start, mut end) = (0, 0);
    let mut blank_ok = false;
    let mut it = rest.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = i;
            end = i;
        }
        let next_end = i + ch.len_utf8();
        match phase {
            Phase::Spaces | Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || end > start {
                        words.push((start, end));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // The escape and the next character stay; a final escape goes.
                    match it.next() {
                        None => continue,
                        Some((j, n)) => end = j + n.len_utf8(),
                    }
                    continue;
                }
                end = next_end;
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                if ch == escape && q != '\'' {
                    match it.next() {
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                        Some((j, n)) => end = j + n.len_utf8(),
                    }
                    continue;
                }
                end = next_end;
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || end > start) {
        words.push((start, end));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(
            extract_flags("--a=1 --b=\"x y\" rest of it", '\\'),
            ("rest of it", vec!["--a=1".to_owned(), "--b=x y".to_owned()])
        );
        assert_eq!(extract_flags("-- foo", '\\'), (" foo", vec![]));
        assert_eq!(extract_flags("--x", '\\'), ("", vec!["--x".to_owned()]));
        assert_eq!(extract_flags("- x", '\\'), ("- x", vec![]));
    }

    #[test]
    fn words() {
        assert_eq!(
            parse_words(r#"a="x y" b=c\ d 'e\'"#, '\\'),
            vec![r#"a="x y""#, r"b=c\ d", r"'e\'"]
        );
        assert_eq!(split_whitespace("a  b\tc"), vec!["a", "b", "c"]);
        assert_eq!(split_once_space("FROM  x y"), ("FROM", Some("x y")));
    }
}
