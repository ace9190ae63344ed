//! Downloads for `ADD <url>`: kiln-build's [`Fetcher`] over an HTTP client,
//! streaming to the destination file (the builder verifies `--checksum`).

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use kiln_build::{BackendError, Fetcher};
use tokio::io::AsyncWriteExt as _;

/// Fetches URLs with plain HTTP(S) GETs, following redirects.
pub(crate) struct HttpFetcher;

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BackendError> {
        let out = crate::image_cmd::block_on(download(url, dest)).map_err(|e| format!("{e:#}"))?;
        out.map_err(|e| format!("{e:#}").into())
    }
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
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
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
