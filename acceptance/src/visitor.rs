//! Visitors' side of the tunnel tests: HTTP/HTTPS clients that reach a hostname through an
//! edge's public listeners, a raw HTTP/1.1 client for streaming bodies, connections from a
//! chosen source address (another client), and a TCP relay whose connections a test can cut.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::edge::EdgeProcess;

/// A client for `https://hostname` through the edge's HTTPS listener, trusting the edge's
/// visitors' CA (what the listener serves a hostname without a public certificate with).
pub async fn https_client(edge: &EdgeProcess, hostname: &str) -> reqwest::Client {
    let info = edge.client().edge().await.expect("GET /v1/edge");
    let ca = reqwest::Certificate::from_pem(info.visitor_ca_cert_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(hostname, edge.addrs.https)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("https client")
}

/// `https://hostname:PORT` of the edge's HTTPS listener.
pub fn https_url(edge: &EdgeProcess, hostname: &str, path: &str) -> String {
    format!("https://{hostname}:{}{path}", edge.addrs.https.port())
}

/// A TCP connection to `to` from the address `from`, as another client would open it: any
/// 127.x address works on loopback; an IPv6 address works anywhere its prefix is routed to the
/// host (it is bound with `IPV6_FREEBIND`, so it need not be assigned to an interface).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(to);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if from.is_ipv6() {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(to).await
}

/// A client for plain HTTP through the edge's HTTP listener (use [`http_url`]).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

/// `GET http://<addr><path>` with `Host: hostname` (no port, as a browser sends it when DNS
/// points `hostname` at the edge): the status and the body (empty if it broke off).
pub async fn get_with_host(
    http: &reqwest::Client,
    addr: SocketAddr,
    hostname: &str,
    path: &str,
) -> (u16, String) {
    let response = http
        .get(format!("http://{addr}{path}"))
        .header("host", hostname)
        .send()
        .await
        .expect("get");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// `http://hostname:PORT` resolved to the edge's HTTP listener.
pub fn http_url(edge: &EdgeProcess, hostname: &str, path: &str) -> String {
    format!("http://{hostname}:{}{path}", edge.addrs.http.port())
}

/// A plain HTTP client that sends every request to the edge's HTTP listener whatever the
/// host in the URL (so `http_url` works without DNS).
pub fn edge_http_client(edge: &EdgeProcess, hostname: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .resolve(hostname, edge.addrs.http)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client")
}

/// Sends one HTTP/1.1 request with a streaming body over a new connection to `addr` and
/// returns the status and the response body, read as a stream into `sink`.
pub async fn stream_request<B>(
    addr: SocketAddr,
    request: Request<B>,
    mut sink: impl FnMut(&[u8]),
) -> u16
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect to the edge");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Some(data) = frame.data_ref() {
            sink(data);
        }
    }
    status
}

/// A TCP relay on `127.0.0.1:0` to a target that can change (an edge that restarts on new
/// ports), whose live connections can be cut.
pub struct TcpRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl TcpRelay {
    /// A relay listening on a fresh port; set the target with [`TcpRelay::set_target`].
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let target = Arc::new(Mutex::new(addr));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let task = {
            let target = target.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let to = *target.lock().unwrap_or_else(|p| p.into_inner());
                    let handle = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(handle);
                }
            })
        };
        Self {
            addr,
            target,
            connections,
            task,
        }
    }

    /// Where new connections go.
    pub fn set_target(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    /// Live relayed connections.
    pub fn live(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| !c.is_finished())
            .count()
    }

    /// Cuts the oldest live connection (both sides see it close); `false` if none.
    pub fn cut_one(&self) -> bool {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.retain(|c| !c.is_finished());
        match connections.first() {
            Some(connection) => {
                connection.abort();
                connections.remove(0);
                true
            }
            None => false,
        }
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            connection.abort();
        }
    }
}
