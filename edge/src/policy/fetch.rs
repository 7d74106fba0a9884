//! The edge's client for identity providers: JWKS and OpenID discovery documents (GET) and
//! the token endpoint (POST of a form). One shared connection pool; every exchange is bounded
//! in time and in size, and only `https://` (or `http://` on a loopback host, which the
//! contract already enforces) is reached.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one exchange may take, from connecting to the last byte of the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Larger answers are refused.
const MAX_BODY: usize = 1024 * 1024;

/// Why an identity provider could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The URL does not make a request.
    #[error("{url} is not a usable URL")]
    Url { url: String },
    /// No TLS roots could be loaded.
    #[error("cannot set up TLS for identity providers")]
    Tls(#[from] rustls::Error),
    /// Connecting or exchanging failed.
    #[error("cannot reach {url}")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer did not arrive in time.
    #[error("{url} did not answer within {TIMEOUT:?}")]
    Timeout { url: String },
    /// The answer's status was not 2xx.
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    /// The body broke off or was too large.
    #[error("the answer of {url} broke off or is larger than {MAX_BODY} bytes")]
    Body { url: String },
    /// The body is not the JSON expected.
    #[error("the answer of {url} is not the JSON expected")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The shared client, built on first use.
fn client() -> Result<&'static HttpsClient, FetchError> {
    static CLIENT: OnceLock<Result<HttpsClient, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| FetchError::Tls(rustls::Error::General(e.clone())))
}

fn build() -> Result<HttpsClient, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs `url` and reads its JSON answer.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, FetchError> {
    let request = Request::get(url)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| FetchError::Url { url: url.into() })?;
    exchange(url, request).await
}

/// POSTs `form` (already encoded) to `url`, with `authorization` when given, and reads its
/// JSON answer.
pub(crate) async fn post_form<T: serde::de::DeserializeOwned>(
    url: &str,
    form: String,
    authorization: Option<&str>,
) -> Result<T, FetchError> {
    let mut builder = Request::post(url)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| FetchError::Url { url: url.into() })?;
    exchange(url, request).await
}

async fn exchange<T: serde::de::DeserializeOwned>(
    url: &str,
    request: Request<Full<Bytes>>,
) -> Result<T, FetchError> {
    let client = client()?;
    let answer = async {
        let response = client
            .request(request)
            .await
            .map_err(|source| FetchError::Request {
                url: url.into(),
                source,
            })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| FetchError::Body { url: url.into() })?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.into(),
                status: status.as_u16(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| FetchError::Json {
            url: url.into(),
            source,
        })
    };
    tokio::time::timeout(TIMEOUT, answer)
        .await
        .map_err(|_| FetchError::Timeout { url: url.into() })?
}
