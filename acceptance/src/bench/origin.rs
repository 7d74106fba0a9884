//! The benchmark's origin: the smallest useful HTTP/1.1 server, run as its own process (the
//! benchmark binary started again as `bench origin`) so that its CPU never mixes with the load
//! generator's. It answers:
//!
//! - `GET /small` → [`SMALL_BODY`] (100 bytes);
//! - `GET /download?bytes=N` → N bytes, streamed in 64 KiB chunks of one shared buffer;
//! - `POST /upload` → the body read to the end and dropped, then its length as text;
//! - anything else → 404.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The body of `GET /small`: 100 bytes.
pub const SMALL_BODY: &[u8; 100] =
    b"postern benchmark origin: a small keep-alive response of exactly one hundred bytes.................\n";

/// The size of one chunk of a streamed body.
pub const CHUNK: usize = 64 * 1024;

/// The body type the origin answers with.
type OriginBody = UnsyncBoxBody<Bytes, Infallible>;

/// `len` bytes made of one shared chunk, handed out without copying.
pub struct RepeatBody {
    chunk: Bytes,
    remaining: u64,
}

impl RepeatBody {
    /// A body of `len` bytes.
    pub fn new(len: u64) -> Self {
        Self {
            chunk: Bytes::from(vec![b'x'; CHUNK]),
            remaining: len,
        }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let take = this.remaining.min(this.chunk.len() as u64);
        this.remaining -= take;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..take as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Serves on `listen` until the process is killed; prints `{"listen":"ADDR"}` on stdout once
/// bound.
pub fn serve_forever(listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the origin's runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the origin on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("{}", serde_json::json!({ "listen": addr.to_string() }));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    service_fn(|request| async move { Ok::<_, Infallible>(answer(request).await) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(request: Request<Incoming>) -> Response<OriginBody> {
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/small") => {
            Response::new(Full::new(Bytes::from_static(SMALL_BODY)).boxed_unsync())
        }
        ("GET", "/download") => {
            let bytes = request
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "bytes")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0);
            Response::new(RepeatBody::new(bytes).boxed_unsync())
        }
        ("POST", "/upload") => {
            let mut body = request.into_body();
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            len += data.len() as u64;
                        }
                    }
                    Err(_) => return status(StatusCode::BAD_REQUEST),
                }
            }
            Response::new(Full::new(Bytes::from(len.to_string())).boxed_unsync())
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<OriginBody> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = code;
    response
}

/// The origin, running as a child process; killed when dropped.
pub struct OriginProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl OriginProcess {
    /// Starts `bench origin` (this executable) on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the benchmark executable")?;
        let mut child = Command::new(exe)
            .args(["origin", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the origin")?;
        let stdout = child.stdout.take().context("the origin's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the origin's ready line")?;
        let ready: serde_json::Value =
            serde_json::from_str(line.trim()).context("the origin's ready line")?;
        let addr = ready["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .context("the origin printed no address")?;
        Ok(Self { child, addr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_body_is_one_hundred_bytes() {
        assert_eq!(SMALL_BODY.len(), 100);
    }
}
