//! What runs on one visitor connection, for the limits that depend on it: its requests in
//! flight ([`Activity`], so that a connection with none for too long is closed, as hyper does
//! not do for HTTP/2), and the upgraded connections it carried ([`Splices`]: spliced in tasks
//! the listener tracks, so they are counted until they end and ended at shutdown).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which protocol a connection speaks, as far as the edge knows yet (0: not known yet).
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// The requests in flight on one visitor connection.
#[derive(Debug, Default)]
pub(super) struct Activity {
    active: AtomicUsize,
    protocol: AtomicU8,
    changed: Notify,
}

/// One request (or upgraded stream) in flight, until dropped.
#[derive(Debug)]
pub(super) struct Active {
    activity: Arc<Activity>,
}

/// How long a connection may go without a request in flight, by protocol.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdleTimeouts {
    pub(super) http1: Duration,
    pub(super) http2: Duration,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records that the connection speaks HTTP/2 (its preface, or ALPN `h2`) or HTTP/1.1.
    pub(super) fn set_http2(&self, http2: bool) {
        let protocol = if http2 { HTTP2 } else { HTTP1 };
        if self.protocol.swap(protocol, Ordering::Relaxed) != protocol {
            self.changed.notify_waiters();
        }
    }

    /// Counts a request as in flight until the guard is dropped.
    pub(super) fn begin(self: &Arc<Self>, http2: bool) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.set_http2(http2);
        self.changed.notify_waiters();
        Active {
            activity: self.clone(),
        }
    }

    /// Resolves once the connection has had no request in flight for its protocol's idle
    /// timeout. Until the protocol is known (before the first request of a connection that has
    /// not shown an HTTP/2 preface), it waits: the first-byte deadline and the header timeout
    /// bound that time.
    pub(super) async fn idle(&self, timeouts: IdleTimeouts) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match (
                self.active.load(Ordering::Relaxed),
                self.protocol.load(Ordering::Relaxed),
            ) {
                (0, HTTP1) => Some(timeouts.http1),
                (0, HTTP2) => Some(timeouts.http2),
                _ => None,
            };
            match wait {
                None => changed.await,
                Some(timeout) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep(timeout) => return,
                    }
                }
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.activity.active.fetch_sub(1, Ordering::Relaxed);
        self.activity.changed.notify_waiters();
    }
}

/// Where upgraded connections (WebSockets) are spliced: in the tasks of the listener (or
/// link) that accepted them, so that shutdown waits for them, and until `cancel`, which ends
/// them.
#[derive(Debug, Clone)]
pub(super) struct Splices {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Splices {
    pub(super) fn new(tracker: TaskTracker, cancel: CancellationToken) -> Self {
        Self { tracker, cancel }
    }

    /// Runs `splice` until it ends or shutdown begins.
    pub(super) fn spawn(&self, splice: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = splice => {}
                _ = cancel.cancelled() => {
                    tracing::debug!("closed an upgraded connection: the edge is shutting down");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: IdleTimeouts = IdleTimeouts {
        http1: Duration::from_millis(100),
        http2: Duration::from_millis(300),
    };

    #[tokio::test]
    async fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Activity::new();
        // Unknown protocol: never idle by itself.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), activity.idle(TIMEOUTS))
                .await
                .is_err()
        );
        let request = activity.begin(true);
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle(TIMEOUTS).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!idle.is_finished(), "a request is in flight");
        let ended = tokio::time::Instant::now();
        drop(request);
        idle.await.expect("idle");
        let took = ended.elapsed();
        assert!(
            took >= TIMEOUTS.http2 && took < TIMEOUTS.http2 * 3,
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn http1_connections_have_their_own_idle_timeout() {
        let activity = Activity::new();
        drop(activity.begin(false));
        let started = tokio::time::Instant::now();
        activity.idle(TIMEOUTS).await;
        let took = started.elapsed();
        assert!(took >= TIMEOUTS.http1 && took < TIMEOUTS.http2, "{took:?}");
    }
}
