//! What one visitor may cost the edge: how long it may take to start and to finish a request
//! head, how large the head may be, how many streams and connections it may hold, how long a
//! connection may idle. The fixed limits are constants here; those an operator tunes are
//! [`ProxySettings`] (flags). They are applied where the proxy builds its listeners and
//! connections.
//!
//! - A connection whose first request head is not complete [`FIRST_BYTE_TIMEOUT`] after it
//!   was accepted (or after its TLS handshake) is closed ([`FirstByteDeadline`], outside the
//!   framing guard, which passes a head on only once it is whole); TLS handshakes have their
//!   own timeout in `proxy/listener.rs`.
//! - An HTTP/1.1 request head must arrive within [`HEADER_READ_TIMEOUT`] (slowloris), which
//!   also closes keep-alive connections idle that long.
//! - A request's header list may not exceed [`MAX_HEADER_LIST`] bytes, counted as HTTP/2
//!   counts it (431 beyond; `wire::MAX_HEADER_LIST`): the connector's HTTP/2 server accepts
//!   twice that, so a visitor's headers can never make it tear down a tunnel connection other
//!   visitors share.
//! - An HTTP/2 connection may have [`MAX_CONCURRENT_STREAMS`] streams open.
//! - A public listener holds at most [`MAX_CONNECTIONS`] connections; beyond, it stops
//!   accepting until one ends. One client (an IPv4 address or an IPv6 /64) holds at most
//!   [`ProxySettings::max_connections_per_ip`] of all public listeners' connections together
//!   (`shares.rs`); beyond, its new connections are closed at once. An upgraded connection
//!   (WebSocket) keeps its place in both until it ends.
//! - A connection with no request in flight is closed after its protocol's idle timeout
//!   (`activity.rs`); HTTP/2 connections are also pinged, and closed when a ping goes
//!   unanswered.
//! - A request waits at most [`ProxySettings::stream_slot_timeout`] for a free stream on its
//!   tunnel connection and [`ProxySettings::response_head_timeout`] for the connector's answer
//!   (504 beyond either).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::activity::Activity;

/// How long a new connection may take to deliver its first bytes (for HTTP/1.1, through the
/// framing guard: its whole first request head).
pub(super) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1.1 request head may take to arrive, counted from when the edge starts
/// waiting for it (so it also bounds idle keep-alive connections).
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest header list a request may carry (the tunnel protocol's limit).
pub(super) const MAX_HEADER_LIST: usize = postern_schema::wire::MAX_HEADER_LIST;

/// The largest HTTP/1.1 read buffer, and so the largest request head hyper parses (431
/// beyond). Above [`MAX_HEADER_LIST`], so a head between the two gets the edge's own 431.
pub(super) const MAX_HTTP1_BUFFER: usize = 64 * 1024;

/// Streams one visitor HTTP/2 connection may have open at once.
pub(super) const MAX_CONCURRENT_STREAMS: u32 = 200;

/// Connections one public listener holds at once.
pub(super) const MAX_CONNECTIONS: usize = 16 * 1024;

pub(super) use postern_schema::wire::header_list_size;

/// The limits an operator sets (each a flag of `postern-edge`).
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    /// Visitor connections one client holds at once (`--max-connections-per-ip`).
    pub(crate) max_connections_per_ip: u32,
    /// An HTTP/2 connection without a stream is closed after this (`--http2-idle-timeout`).
    pub(crate) http2_idle_timeout: Duration,
    /// HTTP/2 connections are pinged this often, and closed when a ping is not answered
    /// within as long (`--http2-keepalive-interval`).
    pub(crate) http2_keepalive_interval: Duration,
    /// An HTTP/1.1 connection waiting for its next request is closed after this
    /// (`--http1-idle-timeout`).
    pub(crate) http1_idle_timeout: Duration,
    /// How long the connector's response head may take (`--response-head-timeout`).
    pub(crate) response_head_timeout: Duration,
    /// How long a request waits for a free stream on its tunnel connection
    /// (`--stream-slot-timeout`).
    pub(crate) stream_slot_timeout: Duration,
    /// How long the node serves from a catalog it cannot refresh (`--max-staleness`).
    pub(crate) max_staleness: Duration,
}

/// How long hyper waits for an HTTP/1.1 request head, counted from when it starts waiting:
/// [`HEADER_READ_TIMEOUT`], or the idle timeout when that is longer (hyper's one timer also
/// ends idle keep-alive connections).
pub(super) fn header_read_timeout(settings: &ProxySettings) -> Duration {
    HEADER_READ_TIMEOUT.max(settings.http1_idle_timeout)
}

/// An IO that fails with `TimedOut` when no byte has arrived [`FIRST_BYTE_TIMEOUT`] after
/// it was created; after the first byte it is the plain IO. It tells the connection's
/// [`Activity`] whether those first bytes were the HTTP/2 preface.
pub(super) struct FirstByteDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<Sleep>>>,
    activity: Option<Arc<Activity>>,
}

impl<I> FirstByteDeadline<I> {
    pub(super) fn new(io: I, activity: Arc<Activity>) -> Self {
        let mut io = Self::with_timeout(io, FIRST_BYTE_TIMEOUT);
        io.activity = Some(activity);
        io
    }

    fn with_timeout(io: I, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            activity: None,
        }
    }
}

/// The start of HTTP/2's connection preface.
const PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

impl<I: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.deadline = None;
                    if let Some(activity) = this.activity.take() {
                        let prefix = read.len().min(PREFACE_START.len());
                        activity.set_http2(read[..prefix] == PREFACE_START[..prefix]);
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the visitor sent nothing in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_header_list_is_counted_as_http2_counts_it() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a.example.com"));
        headers.append("x-a", HeaderValue::from_static(""));
        assert_eq!(header_list_size(&headers), 4 + 13 + 32 + 3 + 32);
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let timeout = Duration::from_millis(50);
        let (client, server) = tokio::io::duplex(64);
        let mut silent = FirstByteDeadline::with_timeout(server, timeout);
        let mut byte = [0u8; 1];
        let error = silent.read(&mut byte).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = FirstByteDeadline::with_timeout(server, timeout);
        client.write_all(b"G").await.expect("write");
        assert_eq!(talking.read(&mut byte).await.expect("read"), 1);
        tokio::time::sleep(timeout * 3).await;
        client.write_all(b"E").await.expect("write");
        assert_eq!(talking.read(&mut byte).await.expect("read"), 1);
    }
}
