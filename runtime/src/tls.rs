//! TLS towards the edge: the edge's certificate must chain to the CA whose SHA-256 the token
//! pins (and name [`TUNNEL_SERVER_NAME`]); nothing else is trusted. Used for enrolment
//! (no client certificate) and for tunnels (with the edge-issued client certificate).

use std::sync::Arc;

use postern_schema::wire::{ALPN_ENROLL, ALPN_TUNNEL, TUNNEL_SERVER_NAME};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure TLS towards the edge")]
pub struct TlsConfigError(#[from] rustls::Error);

/// The server name the connector sends and checks.
pub(crate) fn edge_server_name() -> ServerName<'static> {
    ServerName::try_from(TUNNEL_SERVER_NAME).unwrap_or_else(|_| {
        // TUNNEL_SERVER_NAME is a valid DNS name; this arm is never taken.
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
    })
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub(crate) fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Trusts exactly the edge CA whose fingerprint is pinned.
#[derive(Debug)]
pub(crate) struct PinnedCaVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedCaVerifier {
    /// A verifier for the CA with lowercase hex SHA-256 `pin`.
    pub(crate) fn new(pin: &str, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin: pin.to_ascii_lowercase(),
            provider,
        }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The edge sends its CA after the leaf; it is trusted only if it is the pinned one.
        let ca = intermediates
            .iter()
            .find(|cert| fingerprint(cert) == self.pin)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The crypto provider used everywhere (aws-lc-rs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.3 for enrolment: pinned CA, no client certificate, ALPN `postern-enroll/1`.
pub(crate) fn enrol_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier::new(pin, provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    Ok(Arc::new(config))
}

/// TLS 1.3 for a tunnel: pinned CA, the edge-issued client certificate, ALPN `postern/1`.
pub(crate) fn tunnel_config(
    pin: &str,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier::new(pin, provider)))
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];
    Ok(Arc::new(config))
}
