//! "did you mean ...?" suggestions by edit distance.

/// Levenshtein distance between `a` and `b` (case-insensitive).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ` (did you mean <prefix><option>?)` for the closest option, or "" when
/// none is close enough (at most a third of the word's length, at least 1).
pub(crate) fn did_you_mean(word: &str, options: &[&str], prefix: &str) -> String {
    if word.chars().count() > 64 {
        return String::new();
    }
    let limit = (word.chars().count() / 3).max(1);
    options
        .iter()
        .map(|o| (distance(word, o), *o))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| format!(" (did you mean {prefix}{o}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(distance("RUNN", "run"), 1);
        assert_eq!(
            did_you_mean("RUNN", &["RUN", "CMD"], ""),
            " (did you mean RUN?)"
        );
        assert_eq!(did_you_mean("FOO", &["RUN", "COPY"], ""), "");
        assert_eq!(
            did_you_mean("exlude", &["exclude"], "--"),
            " (did you mean --exclude?)"
        );
    }
}
