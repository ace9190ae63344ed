//! The HTTP side of the distribution API, on reqwest: one [`Session`] per
//! registry (the HTTP client, the credentials, the registry's auth
//! challenge and bearer tokens by scope), requests with their
//! `Authorization`, and reading responses within limits.
//!
//! Limits, so that a hostile or broken registry cannot hold kiln: every
//! small document (manifest, index, token, error body) is read up to its
//! size limit and no further (a `Content-Length` over it is refused before
//! reading); every wait for the registry is paced: nothing received for the
//! timeout, or less than [`MIN_PROGRESS`] bytes over a timeout's worth of
//! waiting, ends the request; a small document must also arrive whole
//! within [`DOCUMENT_DEADLINE_FACTOR`] timeouts. An upload fails when the
//! registry stops reading it for the timeout, or does not answer within
//! [`UPLOAD_ANSWER_FACTOR`] timeouts once all of it was sent.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use crate::errors::{Ctx, root_cause};
use crate::{Error, Result};

/// Largest token response or other small JSON document read.
pub(crate) const MAX_DOCUMENT: usize = 4 * 1024 * 1024;
/// Largest error body read (the rest is not read).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A response that delivers fewer bytes than this over a timeout's worth
/// of waiting is too slow (a trickle), even if bytes keep coming.
pub(crate) const MIN_PROGRESS: u64 = 16 * 1024;
/// A small document must arrive whole within this many timeouts.
pub(crate) const DOCUMENT_DEADLINE_FACTOR: u32 = 4;
/// After an upload's last byte was sent, the registry must answer within
/// this many timeouts (it may be moving the blob into place).
pub(crate) const UPLOAD_ANSWER_FACTOR: u32 = 10;
/// Size of the pieces an upload body is handed to the HTTP client in, so
/// that a registry that stops reading is noticed.
const UPLOAD_SLICE: usize = 64 * 1024;

/// Credentials for one registry, from the Docker config.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// None: requests are anonymous.
    Anonymous,
    /// A user name and password.
    Basic(String, String),
    /// An identity token (OAuth2 refresh token) that `docker login` saved
    /// for a token registry.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic(u, _) => write!(f, "Basic({u:?}, <password>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<token>)"),
        }
    }
}

/// What the registry asks for in its `WWW-Authenticate` on `/v2/`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Why reading a response stopped early.
pub(crate) enum Stall {
    /// Nothing arrived for the timeout.
    Idle,
    /// Only this many bytes arrived over a timeout's worth of waiting.
    Slow(u64),
    /// A small document did not arrive whole in time.
    Deadline,
    /// The connection failed.
    Transport(reqwest::Error),
}

/// Reads a response's body chunk by chunk, pacing the registry: see the
/// module documentation.
pub(crate) struct Pace {
    timeout: Duration,
    waited: Duration,
    bytes: u64,
    started: bool,
}

impl Pace {
    pub(crate) fn new(timeout: Duration) -> Pace {
        Pace {
            timeout,
            waited: Duration::ZERO,
            bytes: 0,
            started: false,
        }
    }

    /// The next chunk of `resp`'s body; `None` at its end.
    pub(crate) async fn chunk(
        &mut self,
        resp: &mut Response,
    ) -> std::result::Result<Option<Bytes>, Stall> {
        let start = Instant::now();
        let next = tokio::time::timeout(self.timeout, resp.chunk()).await;
        let waited = start.elapsed();
        match next {
            Err(_) => Err(Stall::Idle),
            Ok(Err(e)) => Err(Stall::Transport(e)),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(b))) => {
                // The wait for the first byte is the registry's thinking
                // time, bounded by the idle rule alone.
                if self.started {
                    self.waited += waited;
                }
                self.started = true;
                self.bytes += b.len() as u64;
                if self.waited >= self.timeout {
                    if self.bytes < MIN_PROGRESS {
                        return Err(Stall::Slow(self.bytes));
                    }
                    self.waited = Duration::ZERO;
                    self.bytes = 0;
                }
                Ok(Some(b))
            }
        }
    }
}

/// Why a small document could not be read.
pub(crate) enum ReadError {
    /// Over the limit: its announced size, if it announced one.
    TooLarge(Option<u64>),
    Stall(Stall),
}

/// Reads all of `resp`'s body, at most `limit` bytes, within
/// [`DOCUMENT_DEADLINE_FACTOR`] timeouts.
pub(crate) async fn read_limited(
    resp: &mut Response,
    limit: usize,
    timeout: Duration,
) -> std::result::Result<Vec<u8>, ReadError> {
    if let Some(len) = resp.content_length()
        && len > limit as u64
    {
        return Err(ReadError::TooLarge(Some(len)));
    }
    let mut pace = Pace::new(timeout);
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = pace.chunk(resp).await.map_err(ReadError::Stall)? {
            if out.len() + chunk.len() > limit {
                return Err(ReadError::TooLarge(None));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout * DOCUMENT_DEADLINE_FACTOR, read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ReadError::Stall(Stall::Deadline)),
    }
}

/// The user-facing words for a stall of `what` after `timeout`.
pub(crate) fn stall_reason(stall: &Stall, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64();
    match stall {
        Stall::Idle => format!("nothing received for {secs} s"),
        Stall::Slow(n) => format!(
            "only {n} bytes received in {secs} s (less than {} KiB: too slow)",
            MIN_PROGRESS / 1024
        ),
        Stall::Deadline => format!(
            "not received whole within {} s",
            secs * f64::from(DOCUMENT_DEADLINE_FACTOR)
        ),
        Stall::Transport(e) => root_cause(e),
    }
}

/// The `WWW-Authenticate` challenge in `value`: its scheme and parameters.
fn parse_challenge(value: &str) -> Challenge {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        match params.remove("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: params.remove("service"),
            },
            None => Challenge::Open,
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        Challenge::Basic
    } else {
        Challenge::Open
    }
}

/// `repository:NAME:ACTIONS`, a token scope.
pub(crate) fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// One request to the registry, as [`Session::send`] and
/// [`Session::send_upload`] make it: what to send where, with which token
/// scopes, and how to name it in errors.
pub(crate) struct Call<'a> {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The full URL.
    pub(crate) url: &'a str,
    /// The token scopes it needs (`repository:NAME:pull`).
    pub(crate) scopes: &'a [String],
    /// Extra headers (`Accept`, `Content-Type`, ...).
    pub(crate) headers: HeaderMap,
    /// What is asked for, for errors (`blob sha256:... of busybox`).
    pub(crate) what: &'a str,
}

/// The streamed body of [`Session::send_upload`].
pub(crate) struct Upload<'a, S> {
    /// The body's pieces.
    pub(crate) pieces: S,
    /// Its length in bytes (`Content-Length`).
    pub(crate) len: u64,
    /// Told the bytes handed to the connection so far.
    pub(crate) progress: &'a (dyn Fn(u64) + Send + Sync),
}

/// One registry's HTTP client, credentials and tokens.
pub(crate) struct Session {
    /// The registry as named in references (`host[:port]`).
    pub(crate) registry: String,
    /// `http[s]://host[:port]`, where requests go.
    base: String,
    http: reqwest::Client,
    pub(crate) credentials: Credentials,
    pub(crate) timeout: Duration,
    challenge: tokio::sync::OnceCell<Challenge>,
    /// Bearer tokens by their scopes, with their expiry.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Session {
    pub(crate) fn new(
        registry: &str,
        http: bool,
        credentials: Credentials,
        connect_timeout: Option<Duration>,
        timeout: Duration,
    ) -> Result<Session> {
        crate::init_tls();
        // Docker Hub's API lives on another host than its name.
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let base = format!("{}://{host}", if http { "http" } else { "https" });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            // A pooled connection the registry dropped while idle would
            // otherwise fail the next request.
            .pool_idle_timeout(Duration::from_secs(20));
        if let Some(t) = connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let client = builder.build().map_err(|e| Error::Registry {
            registry: registry.to_string(),
            reference: registry.to_string(),
            message: format!("cannot set up the HTTP client: {}", root_cause(&e)),
        })?;
        Ok(Session {
            registry: registry.to_string(),
            base,
            http: client,
            credentials,
            timeout,
            challenge: tokio::sync::OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `path` (from `/v2/`) or a `Location` the registry gave, as a URL.
    pub(crate) fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_string()
        } else if path_or_location.starts_with('/') {
            format!("{}{path_or_location}", self.base)
        } else {
            format!("{}/{path_or_location}", self.base)
        }
    }

    fn transport_error(&self, e: &reqwest::Error, ctx: &Ctx<'_>) -> Error {
        if e.is_connect() {
            let mut reason = root_cause(e);
            if reason.contains("certificate") {
                reason = format!(
                    "its TLS certificate is not trusted ({reason}); kiln trusts the host's CA store (/etc/ssl/certs, or SSL_CERT_FILE)"
                );
            }
            Error::Unreachable {
                registry: self.registry.clone(),
                reason,
            }
        } else {
            Error::Registry {
                registry: self.registry.clone(),
                reference: ctx.reference.clone(),
                message: root_cause(e),
            }
        }
    }

    pub(crate) fn stall_error(&self, stall: &Stall, what: &str, ctx: &Ctx<'_>) -> Error {
        match stall {
            Stall::Transport(e) => self.transport_error(e, ctx),
            s => Error::Timeout {
                registry: self.registry.clone(),
                what: what.to_string(),
                reason: stall_reason(s, self.timeout),
            },
        }
    }

    /// Reads a small document (at most `limit` bytes) from `resp`.
    pub(crate) async fn document(
        &self,
        resp: &mut Response,
        limit: usize,
        what: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<u8>> {
        read_limited(resp, limit, self.timeout)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(size) => Error::TooLarge {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    size,
                    limit: limit as u64,
                },
                ReadError::Stall(s) => self.stall_error(&s, what, ctx),
            })
    }

    /// The error for a response with an unexpected status, from its
    /// status and (the first [`MAX_ERROR_BODY`] bytes of) its error body.
    pub(crate) async fn status_error(&self, mut resp: Response, ctx: &Ctx<'_>) -> Error {
        let status = resp.status();
        // A body that does not come in time or is too long only loses its
        // details: the status decides.
        let body = read_limited(&mut resp, MAX_ERROR_BODY, self.timeout)
            .await
            .unwrap_or_default();
        let codes: Vec<(String, String)> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errors")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let s = |k: &str| {
                    e.get(k)
                        .and_then(|x| x.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                (s("code"), s("message"))
            })
            .collect();
        let has = |names: &[&str]| codes.iter().any(|(c, _)| names.contains(&c.as_str()));
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || has(&["UNAUTHORIZED", "DENIED"])
        {
            return ctx.unauthorized();
        }
        if status == StatusCode::NOT_FOUND
            || has(&[
                "MANIFEST_UNKNOWN",
                "NAME_UNKNOWN",
                "BLOB_UNKNOWN",
                "NOT_FOUND",
            ])
        {
            return ctx.not_found();
        }
        let detail = codes
            .iter()
            .map(|(c, m)| {
                let m: String = m.chars().take(200).collect();
                if m.is_empty() || m.eq_ignore_ascii_case(c) {
                    c.clone()
                } else {
                    format!("{c}: {m}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        Error::Registry {
            registry: self.registry.clone(),
            reference: ctx.reference.clone(),
            message: if detail.is_empty() {
                format!("HTTP status {status}")
            } else {
                format!("HTTP status {status}: {detail}")
            },
        }
    }

    /// What the registry's `/v2/` asks for, asked once per session (on
    /// behalf of `what`, which its errors name).
    async fn challenge(&self, what: &str, ctx: &Ctx<'_>) -> Result<Challenge> {
        self.challenge
            .get_or_try_init(|| async {
                let resp = self
                    .with_header_timeout(self.http.get(self.url("/v2/")).send(), what, ctx)
                    .await?;
                if resp.status() != StatusCode::UNAUTHORIZED {
                    return Ok(Challenge::Open);
                }
                Ok(resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map_or(Challenge::Open, parse_challenge))
            })
            .await
            .cloned()
    }

    async fn with_header_timeout(
        &self,
        send: impl Future<Output = reqwest::Result<Response>>,
        what: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Response> {
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.transport_error(&e, ctx)),
            Err(_) => Err(Error::Timeout {
                registry: self.registry.clone(),
                what: what.to_string(),
                reason: format!("no answer for {} s", self.timeout.as_secs_f64()),
            }),
        }
    }

    fn basic_header(user: &str, pass: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let mut v = HeaderValue::from_str(&format!("Basic {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        v.set_sensitive(true);
        v
    }

    /// The `Authorization` for a request needing `scopes`, fetching a
    /// bearer token when the registry uses them.
    pub(crate) async fn authorization(
        &self,
        scopes: &[String],
        what: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Option<HeaderValue>> {
        match (self.challenge(what, ctx).await?, &self.credentials) {
            (Challenge::Open, _) | (Challenge::Basic, Credentials::Anonymous) => Ok(None),
            (Challenge::Basic, Credentials::Basic(u, p)) => Ok(Some(Self::basic_header(u, p))),
            (Challenge::Basic, Credentials::IdentityToken(_)) => Ok(None),
            (Challenge::Bearer { realm, service }, _) => {
                let key = scopes.join(" ");
                let cached = self
                    .tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .filter(|(_, until)| Instant::now() < *until)
                    .map(|(t, _)| t.clone());
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let (t, lifetime) = self
                            .fetch_token(&realm, service.as_deref(), scopes, ctx)
                            .await?;
                        self.tokens
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key, (t.clone(), Instant::now() + lifetime));
                        t
                    }
                };
                let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::Registry {
                        registry: self.registry.clone(),
                        reference: ctx.reference.clone(),
                        message: "the token service returned a token that is not a valid header"
                            .into(),
                    }
                })?;
                v.set_sensitive(true);
                Ok(Some(v))
            }
        }
    }

    /// Forgets the token for `scopes` (the registry refused it).
    fn forget_token(&self, scopes: &[String]) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&scopes.join(" "));
    }

    /// Gets a bearer token for `scopes` from the token service at `realm`:
    /// the token and how long to use it.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        ctx: &Ctx<'_>,
    ) -> Result<(String, Duration)> {
        let bad_realm = || Error::Registry {
            registry: self.registry.clone(),
            reference: ctx.reference.clone(),
            message: format!("its token service address {realm:?} is not a URL"),
        };
        let mut url = reqwest::Url::parse(realm).map_err(|_| bad_realm())?;
        let what = format!("a token from {}", url.host_str().unwrap_or(realm));
        let request = match &self.credentials {
            Credentials::IdentityToken(refresh) => {
                // OAuth2 refresh-token grant, as `docker login` tokens need.
                let mut form = reqwest::Url::parse("form:").map_err(|_| bad_realm())?;
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "kiln");
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scopes.join(" "));
                }
                let body = form.query().unwrap_or_default().to_string();
                self.http
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            creds => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let r = self.http.get(url);
                match creds {
                    Credentials::Basic(u, p) => {
                        r.header(header::AUTHORIZATION, Self::basic_header(u, p))
                    }
                    _ => r,
                }
            }
        };
        let mut resp = self.with_header_timeout(request.send(), &what, ctx).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, ctx).await);
        }
        let body = self.document(&mut resp, MAX_DOCUMENT, &what, ctx).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::Registry {
            registry: self.registry.clone(),
            reference: ctx.reference.clone(),
            message: format!("its token service sent invalid JSON: {e}"),
        })?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| v.get(*k)?.as_str().filter(|t| !t.is_empty()))
            .ok_or_else(|| Error::Registry {
                registry: self.registry.clone(),
                reference: ctx.reference.clone(),
                message: "its token service sent no token".into(),
            })?;
        // The spec's default lifetime is 60 s; renew a little early.
        let secs = v
            .get("expires_in")
            .and_then(|x| x.as_u64())
            .unwrap_or(60)
            .clamp(10, 24 * 3600);
        Ok((token.to_string(), Duration::from_secs(secs - 5)))
    }

    /// Sends `call` without a body, or with a small one; waits at most the
    /// timeout for the answer's headers. A 401 with a fresh token is
    /// retried once with a new one.
    pub(crate) async fn send(
        &self,
        call: Call<'_>,
        body: Option<Bytes>,
        ctx: &Ctx<'_>,
    ) -> Result<Response> {
        let Call {
            method,
            url,
            scopes,
            headers,
            what,
        } = call;
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(auth) = self.authorization(scopes, what, ctx).await? {
                req = req.header(header::AUTHORIZATION, auth);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = self.with_header_timeout(req.send(), what, ctx).await?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && attempt == 0
                && matches!(self.challenge(what, ctx).await?, Challenge::Bearer { .. })
            {
                self.forget_token(scopes);
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Sends `upload` as the body of `call`, reporting the bytes handed to
    /// the connection to `upload.progress`. Fails when the registry stops
    /// reading for the timeout, or does not answer within
    /// [`UPLOAD_ANSWER_FACTOR`] timeouts of the last byte.
    pub(crate) async fn send_upload<S>(
        &self,
        call: Call<'_>,
        upload: Upload<'_, S>,
        ctx: &Ctx<'_>,
    ) -> Result<Response>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let Call {
            method,
            url,
            scopes,
            headers,
            what,
        } = call;
        let Upload {
            pieces,
            len,
            progress,
        } = upload;
        let watch = Arc::new(Mutex::new(Watch {
            last: Instant::now(),
            sent: 0,
            done: None,
        }));
        let body = Sliced {
            inner: Box::pin(pieces),
            current: Bytes::new(),
            len,
            watch: watch.clone(),
        };
        let mut req = self
            .http
            .request(method, url)
            .headers(headers)
            .header(header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(auth) = self.authorization(scopes, what, ctx).await? {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let send = req.send();
        tokio::pin!(send);
        let period = (self.timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(200));
        let mut tick = tokio::time::interval(period);
        let mut reported = 0;
        loop {
            tokio::select! {
                r = &mut send => {
                    let (sent, _) = snapshot(&watch);
                    if sent > reported {
                        progress(sent);
                    }
                    return r.map_err(|e| self.transport_error(&e, ctx));
                }
                _ = tick.tick() => {
                    let (sent, stalled) = snapshot(&watch);
                    if sent > reported {
                        reported = sent;
                        progress(sent);
                    }
                    match stalled {
                        Some((since, true)) if since >= self.timeout * UPLOAD_ANSWER_FACTOR => {
                            return Err(Error::Timeout {
                                registry: self.registry.clone(),
                                what: what.to_string(),
                                reason: format!(
                                    "no answer for {} s after the upload",
                                    since.as_secs()
                                ),
                            });
                        }
                        Some((since, false)) if since >= self.timeout => {
                            return Err(Error::Timeout {
                                registry: self.registry.clone(),
                                what: what.to_string(),
                                reason: format!(
                                    "the registry stopped reading it for {} s, after {sent} of {len} bytes",
                                    self.timeout.as_secs_f64()
                                ),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// How an upload body is being consumed.
struct Watch {
    /// When the HTTP client last took a piece.
    last: Instant,
    /// Bytes taken.
    sent: u64,
    /// When the last piece was taken.
    done: Option<Instant>,
}

/// Bytes taken, and how long since the last piece was taken (with whether
/// the body is done).
fn snapshot(watch: &Mutex<Watch>) -> (u64, Option<(Duration, bool)>) {
    let w = watch.lock().unwrap_or_else(|e| e.into_inner());
    let stalled = match w.done {
        Some(at) => Some((at.elapsed(), true)),
        None => Some((w.last.elapsed(), false)),
    };
    (w.sent, stalled)
}

/// An upload body handed out in [`UPLOAD_SLICE`] pieces, recording when
/// each is taken.
struct Sliced {
    inner: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    current: Bytes,
    /// The body's announced length: once that much was taken, the body is
    /// done (the HTTP client need not poll for its end).
    len: u64,
    watch: Arc<Mutex<Watch>>,
}

impl Stream for Sliced {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(UPLOAD_SLICE);
                let piece = self.current.split_to(n);
                let len = self.len;
                let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
                w.last = Instant::now();
                w.sent += n as u64;
                if w.sent >= len && w.done.is_none() {
                    w.done = Some(w.last);
                }
                return Poll::Ready(Some(Ok(piece)));
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    self.current = b;
                    // Reading from the store is not the registry's time.
                    self.watch.lock().unwrap_or_else(|e| e.into_inner()).last = Instant::now();
                }
                Poll::Ready(None) => {
                    let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
                    if w.done.is_none() {
                        w.done = Some(Instant::now());
                    }
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian's openssl package, a dependency of ca-certificates)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA `NAME.pem`/`NAME.key` in `dir`.
    fn make_ca(dir: &Path, name: &str) {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=kiln test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// HTTPS to a registry whose certificate a private CA signed: trusted
    /// when the host's CA store (here `SSL_CERT_FILE`) holds that CA,
    /// refused otherwise. Each case runs in a child test process, as the CA
    /// store is read from the environment.
    #[test]
    fn https_trusts_the_hosts_ca_store_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "other");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
            ],
        );
        std::fs::write(
            d.join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext",
                "-out",
                "srv.pem",
            ],
        );
        for (ca, expect) in [("ca.pem", "trusted"), ("other.pem", "refused")] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "client::http::tests::https_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env("KILN_TLS_TEST_DIR", d)
                .env("KILN_TLS_TEST_EXPECT", expect)
                .env("SSL_CERT_FILE", d.join(ca))
                .env_remove("SSL_CERT_DIR")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("{all}");
            assert!(out.status.success(), "{expect}: {all}");
            assert!(
                all.contains("1 passed"),
                "{expect}: the child ran no test: {all}"
            );
            assert!(all.contains(&format!("https {expect}")), "{all}");
        }
    }

    /// The child of [`https_trusts_the_hosts_ca_store_and_only_it`]; does
    /// nothing when run on its own.
    #[test]
    #[ignore = "run by https_trusts_the_hosts_ca_store_and_only_it"]
    fn https_child() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let (Some(dir), Some(expect)) = (
            std::env::var_os("KILN_TLS_TEST_DIR"),
            std::env::var("KILN_TLS_TEST_EXPECT").ok(),
        ) else {
            return;
        };
        let dir = Path::new(&dir);
        crate::init_tls();
        let certs = vec![CertificateDer::from_pem_file(dir.join("srv.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(sock).await else {
                            return;
                        };
                        let mut buf = vec![0u8; 4096];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                            .await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
            let registry = format!("127.0.0.1:{port}");
            let session = Session::new(
                &registry,
                false,
                Credentials::Anonymous,
                Some(Duration::from_secs(5)),
                Duration::from_secs(5),
            )
            .unwrap();
            let ctx = Ctx {
                registry: &registry,
                reference: registry.clone(),
                has_credentials: false,
            };
            let res = session
                .send(Call { method: Method::GET, url: &session.url("/v2/"), scopes: &[], headers: HeaderMap::new(), what: "the check" }, None, &ctx)
                .await;
            match (expect.as_str(), res) {
                ("trusted", Ok(resp)) => {
                    assert_eq!(resp.status(), StatusCode::OK);
                    println!("https trusted");
                }
                ("refused", Err(e)) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("its TLS certificate is not trusted (invalid peer certificate: UnknownIssuer)"),
                        "{msg}"
                    );
                    assert!(msg.contains(&registry), "{msg}");
                    println!("https refused: {msg}");
                }
                (want, got) => panic!("expected {want}, got {got:?}"),
            }
        });
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="http://x/t""#),
            Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="fake""#), Challenge::Basic);
        assert_eq!(parse_challenge("Bearer"), Challenge::Open);
        assert_eq!(
            parse_challenge(r#"Bearer service="a,b", realm="http://r/\"q\"""#),
            Challenge::Bearer {
                realm: r#"http://r/"q""#.into(),
                service: Some("a,b".into())
            }
        );
    }
}
