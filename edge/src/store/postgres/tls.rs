//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say it in the store URL (rustls,
//! aws-lc-rs): `disable`; `prefer` (the default: TLS when the server offers it, unverified);
//! `require` (TLS, unverified unless `sslrootcert` is given, then as `verify-ca`);
//! `verify-ca` (the server's certificate chains to `sslrootcert`); `verify-full` (and is for
//! the host the URL names: the recommended mode). `tokio-postgres` parses the rest of the URL.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of TLS a store URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, its certificate unchecked.
    Prefer,
    /// TLS, its certificate unchecked (checked as `VerifyCa` with `sslrootcert`).
    Require,
    /// TLS with a certificate that chains to `sslrootcert`.
    VerifyCa,
    /// TLS with a certificate that chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl TlsMode {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(TlsMode::Disable),
            "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-full" => Ok(TlsMode::VerifyFull),
            other => Err(format!(
                "sslmode={other}: use disable, prefer, require, verify-ca or verify-full \
                 (verify-full is recommended)"
            )),
        }
    }

    /// The name the URL gives the mode.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// A store URL read: the connection settings and how to protect the connection.
#[derive(Debug, Clone)]
pub(crate) struct StoreUrl {
    /// Everything but TLS, as `tokio-postgres` reads it.
    pub(crate) config: Config,
    /// `sslmode`.
    pub(crate) mode: TlsMode,
    /// `sslrootcert`.
    pub(crate) root: Option<PathBuf>,
}

impl StoreUrl {
    /// Reads a `postgres://` URL; `sslmode` and `sslrootcert` are taken out of its query and
    /// read here, the rest by `tokio-postgres`.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut mode = TlsMode::Prefer;
        let mut root = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = TlsMode::parse(&percent_decode(value)?)?,
                "sslrootcert" => root = Some(PathBuf::from(percent_decode(value)?)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config =
            Config::from_str(&rest).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && root.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert=FILE: the CA certificate (PEM) that signed the \
                 database server's certificate",
                mode.as_str()
            ));
        }
        Ok(Self { config, mode, root })
    }

    /// The connector for this URL's TLS: its roots read from `sslrootcert`.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root, self.mode) {
            (Some(root), TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull) => {
                let roots = Arc::new(read_roots(root)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert={}: {e}", root.display()))?;
                if self.mode == TlsMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
            _ => Arc::new(Unchecked(provider.clone())),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// Why a certificate signed by a CA that `sslrootcert` does not hold is refused.
const UNKNOWN_ISSUER: &str =
    "it is signed by a certificate authority that sslrootcert does not hold";

/// Why a certificate for another host is refused.
const NOT_FOR_NAME: &str = "it is not for the host the store URL names";

fn crate_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    postern_schema::error_chain(error)
}

/// What rustls said about the server's certificate, when that is why `error` happened.
pub(crate) fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        // An io::Error's `source` skips the error it wraps: look inside it too.
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(current), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(problem)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(match problem {
                    CertificateError::UnknownIssuer => UNKNOWN_ISSUER.to_string(),
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => NOT_FOR_NAME.to_string(),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        "it has expired".to_string()
                    }
                    other => format!("{other:?}"),
                });
            }
        }
        cause = current.source();
    }
    // Some layers keep the TLS error only as text (a boxed error of another type).
    let text = crate_error_chain(error);
    text.find("invalid peer certificate: ").map(|at| {
        let detail = &text[at + "invalid peer certificate: ".len()..];
        match detail.split([' ', ':', ')']).next().unwrap_or_default() {
            "UnknownIssuer" => UNKNOWN_ISSUER.to_string(),
            "NotValidForName" | "NotValidForNameContext" => NOT_FOR_NAME.to_string(),
            "Expired" | "ExpiredContext" => "it has expired".to_string(),
            other => other.to_string(),
        }
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("sslrootcert={}: cannot read it: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert
            .map_err(|e| format!("sslrootcert={}: not a PEM certificate: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert={}: holds no -----BEGIN CERTIFICATE----- block",
            path.display()
        ));
    }
    Ok(roots)
}

/// Percent-decodes a URL query value.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// `verify-ca` (and `require` with a root): the chain must lead to a root; any name will do.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root, as libpq does them: encrypted, not authenticated
/// (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_here_and_the_rest_by_tokio_postgres() {
        let url = StoreUrl::parse(
            "postgres://edge:pw@db.internal:6543/postern?sslmode=verify-full&sslrootcert=%2Fetc%2Fpostern%2Fdb-ca.pem&application_name=x",
        )
        .expect("url");
        assert_eq!(url.mode, TlsMode::VerifyFull);
        assert_eq!(
            url.root.as_deref(),
            Some(Path::new("/etc/postern/db-ca.pem"))
        );
        assert_eq!(url.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(url.config.get_application_name(), Some("x"));
        let plain = StoreUrl::parse("postgres://u@h/db").expect("url");
        assert_eq!(plain.mode, TlsMode::Prefer);
        let off = StoreUrl::parse("postgres://u@h/db?sslmode=disable").expect("url");
        assert_eq!(off.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn verifying_modes_need_a_root_and_unknown_modes_are_refused() {
        for mode in ["verify-ca", "verify-full"] {
            let error =
                StoreUrl::parse(&format!("postgres://u@h/db?sslmode={mode}")).expect_err("no root");
            assert!(error.contains("sslrootcert=FILE"), "{error}");
        }
        let error = StoreUrl::parse("postgres://u@h/db?sslmode=allow").expect_err("allow");
        assert!(error.contains("verify-full"), "{error}");
        let missing = StoreUrl::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nope")
            .expect("parses")
            .connector()
            .err()
            .unwrap_or_default();
        assert!(missing.contains("/nope"), "{missing}");
    }
}
