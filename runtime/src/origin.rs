//! The connector's origin side: one visitor stream in, one request to the local service out
//! (pooled HTTP/1.1 connections, plain or TLS, in [`pool`]; or one multiplexed HTTP/2
//! connection per origin for `h2c://` and `https://` with `origin.http2`, in
//! [`multiplexed`]), the response streamed back with its trailers. WebSockets arrive as
//! extended CONNECT and leave as an HTTP/1.1 upgrade. Failures the edge must turn into a
//! status are reported in [`ERROR_HEADER`]. A TCP service's stream is dialed and spliced in
//! [`tcp`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use postern_schema::api::OriginSettings;
use postern_schema::error_chain;
use postern_schema::rules::{OriginScheme, Service};
use postern_schema::wire::{
    CONFIG_VERSION_HEADER, CONNECTOR_HEADER, ConnectorFault, ERROR_HEADER, MAX_HEADER_LIST,
    header_list_size, strip_hop_by_hop,
};
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::Instrument;

use crate::body::{self, BoxBody, BoxError};
use crate::orchestrator::Ingress;

mod multiplexed;
mod pool;
mod tcp;

use multiplexed::{ALPN_H2, MultiplexedPool, OriginTls};
use pool::Pool;

/// How long to wait for a connection to the origin when the hostname does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most an origin connection buffers of what it reads (hyper grows its read buffer up to
/// this; its default is about 400 KiB per connection).
const ORIGIN_READ_BUFFER: usize = 64 * 1024;

/// Which pool an origin uses: one per distinct way of connecting, per worker (a worker's
/// streams use origin connections its own runtime drives, never another thread's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    worker: Option<usize>,
    no_tls_verify: bool,
    server_name: Option<String>,
    connect_timeout_ms: Option<u32>,
    /// The hostname's own CAs (`origin.ca_cert_pem`), trusted besides the connector's.
    ca_cert_pem: Option<String>,
    /// HTTP/2 (`h2c://`, or `https://` with `origin.http2`) rather than HTTP/1.1.
    http2: bool,
}

/// Connection pools to origins: every tunnel connection of a worker shares its worker's.
pub struct Origins {
    pools: Mutex<HashMap<ClientKey, Arc<Pool>>>,
    multiplexed: Mutex<HashMap<ClientKey, Arc<MultiplexedPool>>>,
    roots: Arc<RootCertStore>,
    response_timeout: Duration,
    connector_id: HeaderValue,
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origins")
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl Origins {
    /// Clients that trust the system's roots plus `extra_roots` for https origins, and wait
    /// at most `response_timeout` for an origin's response head.
    pub fn new(
        extra_roots: Vec<CertificateDer<'static>>,
        response_timeout: Duration,
        connector_id: &str,
    ) -> Self {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(
            roots = added,
            "loaded the system's trusted roots for https origins"
        );
        for cert in extra_roots {
            if let Err(error) = roots.add(cert) {
                tracing::warn!(%error, "ignored an unusable --origin-ca certificate");
            }
        }
        Self {
            pools: Mutex::new(HashMap::new()),
            multiplexed: Mutex::new(HashMap::new()),
            roots: Arc::new(roots),
            response_timeout,
            connector_id: HeaderValue::from_str(connector_id)
                .unwrap_or_else(|_| HeaderValue::from_static("postern")),
        }
    }

    /// Answers one visitor request for `ingress`.
    pub(crate) async fn serve(
        &self,
        ingress: &Ingress,
        request: Request<Incoming>,
    ) -> Response<BoxBody> {
        match ingress.service_for(request.uri().path()) {
            Service::Status(code) => {
                let mut response = Response::new(body::empty());
                *response.status_mut() = StatusCode::from_u16(*code).unwrap_or(StatusCode::OK);
                response
            }
            Service::Origin {
                scheme,
                authority,
                path_prefix,
            } => {
                let target = Target {
                    scheme: if scheme.is_tls() { "https" } else { "http" },
                    authority,
                    path_prefix,
                };
                let extended_connect = request.method() == Method::CONNECT
                    && request.extensions().get::<hyper::ext::Protocol>().is_some();
                if speaks_http2(*scheme, &ingress.origin) {
                    if extended_connect {
                        tracing::info!(hostname = %ingress.hostname, "refused a WebSocket to an HTTP/2 origin");
                        return fault(
                            ConnectorFault::OriginUnreachable,
                            "WebSockets to an HTTP/2 origin are not supported",
                        );
                    }
                    let pool = self.multiplexed_pool(*scheme, &ingress.origin);
                    return self.forward_http2(&pool, ingress, &target, request).await;
                }
                let pool = self.pool(&ingress.origin);
                if extended_connect {
                    self.upgrade(&pool, ingress, &target, request).await
                } else {
                    self.forward(&pool, ingress, &target, request).await
                }
            }
        }
    }

    /// One health probe of `service` (an origin of `ingress`): `GET path` with the Host and
    /// TLS settings visitors' requests get, answered within `timeout` with a status below 500.
    pub(crate) async fn probe(
        &self,
        ingress: &Ingress,
        service: &Service,
        path: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let Service::Origin {
            scheme,
            authority,
            path_prefix,
        } = service
        else {
            return Ok(());
        };
        let target = Target {
            scheme: if scheme.is_tls() { "https" } else { "http" },
            authority,
            path_prefix,
        };
        let (parts, ()) = Request::get(path)
            .body(())
            .map_err(|e| format!("the health check path is not usable: {e}"))?
            .into_parts();
        let mut outgoing = self
            .origin_request(ingress, &target, parts, body::empty())
            .map_err(|_| "the origin URL is not valid".to_string())?;
        let answer = if speaks_http2(*scheme, &ingress.origin) {
            *outgoing.version_mut() = Version::HTTP_2;
            outgoing.headers_mut().remove(header::HOST);
            let pool = self.multiplexed_pool(*scheme, &ingress.origin);
            tokio::time::timeout(timeout, pool.send(target.authority, outgoing))
                .await
                .map(|r| r.map(|response| response.status()))
        } else {
            *outgoing.version_mut() = Version::HTTP_11;
            let pool = self.pool(&ingress.origin);
            tokio::time::timeout(timeout, pool.send(outgoing))
                .await
                .map(|r| r.map(|response| response.status()))
        };
        match answer {
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            Ok(Err(error)) => Err(error_chain(&*error)),
            Ok(Ok(status)) if status.is_server_error() => Err(format!("answered {status}")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// An ordinary request: forwarded, response streamed back.
    async fn forward(
        &self,
        pool: &Arc<Pool>,
        ingress: &Ingress,
        target: &Target<'_>,
        request: Request<Incoming>,
    ) -> Response<BoxBody> {
        let (parts, incoming) = request.into_parts();
        let mut outgoing =
            match self.origin_request(ingress, target, parts, body::incoming(incoming)) {
                Ok(request) => request,
                Err(response) => return *response,
            };
        *outgoing.version_mut() = Version::HTTP_11;
        let response = match self.answer(pool.send(outgoing)).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        let (mut parts, pooled) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = pooled.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
        Response::from_parts(parts, body)
    }

    /// An ordinary request to an HTTP/2 origin: `:authority` is the Host the origin expects
    /// (as HTTP/1.1's `Host`), the connection goes to the service's address; the response and
    /// its trailers streamed back.
    async fn forward_http2(
        &self,
        pool: &MultiplexedPool,
        ingress: &Ingress,
        target: &Target<'_>,
        request: Request<Incoming>,
    ) -> Response<BoxBody> {
        let (parts, incoming) = request.into_parts();
        let mut outgoing =
            match self.origin_request(ingress, target, parts, body::incoming(incoming)) {
                Ok(request) => request,
                Err(response) => return *response,
            };
        *outgoing.version_mut() = Version::HTTP_2;
        if let Some(host) = outgoing.headers_mut().remove(header::HOST)
            && let Ok(host) = host.to_str()
            && let Ok(authority) = host.parse::<http::uri::Authority>()
        {
            let mut uri = std::mem::take(outgoing.uri_mut()).into_parts();
            uri.authority = Some(authority);
            match Uri::from_parts(uri) {
                Ok(uri) => *outgoing.uri_mut() = uri,
                Err(_) => {
                    return fault(
                        ConnectorFault::OriginUnreachable,
                        "the origin URL is not valid",
                    );
                }
            }
        }
        let response = match self.answer(pool.send(target.authority, outgoing)).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body::incoming(incoming))
    }

    /// An extended CONNECT (WebSocket over HTTP/2): an HTTP/1.1 upgrade to the origin, and
    /// once it switches protocols, 200 to the edge and the two streams spliced.
    async fn upgrade(
        &self,
        pool: &Pool,
        ingress: &Ingress,
        target: &Target<'_>,
        mut request: Request<Incoming>,
    ) -> Response<BoxBody> {
        let from_edge = hyper::upgrade::on(&mut request);
        let protocol = request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "websocket".into());
        let (parts, _) = request.into_parts();
        let mut outgoing = match self.origin_request(ingress, target, parts, body::empty()) {
            Ok(request) => request,
            Err(response) => return *response,
        };
        *outgoing.method_mut() = Method::GET;
        *outgoing.version_mut() = Version::HTTP_11;
        let headers = outgoing.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(value) = HeaderValue::from_str(&protocol) {
            headers.insert(header::UPGRADE, value);
        }
        if protocol.eq_ignore_ascii_case("websocket") {
            headers
                .entry(header::SEC_WEBSOCKET_VERSION)
                .or_insert(HeaderValue::from_static("13"));
            if !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
                let key: [u8; 16] = rand::random();
                use base64::Engine;
                let key = base64::engine::general_purpose::STANDARD.encode(key);
                if let Ok(value) = HeaderValue::from_str(&key) {
                    headers.insert(header::SEC_WEBSOCKET_KEY, value);
                }
            }
        }
        let mut response = match self.answer(pool.send_upgrade(outgoing)).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, incoming) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, body::incoming(incoming));
        }
        let from_origin = hyper::upgrade::on(&mut response);
        tokio::spawn(
            async move {
                match tokio::try_join!(from_edge, from_origin) {
                    Ok((edge, origin)) => {
                        let mut edge = TokioIo::new(edge);
                        let mut origin = TokioIo::new(origin);
                        if let Err(error) =
                            tokio::io::copy_bidirectional(&mut edge, &mut origin).await
                        {
                            tracing::debug!(%error, "upgraded stream ended");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            }
            .in_current_span(),
        );
        let (mut parts, _) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.status = StatusCode::OK;
        Response::from_parts(parts, body::empty())
    }

    /// The request to the origin: its URI, the Host it expects, no hop-by-hop or internal
    /// headers, and which connector sent it.
    fn origin_request(
        &self,
        ingress: &Ingress,
        target: &Target<'_>,
        mut parts: http::request::Parts,
        body: BoxBody,
    ) -> Result<Request<BoxBody>, Box<Response<BoxBody>>> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!(
            "{}://{}{}{}",
            target.scheme, target.authority, target.path_prefix, path
        )
        .parse()
        .map_err(|_| {
            fault(
                ConnectorFault::OriginUnreachable,
                "the origin URL is not valid",
            )
        })?;
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .remove(HeaderName::from_static(CONFIG_VERSION_HEADER));
        let host = ingress.origin.host_header().unwrap_or(&ingress.hostname);
        if let Ok(value) = HeaderValue::from_str(host) {
            parts.headers.insert(header::HOST, value);
        }
        parts.headers.insert(
            HeaderName::from_static(CONNECTOR_HEADER),
            self.connector_id.clone(),
        );
        let mut request = Request::from_parts(parts, body);
        *request.uri_mut() = uri;
        Ok(request)
    }

    /// Waits at most the response timeout for the origin's response head; failures are
    /// answered as 502 (unreachable) or 504 (too slow).
    async fn answer<B>(
        &self,
        sent: impl Future<Output = Result<Response<B>, BoxError>>,
    ) -> Result<Response<B>, Response<BoxBody>> {
        match tokio::time::timeout(self.response_timeout, sent).await {
            Ok(Ok(response)) if header_list_size(response.headers()) > MAX_HEADER_LIST => {
                // The edge would refuse this head, and HTTP/2 would take the whole tunnel
                // connection down with it.
                tracing::info!(
                    bytes = header_list_size(response.headers()),
                    limit = MAX_HEADER_LIST,
                    "the origin's response headers are too large"
                );
                Err(fault(
                    ConnectorFault::OriginUnreachable,
                    "the origin's response headers are too large",
                ))
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                let kind = if caused_by_timeout(&*error) {
                    ConnectorFault::OriginTimeout
                } else {
                    ConnectorFault::OriginUnreachable
                };
                tracing::info!(error = %error_chain(&*error), fault = kind.as_str(), "origin request failed");
                Err(fault(kind, "the origin could not be reached"))
            }
            Err(_) => {
                tracing::info!(
                    timeout_ms = self.response_timeout.as_millis() as u64,
                    "the origin did not answer in time"
                );
                Err(fault(
                    ConnectorFault::OriginTimeout,
                    "the origin did not answer in time",
                ))
            }
        }
    }

    /// The HTTP/1.1 connection pool for these origin settings.
    fn pool(&self, origin: &OriginSettings) -> Arc<Pool> {
        let key = ClientKey::new(origin, false);
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(&key) {
            return Arc::clone(pool);
        }
        let pool = build_pool(&key, self.roots_for(&key));
        pools.insert(key, Arc::clone(&pool));
        pool
    }

    /// The HTTP/2 connections for these origin settings (TLS with ALPN `h2` for https,
    /// cleartext for h2c).
    fn multiplexed_pool(
        &self,
        scheme: OriginScheme,
        origin: &OriginSettings,
    ) -> Arc<MultiplexedPool> {
        let key = ClientKey::new(origin, true);
        let mut pools = self.multiplexed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(&key) {
            return Arc::clone(pool);
        }
        let tls = scheme.is_tls().then(|| {
            let mut config = tls_config(&key, self.roots_for(&key));
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            OriginTls {
                config: Arc::new(config),
                server_name: server_name(&key),
            }
        });
        let pool = MultiplexedPool::new(tls, connect_timeout(&key));
        pools.insert(key, Arc::clone(&pool));
        pool
    }

    /// The roots an https origin's certificate may chain to: the system's, `--origin-ca`, and
    /// the hostname's own `ca_cert_pem`.
    fn roots_for(&self, key: &ClientKey) -> Arc<RootCertStore> {
        let Some(pem) = &key.ca_cert_pem else {
            return self.roots.clone();
        };
        use rustls_pki_types::pem::PemObject;
        let mut roots = (*self.roots).clone();
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            match cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
            {
                Ok(()) => added += 1,
                Err(error) => {
                    tracing::warn!(%error, "ignored an unusable certificate in origin.ca_cert_pem")
                }
            }
        }
        tracing::debug!(added, "trusting origin.ca_cert_pem for an https origin");
        Arc::new(roots)
    }
}

impl ClientKey {
    /// The key of `origin`'s settings on this worker.
    fn new(origin: &OriginSettings, http2: bool) -> Self {
        Self {
            worker: postern_workers::current(),
            no_tls_verify: origin.skip_verify(),
            server_name: origin.server_name().map(str::to_owned),
            connect_timeout_ms: origin.connect_timeout_ms,
            ca_cert_pem: origin.ca_cert_pem.clone(),
            http2,
        }
    }
}

/// Does the connector speak HTTP/2 to this origin? `h2c://` always; `https://` when the
/// hostname's `origin.http2` says so.
fn speaks_http2(scheme: OriginScheme, origin: &OriginSettings) -> bool {
    match scheme {
        OriginScheme::H2c => true,
        OriginScheme::Https => origin.http2 == Some(true),
        OriginScheme::Http => false,
    }
}

/// Where an origin is.
struct Target<'a> {
    scheme: &'static str,
    authority: &'a str,
    path_prefix: &'a str,
}

fn connect_timeout(key: &ClientKey) -> Duration {
    key.connect_timeout_ms
        .map_or(DEFAULT_CONNECT_TIMEOUT, |ms| {
            Duration::from_millis(u64::from(ms))
        })
}

/// `origin_server_name`, when it is a usable name.
fn server_name(key: &ClientKey) -> Option<ServerName<'static>> {
    let name = key.server_name.as_ref()?;
    match ServerName::try_from(name.clone()) {
        Ok(name) => Some(name),
        Err(_) => {
            tracing::warn!(server_name = %name, "ignored an invalid origin_server_name");
            None
        }
    }
}

/// TLS towards an https origin: `roots`, or with `no_tls_verify` no verification at all.
fn tls_config(key: &ClientKey, roots: Arc<RootCertStore>) -> rustls::ClientConfig {
    let provider = crate::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            // The default provider supports the default versions; this arm is never taken.
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap_or_else(|_| rustls::ClientConfig::builder())
        });
    if key.no_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    }
}

fn build_pool(key: &ClientKey, roots: Arc<RootCertStore>) -> Arc<Pool> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout(key)));
    let tls = tls_config(key, roots);
    let mut connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = server_name(key) {
        connector = connector.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    Pool::new(
        connector.enable_http1().wrap_connector(http),
        ORIGIN_READ_BUFFER,
    )
}

/// `no_tls_verify`: accepts any origin certificate (signatures are still checked). INSECURE:
/// whoever sits between the connector and the origin can read and change the traffic.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Answers one TCP service stream for `ingress`: the origin dialed and spliced, or the
/// fault that kept it from being reached.
pub(crate) async fn serve_tcp(
    ingress: &crate::orchestrator::TcpIngress,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    tcp::serve(ingress, request)
        .await
        .unwrap_or_else(|(kind, message)| fault(kind, message))
}

/// The connector's answer when it cannot serve a request: the status, and the fault in
/// [`ERROR_HEADER`] for the edge.
pub(crate) fn fault(kind: ConnectorFault, message: &str) -> Response<BoxBody> {
    let mut response = Response::new(body::full(format!("{message}\n")));
    *response.status_mut() = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        HeaderName::from_static(ERROR_HEADER),
        HeaderValue::from_static(kind.as_str()),
    );
    response
}

fn caused_by_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_carry_their_status_and_header() {
        let response = fault(ConnectorFault::OriginTimeout, "slow");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()[ERROR_HEADER], "origin_timeout");
        let response = fault(ConnectorFault::OriginUnreachable, "down");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn timeouts_are_found_in_the_error_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout");
        assert!(caused_by_timeout(&io));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!caused_by_timeout(&refused));
    }
}
