//! `.dockerignore` parsing and matching with Docker's rules: one pattern per
//! line, `#` comments, `!` exceptions, the last matching pattern wins, leading
//! `/` and `./` ignored, `**` for any number of directories, and a pattern
//! matching a directory excluding everything below it.

use crate::pattern::{Pattern, PatternError};

/// A `.dockerignore` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DockerIgnoreError {
    /// A line that is only `!` (Docker refuses it).
    #[error("illegal exclusion pattern: \"!\"")]
    BareExclusion,
    /// A malformed pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// One `.dockerignore` rule.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    exception: bool,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

/// Cleans a path the way Go's `filepath.Clean` does, relative form without a
/// leading `/`: `./a//b/../c/` → `a/c`; `.` for the empty path.
pub(crate) fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl DockerIgnore {
    /// Parses the contents of a `.dockerignore` file (a leading UTF-8
    /// byte-order mark is skipped, as Docker does; a bare `!` is an error).
    pub fn parse(text: &str) -> Result<DockerIgnore, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pat = line.trim();
            if pat.is_empty() {
                continue;
            }
            let exception = pat.starts_with('!');
            if exception {
                pat = pat[1..].trim();
                if pat.is_empty() {
                    return Err(DockerIgnoreError::BareExclusion);
                }
            }
            let cleaned = clean_rel(pat);
            if cleaned == "." {
                continue;
            }
            rules.push(Rule {
                pattern: Pattern::new(&cleaned, true)?,
                exception,
            });
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is an exception (`!pattern`): then an excluded
    /// directory may still contain included files and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether the context-relative `path` (slash-separated) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let path = clean_rel(path);
        let mut excluded = false;
        for rule in &self.rules {
            if rule.pattern.matches_or_parent(&path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).expect("valid")
    }

    #[test]
    fn basics() {
        let d = ig("# comment\n\n*.md\n!README.md\n/target\n./tmp/\n**/*.o\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(!d.is_excluded("docs/x.md"), "* does not cross directories");
        assert!(d.is_excluded("target"));
        assert!(d.is_excluded("target/debug/kiln"));
        assert!(d.is_excluded("tmp/a"));
        assert!(d.is_excluded("a/b/c.o"));
        assert!(d.is_excluded("c.o"));
        assert!(!d.is_excluded("src/main.rs"));
        assert!(d.has_exceptions());
    }

    #[test]
    fn last_rule_wins() {
        let d = ig("!keep\n*\n");
        assert!(d.is_excluded("keep"));
        let d = ig("*\n!keep\n");
        assert!(!d.is_excluded("keep"));
        assert!(d.is_excluded("other"));
        // An exception for a file in an excluded dir.
        let d = ig("dir\n!dir/keep.txt\n");
        assert!(d.is_excluded("dir/a"));
        assert!(!d.is_excluded("dir/keep.txt"));
    }

    /// Docker skips a UTF-8 byte-order mark before the first pattern
    /// (TestBuildDockerignoringBOM) and refuses a line that is only `!`
    /// (TestBuildDockerignoringBadExclusion).
    #[test]
    fn bom_and_bare_exclusion() {
        let d = ig("\u{feff}Dockerfile\n.dockerignore\n");
        assert!(d.is_excluded("Dockerfile"));
        assert!(d.is_excluded(".dockerignore"));
        let err = DockerIgnore::parse("a\n!\n").expect_err("bare !");
        assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
        assert_eq!(
            DockerIgnore::parse("! \n").expect_err("bare ! with a space"),
            DockerIgnoreError::BareExclusion
        );
    }

    #[test]
    fn clean() {
        assert_eq!(clean_rel("./a//b/../c/"), "a/c");
        assert_eq!(clean_rel("/"), ".");
        assert_eq!(clean_rel("../x"), "x");
    }
}
