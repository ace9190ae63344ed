//! An in-process, fault-injecting fake registry on 127.0.0.1 for the
//! registry client's tests: a small HTTP/1.1 server over tokio that speaks
//! enough of the distribution API (manifests, blobs, chunked uploads, basic
//! and bearer auth) and can corrupt, truncate or slow down blobs.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Authentication the fake demands.
#[derive(Clone, Debug, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        pass: String,
    },
    Bearer {
        user: String,
        pass: String,
    },
}

#[derive(Default)]
pub(crate) struct State {
    /// (repository, tag or digest) -> (content type, body)
    pub(crate) manifests: HashMap<(String, String), (String, Vec<u8>)>,
    pub(crate) blobs: HashMap<String, Vec<u8>>,
    pub(crate) uploads: HashMap<String, Vec<u8>>,
    pub(crate) auth: Auth,
    /// Blobs served with flipped bytes.
    pub(crate) corrupt: HashSet<String>,
    /// Blobs cut off halfway, for this many more requests.
    pub(crate) truncate: HashMap<String, usize>,
    /// Delay before serving each blob body.
    pub(crate) blob_delay: Option<Duration>,
    /// "METHOD path" of every request.
    pub(crate) log: Vec<String>,
    /// Sizes of PATCH bodies received.
    pub(crate) patch_sizes: Vec<usize>,
    in_flight: usize,
    pub(crate) max_in_flight: usize,
    next_upload: usize,
}

#[derive(Clone)]
pub(crate) struct Fake {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<State>>,
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then cut the connection.
    cut_at: Option<usize>,
    delay: Option<Duration>,
}

fn resp(status: u16) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        cut_at: None,
        delay: None,
    }
}

fn error(status: u16, code: &str) -> Response {
    let mut r = resp(status);
    r.body = format!(r#"{{"errors":[{{"code":"{code}","message":"{code}"}}]}}"#).into_bytes();
    r.headers
        .push(("Content-Type".into(), "application/json".into()));
    r
}

impl Fake {
    pub(crate) async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Fake {
            addr,
            state: Arc::new(Mutex::new(State::default())),
        };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move {
                    let _ = f.serve(sock).await;
                });
            }
        });
        fake
    }

    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub(crate) fn put_blob(&self, data: &[u8]) -> String {
        let d = sha(data);
        self.state().blobs.insert(d.clone(), data.to_vec());
        d
    }

    pub(crate) fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let d = sha(body);
        let mut st = self.state();
        st.manifests.insert(
            (repo.into(), tag.into()),
            (media_type.into(), body.to_vec()),
        );
        st.manifests
            .insert((repo.into(), d.clone()), (media_type.into(), body.to_vec()));
        d
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    async fn serve(&self, mut sock: TcpStream) -> std::io::Result<()> {
        let Some(req) = read_request(&mut sock).await? else {
            return Ok(());
        };
        self.state()
            .log
            .push(format!("{} {}", req.method, req.path));
        let is_blob_get = req.method == "GET" && req.path.contains("/blobs/sha256:");
        if is_blob_get {
            let mut st = self.state();
            st.in_flight += 1;
            st.max_in_flight = st.max_in_flight.max(st.in_flight);
        }
        let r = self.handle(&req);
        let res = write_response(&mut sock, &req, r).await;
        if is_blob_get {
            self.state().in_flight -= 1;
        }
        res
    }

    fn check_auth(&self, req: &Request) -> Option<Response> {
        let auth = self.state().auth.clone();
        let given = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        match auth {
            Auth::None => None,
            Auth::Basic { user, pass } => {
                if given == basic(&user, &pass) {
                    None
                } else {
                    let mut r = error(401, "UNAUTHORIZED");
                    r.headers
                        .push(("WWW-Authenticate".into(), r#"Basic realm="fake""#.into()));
                    Some(r)
                }
            }
            Auth::Bearer { user, pass } => {
                if req.path == "/token" {
                    return if given == basic(&user, &pass) {
                        None
                    } else {
                        Some(error(401, "UNAUTHORIZED"))
                    };
                }
                if given == "Bearer good-token" {
                    None
                } else {
                    let mut r = error(401, "UNAUTHORIZED");
                    r.headers.push((
                        "WWW-Authenticate".into(),
                        format!(
                            r#"Bearer realm="http://{}/token",service="fake""#,
                            self.addr
                        ),
                    ));
                    Some(r)
                }
            }
        }
    }

    fn handle(&self, req: &Request) -> Response {
        if let Some(denied) = self.check_auth(req) {
            return denied;
        }
        if req.path == "/token" {
            let mut r = resp(200);
            r.body = br#"{"token":"good-token","access_token":"good-token"}"#.to_vec();
            r.headers
                .push(("Content-Type".into(), "application/json".into()));
            return r;
        }
        if req.path == "/v2/" || req.path == "/v2" {
            let mut r = resp(200);
            r.body = b"{}".to_vec();
            return r;
        }
        if req.path == "/v2/_catalog" {
            let mut r = resp(200);
            r.body = br#"{"repositories":[]}"#.to_vec();
            return r;
        }
        let Some(rest) = req.path.strip_prefix("/v2/") else {
            return error(404, "NOT_FOUND");
        };
        if let Some(i) = rest.rfind("/manifests/") {
            let (name, reference) = (&rest[..i], &rest[i + "/manifests/".len()..]);
            return self.manifest(req, name, reference);
        }
        if let Some(i) = rest.find("/blobs/uploads") {
            let name = &rest[..i];
            let id = rest[i + "/blobs/uploads".len()..].trim_start_matches('/');
            return self.upload(req, name, id);
        }
        if let Some(i) = rest.rfind("/blobs/") {
            let digest = &rest[i + "/blobs/".len()..];
            return self.blob(req, digest);
        }
        error(404, "NOT_FOUND")
    }

    fn manifest(&self, req: &Request, name: &str, reference: &str) -> Response {
        let mut st = self.state();
        match req.method.as_str() {
            "GET" | "HEAD" => match st.manifests.get(&(name.to_string(), reference.to_string())) {
                Some((mt, body)) => {
                    let mut r = resp(200);
                    r.headers.push(("Content-Type".into(), mt.clone()));
                    r.headers.push(("Docker-Content-Digest".into(), sha(body)));
                    r.body = body.clone();
                    r
                }
                None => error(404, "MANIFEST_UNKNOWN"),
            },
            "PUT" => {
                let mt = req.headers.get("content-type").cloned().unwrap_or_default();
                let d = sha(&req.body);
                st.manifests.insert(
                    (name.into(), reference.into()),
                    (mt.clone(), req.body.clone()),
                );
                st.manifests
                    .insert((name.into(), d.clone()), (mt, req.body.clone()));
                let mut r = resp(201);
                r.headers
                    .push(("Location".into(), format!("/v2/{name}/manifests/{d}")));
                r.headers.push(("Docker-Content-Digest".into(), d));
                r
            }
            _ => error(405, "UNSUPPORTED"),
        }
    }

    fn blob(&self, req: &Request, digest: &str) -> Response {
        let mut st = self.state();
        let Some(data) = st.blobs.get(digest).cloned() else {
            return error(404, "BLOB_UNKNOWN");
        };
        let mut r = resp(200);
        r.headers
            .push(("Content-Type".into(), "application/octet-stream".into()));
        r.headers
            .push(("Docker-Content-Digest".into(), digest.into()));
        r.body = data;
        if req.method == "GET" {
            if st.corrupt.contains(digest) {
                for b in r.body.iter_mut().take(16) {
                    *b ^= 0xff;
                }
            }
            if let Some(n) = st.truncate.get_mut(digest)
                && *n > 0
            {
                *n -= 1;
                r.cut_at = Some(r.body.len() / 2);
            }
            r.delay = st.blob_delay;
        }
        r
    }

    fn upload(&self, req: &Request, name: &str, id: &str) -> Response {
        let mut st = self.state();
        match (req.method.as_str(), id) {
            ("POST", "") => {
                st.next_upload += 1;
                let id = format!("u{}", st.next_upload);
                st.uploads.insert(id.clone(), Vec::new());
                let mut r = resp(202);
                r.headers
                    .push(("Location".into(), format!("/v2/{name}/blobs/uploads/{id}")));
                r.headers.push(("Range".into(), "0-0".into()));
                r.headers.push(("Docker-Upload-UUID".into(), id));
                r
            }
            ("PATCH", id) => {
                st.patch_sizes.push(req.body.len());
                let Some(buf) = st.uploads.get_mut(id) else {
                    return error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                buf.extend_from_slice(&req.body);
                let end = buf.len().saturating_sub(1);
                let mut r = resp(202);
                r.headers
                    .push(("Location".into(), format!("/v2/{name}/blobs/uploads/{id}")));
                r.headers.push(("Range".into(), format!("0-{end}")));
                r
            }
            ("PUT", id) => {
                let Some(mut buf) = st.uploads.remove(id) else {
                    return error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                buf.extend_from_slice(&req.body);
                let want = req.query.get("digest").cloned().unwrap_or_default();
                if sha(&buf) != want {
                    return error(400, "DIGEST_INVALID");
                }
                st.blobs.insert(want.clone(), buf);
                let mut r = resp(201);
                r.headers
                    .push(("Location".into(), format!("/v2/{name}/blobs/{want}")));
                r.headers.push(("Docker-Content-Digest".into(), want));
                r
            }
            _ => error(405, "UNSUPPORTED"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        read_chunked(sock, rest).await?
    } else {
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while rest.len() < len {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&tmp[..n]);
        }
        rest.truncate(len);
        rest
    };
    Ok(Some(Request {
        method,
        path: percent_decode(&path),
        query,
        headers,
        body,
    }))
}

async fn read_chunked(sock: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(out);
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let size_str = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(out);
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn write_response(sock: &mut TcpStream, req: &Request, r: Response) -> std::io::Result<()> {
    if let Some(d) = r.delay {
        tokio::time::sleep(d).await;
    }
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    sock.write_all(head.as_bytes()).await?;
    if req.method != "HEAD" {
        let end = r.cut_at.unwrap_or(r.body.len());
        sock.write_all(&r.body[..end]).await?;
    }
    sock.flush().await?;
    let _ = sock.shutdown().await;
    Ok(())
}
