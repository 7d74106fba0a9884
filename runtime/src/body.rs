//! The body type of every message the connector sends: to the edge on tunnel streams and to
//! origins. Bodies stream; nothing here buffers a whole body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::mpsc;

/// Any error a body may carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body.
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

/// A body received from hyper, boxed.
pub(crate) fn incoming(body: Incoming) -> BoxBody {
    body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

/// A body whose chunks come from a channel; it ends when every sender is dropped.
pub(crate) struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it.
    pub(crate) fn new(capacity: usize) -> (mpsc::Sender<Bytes>, Self) {
        let (sender, receiver) = mpsc::channel(capacity);
        (sender, Self { receiver })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut()
            .receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
