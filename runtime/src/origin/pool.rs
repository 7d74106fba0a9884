//! Keep-alive HTTP/1.1 connections to origins, driven by the task that uses them.
//!
//! A pooled client in its usual form gives every origin connection a task of its own: the
//! request crosses from the tunnel stream's task to the connection's task and the response
//! comes back the same way, two task hand-offs per request (each may wake the other core).
//! Here the tunnel stream's task polls the connection itself while it waits for the
//! response head and while it reads the response body, and puts it back in the pool once
//! the body has ended. An idle connection is polled by nobody between requests: one the
//! origin has closed is noticed (and dropped) when it is next taken, or by a sweep every
//! [`SWEEP_INTERVAL`], which also closes those idle for longer than [`IDLE_TIMEOUT`].

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::body::{BoxBody, BoxError};

/// Idle connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often idle connections are looked at (closed by the origin, or idle too long).
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// The most idle connections kept per origin; the oldest go first.
const MAX_IDLE_PER_ORIGIN: usize = 256;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Driver = http1::Connection<Io, BoxBody>;

/// Which origin a connection goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    scheme: Scheme,
    authority: Authority,
}

/// One HTTP/1.1 connection to an origin: the handle requests are sent on and the state machine that
/// reads and writes the socket (which whoever waits on the connection must poll). Always
/// boxed: it is about 1.8 KB (TLS state, buffers), and every future and body that holds it
/// would otherwise copy it whenever it moves (callgrind: most of the connector's
/// instructions per request were those copies).
struct OriginConnection {
    sender: http1::SendRequest<BoxBody>,
    driver: Driver,
    idle_since: Instant,
}

impl OriginConnection {
    /// Is it still open and ready for a request? Polls once; never waits.
    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        if Pin::new(&mut self.driver).poll(cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// Connections to the origins of one way of connecting (TLS settings, connect timeout).
pub(super) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    read_buffer: usize,
    /// By origin. FNV, not SipHash: keys come from the declared origins, not from visitors,
    /// and `Authority` hashes byte by byte (lowercased), which SipHash makes costly on every
    /// checkout and checkin.
    idle: Mutex<HashMap<Key, VecDeque<Box<OriginConnection>>, fnv::FnvBuildHasher>>,
}

impl Pool {
    /// A pool that connects with `connector`; each connection buffers at most `read_buffer`
    /// bytes of what it reads. Its idle connections are swept until the pool is dropped.
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, read_buffer: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            connector,
            read_buffer,
            idle: Mutex::new(HashMap::default()),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match weak.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => break,
                }
            }
        });
        pool
    }

    /// Closes idle connections the origin has closed or that were idle too long.
    fn sweep(&self) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for conns in idle.values_mut() {
            conns.retain_mut(|conn| {
                conn.idle_since.elapsed() < IDLE_TIMEOUT && conn.ready_now(&mut cx)
            });
        }
        idle.retain(|_, conns| !conns.is_empty());
    }

    /// Sends `request` (absolute URI) on a pooled connection, or a new one, and waits for
    /// the response head. The connection returns to the pool when the body has been read.
    pub(super) async fn send(
        self: &Arc<Self>,
        mut request: Request<BoxBody>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let key = key_of(request.uri())?;
        let mut conn = match self.checkout(&key) {
            Some(conn) => conn,
            None => Box::pin(self.connect(&key)).await?,
        };
        *request.uri_mut() = origin_form(request.uri());
        let mut response = pin!(conn.sender.send_request(request));
        let mut driver_done = false;
        let head = poll_fn(|cx| {
            // The connection first (it writes the request, reads the answer and hands it
            // over), then the answer, in the same poll. When the connection ends first, the
            // response future fails with the reason.
            if !driver_done && Pin::new(&mut conn.driver).poll(cx).is_ready() {
                driver_done = true;
            }
            response.as_mut().poll(cx)
        })
        .await?;
        let (parts, body) = head.into_parts();
        let conn = (!driver_done).then_some(conn);
        let body = PooledBody {
            body,
            conn,
            key,
            pool: Arc::clone(self),
        };
        Ok(Response::from_parts(parts, body))
    }

    /// A new connection to the origin of `request`, driven by a task of its own with
    /// upgrades enabled (for WebSockets; never pooled).
    pub(super) async fn send_upgrade(
        &self,
        mut request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let key = key_of(request.uri())?;
        let OriginConnection {
            mut sender, driver, ..
        } = *self.connect(&key).await?;
        tokio::spawn(async move {
            if let Err(error) = driver.with_upgrades().await {
                tracing::debug!(%error, "origin connection for an upgrade ended");
            }
        });
        *request.uri_mut() = origin_form(request.uri());
        Ok(sender.send_request(request).await?)
    }

    /// The most recently used idle connection to `key` that is still open.
    fn checkout(&self, key: &Key) -> Option<Box<OriginConnection>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(key)?;
        while let Some(mut conn) = conns.pop_back() {
            if conn.idle_since.elapsed() < IDLE_TIMEOUT && conn.ready_now(&mut cx) {
                return Some(conn);
            }
        }
        None
    }

    /// Puts a connection whose response has ended back in the pool.
    fn checkin(&self, key: Key, mut conn: Box<OriginConnection>) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(key).or_default();
        while conns
            .front()
            .is_some_and(|c| c.idle_since.elapsed() >= IDLE_TIMEOUT)
            || conns.len() >= MAX_IDLE_PER_ORIGIN
        {
            conns.pop_front();
        }
        conns.push_back(conn);
    }

    /// A new connection to `key`, TLS and HTTP/1.1 handshakes done.
    async fn connect(&self, key: &Key) -> Result<Box<OriginConnection>, BoxError> {
        let uri = Uri::builder()
            .scheme(key.scheme.clone())
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()?;
        let io = self.connector.clone().oneshot(uri).await?;
        let (sender, driver) = http1::Builder::new()
            .max_buf_size(self.read_buffer)
            .handshake(io)
            .await?;
        Ok(Box::new(OriginConnection {
            sender,
            driver,
            idle_since: Instant::now(),
        }))
    }
}

fn key_of(uri: &Uri) -> Result<Key, BoxError> {
    match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(Key {
            scheme: scheme.clone(),
            authority: authority.clone(),
        }),
        _ => Err("the origin URL has no scheme or authority".into()),
    }
}

/// `/path?query`, as HTTP/1.1 sends it to an origin server.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()))
}

/// A response body from a pooled connection: reading it drives the connection, and its end
/// returns the connection to the pool (dropped before its end, the connection is closed).
pub(super) struct PooledBody {
    body: Incoming,
    conn: Option<Box<OriginConnection>>,
    key: Key,
    pool: Arc<Pool>,
}

impl PooledBody {
    fn checkin(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(self.key.clone(), conn);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.checkin();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The body first: asking for a frame is what lets the connection hand one over, so
        // the connection is driven next and the body asked again, all in this one poll.
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = &mut this.conn
        {
            if Pin::new(&mut conn.driver).poll(cx).is_ready() {
                // Closed (or failed): what it read is in the body, or the body fails.
                this.conn = None;
            }
            polled = Pin::new(&mut this.body).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => this.checkin(),
            // Readers stop at the last frame when the body says it has ended (HTTP/2 sends
            // END_STREAM with it), so the connection goes back then too.
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.checkin(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;
    use crate::origin::{ClientKey, build_pool};

    /// How long the tests wait for an origin's close to arrive.
    const CLOSE_SETTLES: Duration = Duration::from_millis(50);

    /// An origin on loopback that answers `hello` and counts the connections it accepted;
    /// with `close`, it closes each connection that long after its first response, without
    /// announcing it in the response (as an origin's keep-alive timeout does).
    async fn origin(close: Option<Duration>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Some(after) = close {
                        answer_once_and_close(stream, after).await;
                        return;
                    }
                    let service = service_fn(|_request| async {
                        Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("hello")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{address}/path?q=1"), accepted)
    }

    /// Reads one request head, answers `hello` (keep-alive, as far as the client knows) and
    /// closes `after` later.
    async fn answer_once_and_close(mut stream: tokio::net::TcpStream, after: Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            .await;
        tokio::time::sleep(after).await;
    }

    fn pool() -> Arc<Pool> {
        let key = ClientKey {
            worker: None,
            no_tls_verify: false,
            server_name: None,
            connect_timeout_ms: Some(2_000),
            ca_cert_pem: None,
            http2: false,
        };
        build_pool(&key, Arc::new(rustls::RootCertStore::empty()))
    }

    async fn get(pool: &Arc<Pool>, url: &str) -> String {
        let request = Request::get(url)
            .header(http::header::HOST, "origin.test")
            .body(crate::body::empty())
            .expect("request");
        let mut body = pool.send(request).await.expect("response").into_body();
        // As hyper's HTTP/2 server reads it: no poll after the body says it has ended.
        let mut text = Vec::new();
        while !body.is_end_stream() {
            match body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.expect("frame").into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                None => break,
            }
        }
        String::from_utf8(text).expect("utf-8")
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (url, accepted) = origin(None).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(get(&pool, &url).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connections_the_origin_closed_are_not_reused() {
        let (url, accepted) = origin(Some(Duration::ZERO)).await;
        let pool = pool();
        for _ in 0..3 {
            assert_eq!(get(&pool, &url).await, "hello");
            tokio::time::sleep(CLOSE_SETTLES).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_sweep_drops_idle_connections_the_origin_closed() {
        let (url, _) = origin(Some(CLOSE_SETTLES)).await;
        let pool = pool();
        assert_eq!(get(&pool, &url).await, "hello");
        let idle = |pool: &Pool| {
            pool.idle
                .lock()
                .expect("lock")
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
        };
        assert_eq!(idle(&pool), 1, "the connection is back in the pool");
        tokio::time::sleep(CLOSE_SETTLES * 3).await;
        pool.sweep();
        assert_eq!(idle(&pool), 0, "the sweep found it closed");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let (url, accepted) = origin(None).await;
        let pool = pool();
        let request = Request::get(url.as_str())
            .header(http::header::HOST, "origin.test")
            .body(crate::body::empty())
            .expect("request");
        drop(pool.send(request).await.expect("response"));
        assert_eq!(get(&pool, &url).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_origin_that_is_down_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let request = Request::get(format!("http://{address}/"))
            .header(http::header::HOST, "origin.test")
            .body(crate::body::empty())
            .expect("request");
        assert!(pool().send(request).await.is_err());
    }

    #[test]
    fn requests_leave_in_origin_form() {
        let uri: Uri = "http://127.0.0.1:8080/a/b?c=d".parse().expect("uri");
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let key = key_of(&uri).expect("key");
        assert_eq!(key.authority, "127.0.0.1:8080");
        assert_eq!(key.scheme, Scheme::HTTP);
        assert!(key_of(&Uri::from_static("/relative")).is_err());
    }
}
