//! HTTP/2 connections to origins (`h2c://` services, and `https://` ones with `origin.http2`):
//! one multiplexed connection per origin address, shared by every request to it, opened on
//! first use and again once the origin has closed it. Each connection is driven by a task of
//! its own on the worker that opened it. Trailers pass both ways, as gRPC needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{BoxBody, BoxError};

/// The ALPN protocol of HTTP/2 over TLS.
pub(super) const ALPN_H2: &[u8] = b"h2";

/// TLS towards an `https://` origin spoken to in HTTP/2.
pub(super) struct OriginTls {
    /// Roots (or no verification) and ALPN `h2`.
    pub(super) config: Arc<rustls::ClientConfig>,
    /// The name to verify and send as SNI instead of the service's host.
    pub(super) server_name: Option<ServerName<'static>>,
}

/// The HTTP/2 connections of one way of connecting (cleartext or these TLS settings, this
/// connect timeout).
pub(super) struct MultiplexedPool {
    tls: Option<OriginTls>,
    connect_timeout: Duration,
    /// By origin address (`host[:port]` as the service writes it). Held while a connection is
    /// being opened, so that requests arriving meanwhile share it instead of opening others.
    connections: tokio::sync::Mutex<HashMap<String, http2::SendRequest<BoxBody>>>,
}

impl MultiplexedPool {
    /// Connections in cleartext (`tls` is `None`: prior knowledge) or over TLS with ALPN `h2`.
    pub(super) fn new(tls: Option<OriginTls>, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            tls,
            connect_timeout,
            connections: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Sends `request` (absolute URI: its authority becomes `:authority`) on the connection to
    /// `address` and waits for the response head.
    pub(super) async fn send(
        &self,
        address: &str,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut sender = self.sender(address).await?;
        sender.ready().await?;
        Ok(sender.send_request(request).await?)
    }

    /// The open connection to `address`, or a new one.
    async fn sender(&self, address: &str) -> Result<http2::SendRequest<BoxBody>, BoxError> {
        let mut connections = self.connections.lock().await;
        if let Some(sender) = connections.get(address)
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        connections.remove(address);
        let sender = self.connect(address).await?;
        connections.insert(address.to_string(), sender.clone());
        Ok(sender)
    }

    /// A new connection: TCP within the connect timeout, TLS with ALPN `h2` for https, then the
    /// HTTP/2 handshake.
    async fn connect(&self, address: &str) -> Result<http2::SendRequest<BoxBody>, BoxError> {
        let authority: Authority = address.parse()?;
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host();
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host_only(host), port)),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the origin timed out",
            )
        })??;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return handshake(tcp).await;
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host_only(host).to_string())?,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TlsConnector::from(tls.config.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the origin's TLS handshake timed out",
            )
        })??;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err("the https origin did not agree to HTTP/2 (ALPN h2); set origin.http2 = false to speak HTTP/1.1 to it".into());
        }
        handshake(stream).await
    }
}

/// The HTTP/2 handshake on `io`; the connection is then driven by a task of its own until it
/// closes.
async fn handshake<I>(io: I) -> Result<http2::SendRequest<BoxBody>, BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "an HTTP/2 origin connection ended");
        }
    });
    Ok(sender)
}

/// A host without the brackets of an IPv6 address.
fn host_only(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// An h2c origin on loopback that answers with the request's `:authority` as its body and a
    /// `grpc-status: 0` trailer, and counts the connections it accepted.
    async fn h2c_origin() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let authority = request
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let body = Full::new(bytes::Bytes::from(authority))
                            .with_trailers(async move { Some(Ok(trailers)) });
                        Ok::<_, std::convert::Infallible>(Response::new(body))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn requests_share_one_connection_and_keep_their_trailers() {
        let (address, accepted) = h2c_origin().await;
        let pool = MultiplexedPool::new(None, Duration::from_secs(2));
        for _ in 0..3 {
            let request = Request::post("http://app.example.com/echo.Echo/Say")
                .body(crate::body::full("hi"))
                .expect("request");
            let response = pool.send(&address, request).await.expect("response");
            let collected = response.into_body().collect().await.expect("body");
            let trailers = collected.trailers().cloned().expect("trailers");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), "app.example.com");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_origin_that_is_down_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let pool = MultiplexedPool::new(None, Duration::from_secs(2));
        let request = Request::get("http://app.example.com/")
            .body(crate::body::empty())
            .expect("request");
        assert!(pool.send(&address, request).await.is_err());
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        assert_eq!(host_only("[::1]"), "::1");
        assert_eq!(host_only("localhost"), "localhost");
    }
}
