//! `ApiTls`: the control API's TLS, from the flags: a certificate and key from files
//! (`--api-tls-cert`, `--api-tls-key`), or one issued by the edge CA for every `--api-name`
//! and renewed before it expires (`--api-tls edge-ca`; clients trust `<data-dir>/ca.pem`), or
//! one ordered by ACME for every `--api-name` (`--api-tls acme`; the edge CA's serves until
//! it is issued).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ca::{CertCache, EdgeCa};
use crate::certs::Certificates;
use crate::config::{ApiTlsSource, EdgeConfig};
use crate::store::{CertificateSource, StoreError, StoredCertificate};

/// The file under `--data-dir` where the edge writes its CA certificate, for clients of an
/// API whose certificate the edge CA issued.
pub(crate) const CA_FILE: &str = "ca.pem";

/// Why the API's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiTlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS for the control API")]
    Rustls(#[from] rustls::Error),
    /// The store could not record or read the API's certificate.
    #[error("cannot request the control API's certificate")]
    Store(#[source] StoreError),
}

/// How the control API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiTls {
    /// Plain HTTP.
    Off,
    /// A certificate chain and key from files.
    Files {
        /// The chain (PEM).
        cert: PathBuf,
        /// The key (PEM).
        key: PathBuf,
    },
    /// A certificate from the edge CA for these names.
    EdgeCa {
        /// DNS names and IP addresses.
        names: Vec<String>,
    },
    /// A certificate ordered by ACME for these names.
    Acme {
        /// DNS names.
        names: Vec<String>,
    },
}

impl ApiTls {
    /// What the flags ask for (checked by [`EdgeConfig::check`]).
    pub(crate) fn from_config(config: &EdgeConfig) -> Self {
        match (&config.api_tls_cert, &config.api_tls_key, config.api_tls) {
            (Some(cert), Some(key), _) => ApiTls::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (_, _, Some(ApiTlsSource::EdgeCa)) => ApiTls::EdgeCa {
                names: config.api_names.clone(),
            },
            (_, _, Some(ApiTlsSource::Acme)) => ApiTls::Acme {
                names: config.api_names.clone(),
            },
            _ => ApiTls::Off,
        }
    }

    /// The acceptor for the API listener (HTTP/2 and HTTP/1.1 by ALPN); `None` for plain HTTP.
    /// With the edge CA (or ACME, until its certificate is issued), also writes the CA's
    /// certificate to `<data_dir>/ca.pem`; with ACME, asks `certificates` for one.
    pub(crate) async fn acceptor(
        &self,
        ca: &Arc<EdgeCa>,
        certificates: &Certificates,
        data_dir: &Path,
    ) -> Result<Option<TlsAcceptor>, ApiTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth();
        let mut config = match self {
            ApiTls::Off => return Ok(None),
            ApiTls::Files { cert, key } => {
                let chain = read_chain(cert)?;
                let key = read_key(key)?;
                builder.with_single_cert(chain, key)?
            }
            ApiTls::EdgeCa { names } => builder
                .with_cert_resolver(Arc::new(edge_ca_resolver(ca, names, data_dir, provider)?)),
            ApiTls::Acme { names } => {
                request_certificate(certificates, names).await?;
                builder.with_cert_resolver(Arc::new(AcmeResolver {
                    names: names.clone(),
                    certificates: certificates.clone(),
                    meanwhile: edge_ca_resolver(ca, names, data_dir, provider)?,
                }))
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

/// A resolver of the edge CA's certificates for `names`, with the CA's certificate written to
/// `<data_dir>/ca.pem` for clients.
fn edge_ca_resolver(
    ca: &Arc<EdgeCa>,
    names: &[String],
    data_dir: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<EdgeCaResolver, ApiTlsError> {
    let path = data_dir.join(CA_FILE);
    std::fs::write(&path, ca.cert_pem()).map_err(|source| ApiTlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let resolver = EdgeCaResolver {
        names: names.to_vec(),
        cache: CertCache::new(ca.clone(), provider),
    };
    if resolver.cache.get(&resolver.names).is_none() {
        return Err(ApiTlsError::Invalid {
            path: "--api-name".into(),
            problem: format!(
                "the edge CA cannot issue a certificate for {}",
                names.join(", ")
            ),
        });
    }
    Ok(resolver)
}

/// Makes sure the store holds a request for an ACME certificate for exactly `names` (kept
/// like one asked for through `/v1/certificates`: the lease holder orders and renews it; every
/// node on the store serves it).
async fn request_certificate(
    certificates: &Certificates,
    names: &[String],
) -> Result<(), ApiTlsError> {
    let store = certificates.store();
    let mut wanted = names.to_vec();
    wanted.sort();
    wanted.dedup();
    let stored = store.certificates().await.map_err(ApiTlsError::Store)?;
    let asked = stored.iter().any(|c| {
        let mut have = c.names.clone();
        have.sort();
        c.source == CertificateSource::Acme && !c.automatic && have == wanted
    });
    if !asked {
        let created_at = crate::certs::rfc3339(crate::certs::now());
        let request = StoredCertificate::acme_request(wanted, false, created_at);
        store
            .insert_certificate(&request)
            .await
            .map_err(ApiTlsError::Store)?;
        tracing::info!(certificate = %request.id, names = ?request.names, "certificate for the control API requested by ACME");
    }
    certificates.reload().await.map_err(ApiTlsError::Store)
}

/// The API's ACME certificate for the client's SNI (or the first `--api-name`), and the edge
/// CA's until it is issued.
struct AcmeResolver {
    names: Vec<String>,
    certificates: Certificates,
    meanwhile: EdgeCaResolver,
}

impl std::fmt::Debug for AcmeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeResolver")
            .field("names", &self.names)
            .finish()
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .map(|sni| sni.to_ascii_lowercase())
            .filter(|sni| self.names.iter().any(|n| n.eq_ignore_ascii_case(sni)))
            .or_else(|| self.names.first().cloned())?;
        self.certificates
            .public(&name)
            .or_else(|| self.meanwhile.resolve(hello))
    }
}

/// The API's certificate from the edge CA, whatever the client's SNI (the API answers under
/// every `--api-name`); re-issued by the cache before it expires.
struct EdgeCaResolver {
    names: Vec<String>,
    cache: CertCache,
}

impl std::fmt::Debug for EdgeCaResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeCaResolver")
            .field("names", &self.names)
            .finish()
    }
}

impl ResolvesServerCert for EdgeCaResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.cache.get(&self.names)
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ApiTlsError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(path, "holds no -----BEGIN CERTIFICATE----- block"));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ApiTlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid(path, format!("not a PEM private key: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, ApiTlsError> {
    std::fs::read(path).map_err(|source| ApiTlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn invalid(path: &Path, problem: impl Into<String>) -> ApiTlsError {
    ApiTlsError::Invalid {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}
