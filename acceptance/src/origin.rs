//! `TestOrigin`: a real HTTP/1.1 origin on `127.0.0.1:0` for tunnel tests. It counts hits and
//! remembers which connector forwarded each request, and serves:
//!
//! - `GET /hello` → `hello from the origin`
//! - `POST /echo` → the request body, streamed back
//! - `POST /upload` → `<sha256 hex> <length>` of the body (read as a stream, never whole)
//! - `GET /download?bytes=N` → N bytes of [`pattern`], streamed
//! - `GET /slow?ms=N` → waits N ms, then `slow done`
//! - `GET /headers` → the forwarding and identity headers it received, as JSON
//! - `GET /request-headers` → every request header, as JSON (name → values), answered with
//!   `x-origin-debug: internal` and `cache-control: max-age=60`
//! - `GET /trailers` → a chunked body followed by the trailer `x-checksum: abc`
//! - `GET /ws` → a WebSocket echo (text and binary frames)
//!
//! [`TestOrigin::fail_for`] makes it answer 500 to every request one connector forwards, as if
//! the origin on that connector's host broke (connectors of one test share this origin).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A boxed body.
pub type TestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A running test origin; stops when dropped.
pub struct TestOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct OriginState {
    hits: AtomicU64,
    by_connector: Mutex<HashMap<String, u64>>,
    seen: Mutex<Vec<SeenRequest>>,
    failing_for: Mutex<Option<String>>,
}

/// How many requests [`TestOrigin::requests`] remembers (the first ones), so that long runs
/// stay bounded.
const SEEN_LIMIT: usize = 100_000;

/// A request the origin received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The edge's `x-request-id`.
    pub request_id: Option<String>,
    /// The connector that forwarded it (`x-postern-connector`).
    pub connector: Option<String>,
}

impl TestOrigin {
    /// Starts an origin on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts an HTTPS origin presenting `chain` and `key` (use [`TestOrigin::https_url`]).
    pub async fn start_tls(
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("origin certificate");
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    // Without it, a body written in pieces waits for delayed ACKs (40 ms).
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(serve(state, request).await) }
                        });
                        let builder = hyper::server::conn::http1::Builder::new();
                        match tls {
                            None => {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await;
                            }
                            Some(acceptor) => {
                                let Ok(stream) = acceptor.accept(stream).await else {
                                    return;
                                };
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    });
                }
            })
        };
        Self { addr, state, task }
    }

    /// `https://127.0.0.1:PORT` (for an origin started with [`TestOrigin::start_tls`]).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// The requests received so far (the first 100,000), in order of arrival.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// From now on, answers 500 to every request the connector `id` forwards (health probes
    /// included); `None` heals it.
    pub fn fail_for(&self, id: Option<&str>) {
        *self
            .state
            .failing_for
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = id.map(str::to_owned);
    }

    /// Requests received so far, by the `x-postern-connector` header (connector id).
    pub fn hits_by_connector(&self) -> HashMap<String, u64> {
        self.state
            .by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Byte `i` of the deterministic download/upload pattern.
pub fn pattern(i: u64) -> u8 {
    ((i.wrapping_mul(31).wrapping_add(7)) % 251) as u8
}

/// SHA-256 (hex) of the first `len` bytes of [`pattern`].
pub fn pattern_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut body = PatternChunks::new(len);
    while let Some(chunk) = body.next_chunk() {
        hasher.update(&chunk);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Generates [`pattern`] in 64 KiB chunks.
struct PatternChunks {
    next: u64,
    len: u64,
}

impl PatternChunks {
    fn new(len: u64) -> Self {
        Self { next: 0, len }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.next >= self.len {
            return None;
        }
        let end = (self.next + 64 * 1024).min(self.len);
        let chunk: Vec<u8> = (self.next..end).map(pattern).collect();
        self.next = end;
        Some(Bytes::from(chunk))
    }
}

/// A streaming body of `len` pattern bytes, generated as it is read.
pub struct PatternBody {
    chunks: PatternChunks,
}

impl PatternBody {
    /// `len` bytes.
    pub fn new(len: u64) -> Self {
        Self {
            chunks: PatternChunks::new(len),
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .next_chunk()
                .map(|c| Ok(Frame::data(c))),
        )
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.len - self.chunks.next)
    }
}

fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn serve(state: Arc<OriginState>, mut request: Request<Incoming>) -> Response<TestBody> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = state.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < SEEN_LIMIT {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            seen.push(SeenRequest {
                method: request.method().to_string(),
                path: request
                    .uri()
                    .path_and_query()
                    .map_or_else(|| "/".to_string(), |p| p.to_string()),
                request_id: header("x-request-id"),
                connector: header("x-postern-connector"),
            });
        }
    }
    if let Some(id) = request
        .headers()
        .get("x-postern-connector")
        .and_then(|v| v.to_str().ok())
    {
        *state
            .by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default() += 1;
    }
    let connector = request
        .headers()
        .get("x-postern-connector")
        .and_then(|v| v.to_str().ok());
    let failing = state
        .failing_for
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if failing.is_some() && connector == failing.as_deref() {
        let mut response = Response::new(full("origin broken"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    }
    let query = request.uri().query().unwrap_or("").to_string();
    let number = |key: &str| -> u64 {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/hello") => Response::new(full("hello from the origin")),
        ("POST", "/echo") => {
            let body = request
                .into_body()
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed_unsync();
            Response::new(body)
        }
        ("POST", "/upload") => {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut body = request.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return status(StatusCode::BAD_REQUEST);
                };
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    len += data.len() as u64;
                }
            }
            Response::new(full(format!("{} {len}", hex(&hasher.finalize()))))
        }
        ("GET", "/download") => Response::new(PatternBody::new(number("bytes")).boxed_unsync()),
        ("GET", "/slow") => {
            tokio::time::sleep(Duration::from_millis(number("ms"))).await;
            Response::new(full("slow done"))
        }
        ("GET", "/headers") => {
            let pick = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let body = serde_json::json!({
                "host": pick("host"),
                "x-forwarded-for": pick("x-forwarded-for"),
                "x-forwarded-proto": pick("x-forwarded-proto"),
                "x-request-id": pick("x-request-id"),
                "x-postern-connector": pick("x-postern-connector"),
                "x-postern-user": pick("x-postern-user"),
                "x-postern-email": pick("x-postern-email"),
                "x-postern-jwt": pick("x-postern-jwt"),
            });
            Response::new(full(body.to_string()))
        }
        ("GET", "/request-headers") => {
            let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in request.headers() {
                seen.entry(name.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            }
            let mut response = Response::new(full(serde_json::json!(seen).to_string()));
            response
                .headers_mut()
                .insert("x-origin-debug", HeaderValue::from_static("internal"));
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("max-age=60"));
            response
        }
        ("GET", "/trailers") => {
            let mut response = Response::new(TrailerBody { step: 0 }.boxed_unsync());
            // HTTP/1.1 sends only the trailer fields the response declares.
            response
                .headers_mut()
                .insert("trailer", HeaderValue::from_static("x-checksum"));
            response
        }
        ("GET", "/ws") => websocket(&mut request),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<TestBody> {
    let mut response = Response::new(full(""));
    *response.status_mut() = code;
    response
}

/// Two data frames, then the trailer `x-checksum: abc`.
struct TrailerBody {
    step: u8,
}

impl Body for TrailerBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        this.step += 1;
        Poll::Ready(match this.step {
            1 => Some(Ok(Frame::data(Bytes::from_static(b"part one, ")))),
            2 => Some(Ok(Frame::data(Bytes::from_static(b"part two")))),
            3 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", HeaderValue::from_static("abc"));
                Some(Ok(Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

/// Answers a WebSocket handshake with 101 and echoes every frame back.
fn websocket(request: &mut Request<Incoming>) -> Response<TestBody> {
    let Some(key) = request
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return status(StatusCode::BAD_REQUEST);
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        loop {
            let Ok(frame) = crate::websocket::read_frame(&mut io).await else {
                return;
            };
            if frame.opcode == 0x8 {
                let _ = io
                    .write_all(&crate::websocket::frame(0x8, &[], false))
                    .await;
                return;
            }
            let reply = crate::websocket::frame(frame.opcode, &frame.payload, false);
            if io.write_all(&reply).await.is_err() {
                return;
            }
            let _ = io.flush().await;
        }
    });
    let mut response = status(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&crate::websocket::accept_key(&key)) {
        headers.insert("sec-websocket-accept", value);
    }
    response
}
