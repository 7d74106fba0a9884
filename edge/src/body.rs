//! Bodies on the edge's request path: the one boxed body type of every message the edge sends
//! (to visitors, down tunnels, to other edge nodes), bodies that remember they failed or hold
//! a stream counted until they end, and the splice of an upgraded connection. Nothing here
//! buffers a whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Any error a body may carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every message the edge sends: responses to visitors, streams on tunnels
/// and on links to other edge nodes.
pub(crate) type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> BoxBody {
    full(Bytes::new())
}

/// Any body, boxed (for example one received from hyper).
pub(crate) fn boxed<B>(body: B) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

// === a body that remembers it failed ===

/// A body that records whether reading it failed (see [`watch`]).
#[derive(Debug)]
pub(crate) struct Watched<B> {
    body: B,
    failed: Arc<AtomicBool>,
    /// Where the bytes read are counted, when someone asked (the access log).
    read: Option<Arc<AtomicU64>>,
}

impl<B> Watched<B> {
    /// Also adds the length of every data frame read to `read`.
    pub(crate) fn counting(mut self, read: Arc<AtomicU64>) -> Self {
        self.read = Some(read);
        self
    }
}

/// Whether a watched body failed (the visitor's body broke off or was malformed), read after
/// the stream it was sent on failed, to tell whose fault that was.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyFailed(Arc<AtomicBool>);

impl BodyFailed {
    /// Did the body fail?
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wraps `body`; the flag tells whether it failed.
pub(crate) fn watch<B>(body: B) -> (Watched<B>, BodyFailed) {
    let failed = BodyFailed::default();
    (
        Watched {
            body,
            failed: failed.0.clone(),
            read: None,
        },
        failed,
    )
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => self.failed.store(true, Ordering::Relaxed),
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(read), Some(data)) = (&self.read, frame.data_ref()) {
                    read.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
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

// === a body that holds a guard until it ends ===

/// A received body that holds `guard` (for example the count of a tunnel stream as
/// outstanding) until the body ends, fails or is dropped.
#[derive(Debug)]
pub(crate) struct Guarded<G> {
    inner: Incoming,
    guard: Option<G>,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    /// Wraps `inner`; `guard` is released at the end of the body (or when it is dropped).
    pub(crate) fn new(inner: Incoming, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }

    /// As the body type of a response.
    pub(crate) fn boxed(self) -> BoxBody {
        BodyExt::map_err(self, |e| Box::new(e) as BoxError).boxed_unsync()
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === upgraded connections ===

/// Copies bytes both ways between two upgraded connections (a visitor's and its tunnel
/// stream, or a link stream) until either side ends; `guard` is held until then.
pub(crate) async fn splice<G>(visitor: OnUpgrade, tunnel: OnUpgrade, guard: G) {
    let (visitor, tunnel) = match tokio::try_join!(visitor, tunnel) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let mut visitor = TokioIo::new(visitor);
    let mut tunnel = TokioIo::new(tunnel);
    if let Err(error) = tokio::io::copy_bidirectional(&mut visitor, &mut tunnel).await {
        tracing::debug!(%error, "upgraded connection ended");
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_body_is_remembered() {
        let failing = http_body_util::StreamBody::new(futures::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err("malformed chunk"),
        ]));
        let (body, failed) = watch(failing);
        assert!(!failed.get());
        assert!(body.collect().await.is_err());
        assert!(failed.get());
    }

    #[tokio::test]
    async fn a_whole_body_reads_back() {
        let body = full("hello").collect().await.expect("a full body");
        assert_eq!(body.to_bytes(), Bytes::from_static(b"hello"));
        assert!(empty().is_end_stream());
    }
}
