//! The load generator: HTTP/1.1 clients on hyper, over plain TCP or TLS (rustls), that run for
//! a fixed duration and record every request's latency, from writing the request to the last
//! byte of the response body, in an HDR histogram (3 significant digits).
//!
//! - [`keep_alive`]: N connections, each sending its next request as soon as the previous
//!   response ended (closed loop); a connection that fails is replaced.
//! - [`new_connection`]: N workers, each opening a TCP (and TLS) connection per request with
//!   `Connection: close`, and closing it with a reset once the response is read (so no socket
//!   lingers in TIME_WAIT and the ephemeral ports last the whole run).
//! - [`download`] and [`upload`]: one request moving a large body on one connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::origin::RepeatBody;

/// The request body type of the generator.
type ClientBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a target.
#[derive(Clone)]
pub struct Endpoint {
    /// The TCP address.
    pub addr: SocketAddr,
    /// The `Host` header (and, with TLS, the server name).
    pub host: String,
    /// Plain TCP, or TLS with this client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What a timed run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered with 200 and read to the end.
    pub requests: u64,
    /// Requests that failed (connection errors, other statuses, timeouts).
    pub errors: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Latencies of the successful requests, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits: constant bounds that the crate accepts.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Opens a connection to `endpoint` (TCP, then TLS when configured). `reset_on_close` makes
/// closing it send a reset instead of a FIN.
async fn connect(endpoint: &Endpoint, reset_on_close: bool) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(endpoint.addr).await?;
    tcp.set_nodelay(true)?;
    if reset_on_close {
        tcp.set_zero_linger()?;
    }
    match &endpoint.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls))
        }
    }
}

/// An HTTP/1.1 client connection; its driver runs in its own task.
async fn handshake(endpoint: &Endpoint, reset_on_close: bool) -> Option<SendRequest<ClientBody>> {
    let io = connect(endpoint, reset_on_close).await.ok()?;
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

fn request(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: ClientBody,
) -> Request<ClientBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = path.parse().unwrap_or_default();
    if let Ok(host) = header::HeaderValue::from_str(&endpoint.host) {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

fn empty() -> ClientBody {
    Empty::new().boxed_unsync()
}

/// Sends one request and reads the response to the end; returns the body's length on 200.
async fn exchange(
    sender: &mut SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Option<u64> {
    let call = async {
        sender.ready().await.ok()?;
        let response = sender.send_request(request).await.ok()?;
        let ok = response.status() == StatusCode::OK;
        let mut body = response.into_body();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
            }
        }
        ok.then_some(len)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}

/// `connections` keep-alive connections sending `GET path` back to back for `duration`.
pub async fn keep_alive(
    endpoint: &Endpoint,
    path: &str,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    run_workers(connections, duration, |deadline| {
        let endpoint = endpoint.clone();
        let path = path.to_string();
        async move {
            let mut latency = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut sender = None;
            while Instant::now() < deadline {
                let current = match sender.as_mut() {
                    Some(current) => current,
                    None => match handshake(&endpoint, false).await {
                        Some(fresh) => sender.insert(fresh),
                        None => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let start = Instant::now();
                match exchange(current, request(&endpoint, Method::GET, &path, empty())).await {
                    Some(_) => {
                        ok += 1;
                        let _ = latency.record(start.elapsed().as_nanos() as u64);
                    }
                    None => {
                        errors += 1;
                        sender = None;
                    }
                }
            }
            (ok, errors, latency)
        }
    })
    .await
}

/// `workers` clients, each opening a new connection per `GET path` (`Connection: close`),
/// for `duration`. The latency includes connecting (and the TLS handshake).
pub async fn new_connection(
    endpoint: &Endpoint,
    path: &str,
    workers: usize,
    duration: Duration,
) -> LoadResult {
    run_workers(workers, duration, |deadline| {
        let endpoint = endpoint.clone();
        let path = path.to_string();
        async move {
            let mut latency = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let start = Instant::now();
                let Some(mut sender) = handshake(&endpoint, true).await else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let mut close = request(&endpoint, Method::GET, &path, empty());
                close.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                match exchange(&mut sender, close).await {
                    Some(_) => {
                        ok += 1;
                        let _ = latency.record(start.elapsed().as_nanos() as u64);
                    }
                    None => errors += 1,
                }
            }
            (ok, errors, latency)
        }
    })
    .await
}

async fn run_workers<F, Fut>(count: usize, duration: Duration, worker: F) -> LoadResult
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = (u64, u64, Histogram<u64>)> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..count.max(1) {
        tasks.spawn(worker(deadline));
    }
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((ok, errors, latency)) => {
                result.requests += ok;
                result.errors += errors;
                let _ = result.latency.add(&latency);
            }
            Err(_) => result.errors += 1,
        }
    }
    result.elapsed = start.elapsed();
    result
}

/// What a bulk transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes moved (0 when it failed).
    pub bytes: u64,
    /// From sending the request head to the end of the response.
    pub elapsed: Duration,
}

impl Transfer {
    /// MiB per second; 0 for a failed transfer.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `GET /download?bytes=N` on a fresh connection.
pub async fn download(endpoint: &Endpoint, bytes: u64) -> Transfer {
    let Some(mut sender) = handshake(endpoint, false).await else {
        return Transfer {
            bytes: 0,
            elapsed: Duration::ZERO,
        };
    };
    let start = Instant::now();
    let path = format!("/download?bytes={bytes}");
    let got = exchange(&mut sender, request(endpoint, Method::GET, &path, empty())).await;
    Transfer {
        bytes: got.filter(|n| *n == bytes).unwrap_or(0),
        elapsed: start.elapsed(),
    }
}

/// `POST /upload` of N bytes on a fresh connection; the origin answers with the length it read.
pub async fn upload(endpoint: &Endpoint, bytes: u64) -> Transfer {
    let Some(mut sender) = handshake(endpoint, false).await else {
        return Transfer {
            bytes: 0,
            elapsed: Duration::ZERO,
        };
    };
    let start = Instant::now();
    let mut post = request(
        endpoint,
        Method::POST,
        "/upload",
        RepeatBody::new(bytes).boxed_unsync(),
    );
    post.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(bytes));
    let call = async {
        sender.ready().await.ok()?;
        let response = sender.send_request(post).await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let text = response.into_body().collect().await.ok()?.to_bytes();
        std::str::from_utf8(&text).ok()?.trim().parse::<u64>().ok()
    };
    let got = tokio::time::timeout(REQUEST_TIMEOUT * 4, call)
        .await
        .ok()
        .flatten();
    Transfer {
        bytes: got.filter(|n| *n == bytes).unwrap_or(0),
        elapsed: start.elapsed(),
    }
}

/// Polls `GET /small` until it answers 200 (at most `timeout`).
pub async fn wait_ready(endpoint: &Endpoint, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(mut sender) = handshake(endpoint, false).await
            && exchange(
                &mut sender,
                request(endpoint, Method::GET, "/small", empty()),
            )
            .await
            .is_some()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
