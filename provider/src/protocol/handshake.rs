//! The go-plugin handshake, as Terraform drives it: check the magic cookie (else this
//! binary was run by hand), pick protocol 6, make a server certificate, print the one
//! stdout line `1|6|tcp|127.0.0.1:PORT|grpc|<cert>`, and AutoMTLS: TLS whose client
//! must present exactly the certificate Terraform put in `PLUGIN_CLIENT_CERT`.
//!
//! Terraform's client certificate is a self-signed ECDSA P-521 CA certificate, made
//! fresh for every launch. Stock webpki refuses a CA certificate as a client leaf, and
//! `ring` cannot verify P-521 (the Go client then sends no certificate at all), so the
//! verifier here pins the DER byte-for-byte and checks handshake signatures with
//! aws-lc-rs. TLS is on if and only if `PLUGIN_CLIENT_CERT` is non-empty.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// The environment variable Terraform sets to show it launched us.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value (Terraform's plugin handshake, shared by every provider).
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// What a plugin run by hand says on stderr before exiting with status 1 (go-plugin's
/// wording, which users of other providers will recognise).
pub const RUN_BY_HAND_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\n\
Please execute the program that consumes these plugins, which will\n\
load any plugins automatically";

/// go-plugin's core protocol version (field 1 of the handshake line).
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol we speak (field 2).
pub(crate) const APP_PROTOCOL_VERSION: u32 = 6;

/// Why the plugin cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The magic cookie is missing or wrong: someone ran the binary by hand.
    #[error("{RUN_BY_HAND_MESSAGE}")]
    RunByHand,
    /// Terraform offered protocol versions, and 6 is not among them.
    #[error(
        "terraform offered plugin protocol versions {offered:?}; this provider speaks only version 6"
    )]
    UnsupportedProtocol {
        /// What `PLUGIN_PROTOCOL_VERSIONS` said.
        offered: String,
    },
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error("PLUGIN_CLIENT_CERT holds no PEM certificate")]
    ClientCertificate,
    /// The server certificate could not be made.
    #[error("generating the server certificate")]
    ServerCertificate(#[source] rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
}

/// What Terraform told us through the environment.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    /// Terraform's client certificate (DER), when AutoMTLS is on.
    pub client_cert: Option<CertificateDer<'static>>,
}

impl Launch {
    /// Reads the launch environment from the process.
    pub(crate) fn from_env() -> Result<Self, HandshakeError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the launch environment through `lookup` (tests pass a map).
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, HandshakeError> {
        if lookup(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(HandshakeError::RunByHand);
        }
        if let Some(offered) = lookup("PLUGIN_PROTOCOL_VERSIONS").filter(|v| !v.trim().is_empty()) {
            let speaks_ours = offered
                .split(',')
                .any(|v| v.trim().parse() == Ok(APP_PROTOCOL_VERSION));
            if !speaks_ours {
                return Err(HandshakeError::UnsupportedProtocol { offered });
            }
        }
        let client_cert = match lookup("PLUGIN_CLIENT_CERT").filter(|pem| !pem.trim().is_empty()) {
            None => None,
            Some(pem) => Some(
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .map_err(|_| HandshakeError::ClientCertificate)?,
            ),
        };
        Ok(Self { client_cert })
    }
}

/// The one line go-plugin reads from our stdout.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeLine {
    /// Where we listen.
    pub addr: SocketAddr,
    /// Our server certificate (DER), when serving TLS.
    pub server_cert: Option<CertificateDer<'static>>,
}

impl fmt::Display for HandshakeLine {
    /// `1|6|tcp|127.0.0.1:PORT|grpc|<DER, base64 standard alphabet, no padding>`; the
    /// certificate field is left out when serving plaintext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|tcp|{}|grpc",
            self.addr
        )?;
        if let Some(cert) = &self.server_cert {
            write!(f, "|{}", STANDARD_NO_PAD.encode(cert.as_ref()))?;
        }
        Ok(())
    }
}

/// Our TLS identity for one launch: a fresh self-signed ECDSA P-256 certificate for
/// `localhost` (Terraform checks the name and pins the certificate from our line).
pub(crate) struct ServerIdentity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerIdentity {
    /// Generates a new identity.
    pub(crate) fn generate() -> Result<Self, HandshakeError> {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
            PKCS_ECDSA_P256_SHA256,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(HandshakeError::ServerCertificate)?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])
            .map_err(HandshakeError::ServerCertificate)?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Postern");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(30);
        params.not_after = now + time::Duration::days(365);
        let cert = params
            .self_signed(&key)
            .map_err(HandshakeError::ServerCertificate)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The server TLS configuration: TLS 1.2+ with aws-lc-rs, ALPN `h2`, and a client
    /// certificate that must be exactly `client_cert`.
    pub(crate) fn tls_config(
        &self,
        client_cert: CertificateDer<'static>,
    ) -> Result<ServerConfig, HandshakeError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = PinnedClientCert::new(client_cert, &provider);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(HandshakeError::Tls)?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(HandshakeError::Tls)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Accepts exactly one client certificate, compared byte-for-byte, and verifies the
/// client's handshake signatures with the crypto provider's algorithms (aws-lc-rs
/// includes ECDSA P-521 / SHA-512, which Terraform uses).
#[derive(Debug)]
pub(crate) struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    /// A verifier pinning `pinned`, verifying signatures with `provider`.
    pub(crate) fn new(pinned: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        Self {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!("refused a TLS client whose certificate is not Terraform's");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn handshake_line_has_no_padding() {
        // Every DER length modulo 3, so padding would show up in one of them.
        for len in [300, 301, 302] {
            let line = HandshakeLine {
                addr: SocketAddr::from(([127, 0, 0, 1], 41933)),
                server_cert: Some(CertificateDer::from(vec![0xab; len])),
            }
            .to_string();
            let fields: Vec<&str> = line.split('|').collect();
            assert_eq!(&fields[..5], ["1", "6", "tcp", "127.0.0.1:41933", "grpc"]);
            assert!(!fields[5].contains('='), "padding in {line}");
            assert_eq!(
                STANDARD_NO_PAD.decode(fields[5]).map(|d| d.len()).ok(),
                Some(len)
            );
        }
    }

    #[test]
    fn plaintext_line_has_five_fields() {
        let line = HandshakeLine {
            addr: SocketAddr::from(([127, 0, 0, 1], 1234)),
            server_cert: None,
        };
        assert_eq!(line.to_string(), "1|6|tcp|127.0.0.1:1234|grpc");
    }

    #[test]
    fn launch_needs_the_cookie() {
        assert!(matches!(
            Launch::from_lookup(env(&[])),
            Err(HandshakeError::RunByHand)
        ));
        assert!(matches!(
            Launch::from_lookup(env(&[(MAGIC_COOKIE_KEY, "nope")])),
            Err(HandshakeError::RunByHand)
        ));
        let launch = Launch::from_lookup(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
            ("PLUGIN_CLIENT_CERT", ""),
        ]));
        assert!(matches!(launch, Ok(Launch { client_cert: None })));
    }

    #[test]
    fn launch_refuses_other_protocols_and_bad_certs() {
        assert!(matches!(
            Launch::from_lookup(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", "4,5")
            ])),
            Err(HandshakeError::UnsupportedProtocol { .. })
        ));
        assert!(matches!(
            Launch::from_lookup(env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_CLIENT_CERT", "not pem")
            ])),
            Err(HandshakeError::ClientCertificate)
        ));
    }

    #[test]
    fn server_identity_builds_a_tls_config() {
        let identity = ServerIdentity::generate().expect("identity");
        let client = ServerIdentity::generate().expect("client identity");
        let config = identity
            .tls_config(client.cert.clone())
            .expect("tls config");
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let verifier = PinnedClientCert::new(
            client.cert.clone(),
            &rustls::crypto::aws_lc_rs::default_provider(),
        );
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
        );
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(&client.cert, &[], now).is_ok());
        assert!(
            verifier
                .verify_client_cert(&identity.cert, &[], now)
                .is_err()
        );
    }
}
