//! Downloads for `ADD <url>`: kiln-builder's [`Fetcher`] over an HTTP client,
//! streaming to the destination file (the builder verifies `--checksum`),
//! and clones for `ADD <git url>` with the system's `git`.

use std::path::Path;

use crate::bail;
use crate::error::{Context as _, Result, chain};
use futures_util::StreamExt as _;
use kiln_builder::{BackendError, Fetcher};
use tokio::io::AsyncWriteExt as _;

/// Fetches URLs with plain HTTP(S) GETs, following redirects.
pub struct HttpFetcher;

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BackendError> {
        let out = crate::block_on(download(url, dest)).map_err(|e| chain(&e))?;
        out.map_err(|e| chain(&e).into())
    }

    fn fetch_git(
        &self,
        repo: &str,
        reference: Option<&str>,
        dest: &Path,
        keep_git_dir: bool,
    ) -> Result<(), BackendError> {
        clone_git(repo, reference, dest, keep_git_dir).map_err(|e| chain(&e).into())
    }
}

/// Runs `git ARGS` (in `dir` when given), failing with its stderr.
fn git(dir: Option<&Path>, args: &[&str]) -> Result<()> {
    let mut cmd = std::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run git (is the git package installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Clones `repo` at `reference` into `dest` with the system's git: a
/// shallow fetch of the ref (a full one when the server will not serve a
/// commit by its ID), checked out detached; `.git` removed unless kept.
pub fn clone_git(
    repo: &str,
    reference: Option<&str>,
    dest: &Path,
    keep_git_dir: bool,
) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    git(Some(dest), &["init", "-q"])?;
    let want = reference.unwrap_or("HEAD");
    if git(Some(dest), &["fetch", "-q", "--depth", "1", repo, want]).is_err() {
        // A commit ID the server does not serve by itself: fetch everything.
        git(
            Some(dest),
            &[
                "fetch",
                "-q",
                "--tags",
                repo,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        )
        .with_context(|| format!("cannot fetch {repo}"))?;
        git(Some(dest), &["checkout", "-q", "--detach", want])
            .with_context(|| format!("{repo} has no ref {want}"))?;
    } else {
        git(Some(dest), &["checkout", "-q", "--detach", "FETCH_HEAD"])?;
    }
    if !keep_git_dir {
        let dot_git = dest.join(".git");
        std::fs::remove_dir_all(&dot_git)
            .with_context(|| format!("cannot remove {}", dot_git.display()))?;
    }
    Ok(())
}

async fn download(url: &str, dest: &Path) -> Result<Option<i64>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("ADD {url}: only http and https URLs are supported");
    }
    let resp = reqwest::get(url)
        .await
        .with_context(|| format!("cannot download {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("cannot download {url}: the server answered {status}");
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut file = tokio::fs::File::create(dest)
        .await
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("download of {url} was cut"))?;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    file.flush()
        .await
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(modified)
}

/// Parses an HTTP date in its only current form (`Wed, 21 Oct 2015 07:28:00 GMT`)
/// to Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from civil (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local repository with a tag and a later commit: the tag's tree is
    /// checked out, without `.git` unless kept.
    #[test]
    fn clones_a_ref_with_and_without_the_git_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        let g = |args: &[&str]| {
            git(
                Some(&repo),
                &[&["-c", "user.name=t", "-c", "user.email=t@t"][..], args].concat(),
            )
            .expect("git")
        };
        g(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("f.txt"), "v1\n").expect("write");
        g(&["add", "f.txt"]);
        g(&["commit", "-q", "-m", "one"]);
        g(&["tag", "v1"]);
        std::fs::write(repo.join("f.txt"), "v2\n").expect("write");
        g(&["commit", "-q", "-am", "two"]);
        let url = format!("file://{}", repo.display());
        let a = dir.path().join("a");
        clone_git(&url, Some("v1"), &a, false).expect("clone v1");
        assert_eq!(std::fs::read_to_string(a.join("f.txt")).expect("f"), "v1\n");
        assert!(!a.join(".git").exists());
        let b = dir.path().join("b");
        clone_git(&url, None, &b, true).expect("clone HEAD");
        assert_eq!(std::fs::read_to_string(b.join("f.txt")).expect("f"), "v2\n");
        assert!(b.join(".git").is_dir());
        let c = dir.path().join("c");
        assert!(clone_git(&url, Some("nope"), &c, false).is_err());
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Wed, 21 Foo 2015 07:28:00 GMT"), None);
    }
}
