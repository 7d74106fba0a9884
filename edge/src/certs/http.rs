//! The HTTPS client the ACME client talks to its server with: the system's roots plus
//! `--acme-ca-cert` (for a private ACME server such as a test CA), and a deadline on every
//! request so a server that stops answering fails an order instead of hanging it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// How long one request to the ACME server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// `--acme-ca-cert` could not be read.
    #[error("cannot read --acme-ca-cert {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--acme-ca-cert` holds no usable certificate.
    #[error("--acme-ca-cert {path} holds no PEM certificate the edge can trust")]
    NoRoots {
        /// The file.
        path: String,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS for the ACME server")]
    Tls(#[from] rustls::Error),
}

/// The ACME client's HTTPS client.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl AcmeHttp {
    /// A client trusting the system's roots and the certificates in `extra` (a PEM file).
    pub(crate) fn new(extra: Option<&Path>) -> Result<Self, HttpError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra {
            let text = std::fs::read(path).map_err(|source| HttpError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&text).flatten() {
                if roots.add(cert).is_ok() {
                    added += 1;
                }
            }
            if added == 0 {
                return Err(HttpError::NoRoots {
                    path: path.display().to_string(),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let sent = self.client.request(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(error)) => Err(instant_acme::Error::Other(Box::new(error))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("the ACME server did not answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}
