//! An executor for hyper that spawns its futures boxed.

use std::future::Future;

/// Spawns what hyper runs beside a connection (its HTTP/2 client's per-request task, its
/// HTTP/2 server's per-stream task) on tokio with the future boxed, so it is copied once, into
/// the heap. hyper's HTTP/2 client hands every such task over as one enum as large as its
/// largest variant, the connection's whole state machine (kilobytes); spawned unboxed, each
/// request's task copied all of it several times on its way into tokio's task cell (callgrind:
/// 1.8k of the edge's 68k instructions per request).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoxingExecutor;

impl<F> hyper::rt::Executor<F> for BoxingExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Box::pin(future));
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Executor;

    use super::*;

    #[tokio::test]
    async fn spawned_futures_run_to_completion() {
        let (done, finished) = tokio::sync::oneshot::channel();
        let big = [7u8; 16 * 1024];
        BoxingExecutor.execute(async move {
            tokio::task::yield_now().await;
            let _ = done.send(big.iter().map(|b| u64::from(*b)).sum::<u64>());
        });
        let sum = tokio::time::timeout(std::time::Duration::from_secs(5), finished)
            .await
            .expect("the spawned future ran")
            .expect("it sent its result");
        assert_eq!(sum, 7 * 16 * 1024);
    }
}
