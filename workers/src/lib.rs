//! `postern-workers`: shared-nothing workers for the edge and the connector. The data plane
//! runs on `--workers` threads, each a single-threaded runtime that owns the connections it
//! accepted or was handed (public listeners bind one port per worker with `SO_REUSEPORT`, the
//! kernel deals connections out) and every task a request needs, so a request is parsed,
//! routed, written to its stream and answered on one thread: no hand-off between threads, no
//! futex wake-up, no task stolen by another core. The control plane (API, DNS, store,
//! membership, supervision) runs on the main runtime and touches the workers only through
//! shared, read-mostly state.
//!
//! A socket accepted on one runtime can move to a worker ([`MovableStream::rehome`]): its
//! registration moves with it, so the worker's own reactor wakes its tasks.
//!
//! On the edge a worker owns its share of the public listeners and the tunnel sessions placed
//! on it; on the connector, its tunnel connections, the streams served on them and its own
//! origin connections.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker the calling thread is, `None` on the control runtime (and in tests).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A worker's runtime or thread could not be created.
    #[error("cannot start worker {index}")]
    Start {
        /// Which worker.
        index: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `count` workers (at least one), each a thread running a single-threaded runtime
    /// until [`Workers::stop`].
    pub fn start(count: usize) -> Result<Self, WorkerError> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkerError::Start { index, source })?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("postern-worker-{index}"))
                .spawn(move || {
                    CURRENT.with(|current| current.set(Some(index)));
                    runtime.block_on(stop.cancelled());
                    // Dropping the runtime ends whatever is still spawned on it.
                })
                .map_err(|source| WorkerError::Start { index, source })?;
            threads.push(thread);
        }
        Ok(Self {
            handles,
            threads,
            stop,
        })
    }

    /// How many workers run.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// The runtime of worker `index` (wrapping around), to spawn its tasks on.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }

    /// Ends every worker's runtime (whatever still runs on them is dropped) and waits for the
    /// threads.
    pub fn stop(self) {
        self.stop.cancel();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Binds `count` TCP listeners on `address` with `SO_REUSEPORT`, so that the kernel deals
/// connections out among them; with port 0 they share the port the first one got. The
/// listeners are std sockets, registered with a runtime when a worker takes one
/// (`TcpListener::from_std` on that worker).
pub fn bind_shared(address: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    let mut address = address;
    for _ in 0..count.max(1) {
        let domain = socket2::Domain::for_address(address);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if address.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

// === a TCP stream that can move between runtimes ===

/// A TCP stream whose socket can be registered again with another runtime's reactor
/// ([`MovableStream::rehome`]), so that a connection accepted and handshaken on one runtime is
/// served by a worker without its wake-ups going through the first runtime.
#[derive(Debug)]
pub struct MovableStream(Option<TcpStream>);

impl MovableStream {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> Self {
        Self(Some(stream))
    }

    /// Moves the socket's registration to the runtime this is called on. Call it before any
    /// read or write is pending on the stream (between tasks, not within one).
    pub fn rehome(&mut self) -> io::Result<()> {
        let stream = self.0.take().ok_or_else(closed)?;
        let std = stream.into_std()?;
        self.0 = Some(TcpStream::from_std(std)?);
        Ok(())
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.0.as_mut().ok_or_else(closed)
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the stream was lost while moving",
    )
}

impl AsyncRead for MovableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for MovableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn each_worker_knows_which_it_is() {
        let workers = Workers::start(2).expect("workers");
        assert_eq!(workers.count(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        for index in 0..2 {
            let tx = tx.clone();
            workers.handle(index).spawn(async move {
                let _ = tx.send((index, current(), std::thread::current().id()));
            });
        }
        let mut seen: Vec<_> = (0..2).map(|_| rx.recv().expect("an answer")).collect();
        seen.sort_by_key(|(index, _, _)| *index);
        assert_eq!(seen[0].1, Some(0));
        assert_eq!(seen[1].1, Some(1));
        assert_ne!(seen[0].2, seen[1].2, "two workers are two threads");
        assert_eq!(current(), None);
        workers.stop();
    }

    #[test]
    fn shared_listeners_take_one_port_and_each_accepts() {
        let listeners = bind_shared("127.0.0.1:0".parse().expect("address"), 3).expect("bind");
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("address").port())
            .collect();
        assert!(ports[0] != 0 && ports.iter().all(|p| *p == ports[0]));
    }

    #[test]
    fn a_stream_moved_to_another_runtime_keeps_its_bytes() {
        let workers = Workers::start(2).expect("workers");
        let (tx, rx) = std::sync::mpsc::channel();
        let other = workers.handle(1).clone();
        workers.handle(0).spawn(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let client = tokio::spawn(async move {
                let mut client = TcpStream::connect(address).await.expect("connect");
                client.write_all(b"ping").await.expect("write");
                let mut answer = [0u8; 4];
                client.read_exact(&mut answer).await.expect("read");
                answer
            });
            let (accepted, _) = listener.accept().await.expect("accept");
            let mut stream = MovableStream::new(accepted);
            let served = other.spawn(async move {
                stream.rehome().expect("rehome");
                let mut request = [0u8; 4];
                stream.read_exact(&mut request).await.expect("read");
                stream.write_all(b"pong").await.expect("write");
                (request, current())
            });
            let (request, worker) = served.await.expect("served");
            let answer = client.await.expect("client");
            let _ = tx.send((request, worker, answer));
        });
        let (request, worker, answer) = rx.recv().expect("an answer");
        assert_eq!(&request, b"ping");
        assert_eq!(&answer, b"pong");
        assert_eq!(worker, Some(1));
        workers.stop();
    }
}
