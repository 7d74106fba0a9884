//! The connector's origin side: one visitor stream in, one request to the local service out
//! (pooled HTTP/1.1 connections, plain or TLS), the response streamed back. WebSockets arrive
//! as extended CONNECT and leave as an HTTP/1.1 upgrade. Failures the edge must turn into a
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
use postern_schema::rules::Service;
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

mod pool;
mod tcp;

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
}

/// Connection pools to origins: every tunnel connection of a worker shares its worker's.
pub struct Origins {
    pools: Mutex<HashMap<ClientKey, Arc<Pool>>>,
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
        match &ingress.service {
            Service::Status(code) => {
                let mut response = Response::new(body::empty());
                *response.status_mut() = StatusCode::from_u16(*code).unwrap_or(StatusCode::OK);
                response
            }
            Service::Origin {
                tls,
                authority,
                path_prefix,
            } => {
                let target = Target {
                    scheme: if *tls { "https" } else { "http" },
                    authority,
                    path_prefix,
                };
                let pool = self.pool(&ingress.origin);
                let extended_connect = request.method() == Method::CONNECT
                    && request.extensions().get::<hyper::ext::Protocol>().is_some();
                if extended_connect {
                    self.upgrade(&pool, ingress, &target, request).await
                } else {
                    self.forward(&pool, ingress, &target, request).await
                }
            }
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
        let host = ingress
            .origin
            .http_host_header
            .as_deref()
            .unwrap_or(&ingress.hostname);
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

    /// The connection pool for these origin settings.
    fn pool(&self, origin: &OriginSettings) -> Arc<Pool> {
        let key = ClientKey {
            worker: postern_workers::current(),
            no_tls_verify: origin.no_tls_verify.unwrap_or(false),
            server_name: origin.origin_server_name.clone(),
            connect_timeout_ms: origin.connect_timeout_ms,
        };
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(&key) {
            return Arc::clone(pool);
        }
        let pool = build_pool(&key, self.roots.clone());
        pools.insert(key, Arc::clone(&pool));
        pool
    }
}

/// Where an origin is.
struct Target<'a> {
    scheme: &'static str,
    authority: &'a str,
    path_prefix: &'a str,
}

fn build_pool(key: &ClientKey, roots: Arc<RootCertStore>) -> Arc<Pool> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(
        key.connect_timeout_ms
            .map_or(DEFAULT_CONNECT_TIMEOUT, |ms| {
                Duration::from_millis(u64::from(ms))
            }),
    ));
    let provider = crate::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            // The default provider supports the default versions; this arm is never taken.
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap_or_else(|_| rustls::ClientConfig::builder())
        });
    let tls = if key.no_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &key.server_name {
        match ServerName::try_from(name.clone()) {
            Ok(name) => {
                connector = connector.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            Err(_) => tracing::warn!(server_name = %name, "ignored an invalid origin_server_name"),
        }
    }
    Pool::new(
        connector.enable_http1().wrap_connector(http),
        ORIGIN_READ_BUFFER,
    )
}

/// `no_tls_verify`: accepts any origin certificate (signatures are still checked).
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
