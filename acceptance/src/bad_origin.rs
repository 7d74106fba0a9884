//! `BadOrigin`: an origin on `127.0.0.1:0` that misbehaves on purpose, for the fault tests: it
//! hangs, resets connections, or answers bytes that are not valid HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a [`BadOrigin`] treats each connection.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Reads the request and never answers (the connection stays open).
    Hang,
    /// Resets the connection (RST) as soon as it is accepted.
    ResetOnAccept,
    /// Reads the request head, then resets the connection.
    ResetAfterRequest,
    /// Reads the request head, writes these bytes, then closes.
    Answer(Vec<u8>),
}

/// A misbehaving origin; stops when dropped.
pub struct BadOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl BadOrigin {
    /// Starts one on a free loopback port.
    pub async fn start(misbehaviour: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind bad origin");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let task = {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let misbehaviour = misbehaviour.clone();
                    held.retain(|task: &JoinHandle<()>| !task.is_finished());
                    held.push(tokio::spawn(misbehave(stream, misbehaviour)));
                }
            })
        };
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BadOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn misbehave(mut stream: TcpStream, misbehaviour: Misbehaviour) {
    match misbehaviour {
        Misbehaviour::ResetOnAccept => reset(stream),
        Misbehaviour::Hang => {
            let _ = read_head(&mut stream).await;
            // Hold the connection until the peer gives up.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Misbehaviour::ResetAfterRequest => {
            let _ = read_head(&mut stream).await;
            reset(stream);
        }
        Misbehaviour::Answer(bytes) => {
            let _ = read_head(&mut stream).await;
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Closes with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    // SO_LINGER with a zero timeout: closing sends RST.
    use std::os::fd::AsFd;
    let _ = nix::sys::socket::setsockopt(
        &stream.as_fd(),
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
    drop(stream);
}

/// Reads until the end of a request head (or 64 KiB, or EOF).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Ok(())
}
