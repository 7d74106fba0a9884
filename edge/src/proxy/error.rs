//! `ProxyError`: why a visitor request was not forwarded, who is at fault, and the one place
//! that turns it into a status code and an error page.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use postern_schema::wire::ConnectorFault;

use super::forward::REQUEST_ID;
use super::limits::MAX_HEADER_LIST;
use crate::body::{self, BoxBody};

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The visitor (4xx).
    Client,
    /// The tunnel or the connector (502, 503).
    Tunnel,
    /// The origin behind the connector (502, 504).
    Origin,
}

/// Why a visitor request was answered by the edge itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The request names no host.
    #[error("the request has no Host")]
    MissingHost,
    /// The request's headers are larger than the edge accepts.
    #[error("the request headers are too large")]
    HeadersTooLarge,
    /// The visitor's request body broke off or was malformed while it was forwarded.
    #[error("the request body was malformed or cut")]
    VisitorBody(#[source] hyper::Error),
    /// No hostname with this name is declared.
    #[error("no such hostname")]
    UnknownHostname,
    /// A path-restricted hostname got a path origins read in different ways.
    #[error("ambiguous path: {0}")]
    AmbiguousPath(&'static str),
    /// This node has not been able to refresh its catalog from the store for longer than
    /// `--max-staleness`.
    #[error("the catalog is {}s old, over the limit of {}s", .age.as_secs(), .limit.as_secs())]
    Stale {
        /// Since the last successful read of the store.
        age: Duration,
        /// `--max-staleness`.
        limit: Duration,
    },
    /// An HTTPS request whose Host is not the name its TLS connection was opened for.
    #[error("Host {host:?} does not match the TLS server name {sni:?}")]
    Misdirected {
        /// The TLS server name.
        sni: String,
        /// The Host.
        host: String,
    },
    /// A policy refused the request (status, extra headers such as `WWW-Authenticate` or
    /// `Retry-After`, and a message for the page).
    #[error("refused by policy: {message}")]
    Rejected {
        /// The status.
        status: StatusCode,
        /// Headers to add.
        headers: HeaderMap,
        /// Why.
        message: String,
    },
    /// No healthy connector serves the hostname.
    #[error("no healthy connector")]
    NoConnector,
    /// The stream on the tunnel failed.
    #[error("the tunnel stream failed")]
    Tunnel(#[source] hyper::Error),
    /// Every stream of the picked tunnel connection stayed in use past
    /// `--stream-slot-timeout`.
    #[error("no free stream on the tunnel connection in time")]
    NoStreamSlot,
    /// The connector (or the node holding it) sent no response head within
    /// `--response-head-timeout`.
    #[error("the connector did not answer in time")]
    ResponseTimeout,
    /// The connector reported a failure.
    #[error("the connector reported {}", .0.as_str())]
    Connector(ConnectorFault),
}

impl ProxyError {
    /// Who is at fault.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            ProxyError::MissingHost
            | ProxyError::HeadersTooLarge
            | ProxyError::VisitorBody(_)
            | ProxyError::UnknownHostname
            | ProxyError::Misdirected { .. }
            | ProxyError::AmbiguousPath(_)
            | ProxyError::Rejected { .. } => Fault::Client,
            ProxyError::NoConnector
            | ProxyError::Stale { .. }
            | ProxyError::Tunnel(_)
            | ProxyError::NoStreamSlot
            | ProxyError::ResponseTimeout => Fault::Tunnel,
            ProxyError::Connector(ConnectorFault::UnknownHostname) => Fault::Client,
            ProxyError::Connector(_) => Fault::Origin,
        }
    }

    /// The status the visitor gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost | ProxyError::VisitorBody(_) | ProxyError::AmbiguousPath(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UnknownHostname => StatusCode::NOT_FOUND,
            ProxyError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Rejected { status, .. } => *status,
            ProxyError::NoConnector | ProxyError::Stale { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Tunnel(_) => StatusCode::BAD_GATEWAY,
            ProxyError::NoStreamSlot | ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Connector(fault) => {
                StatusCode::from_u16(fault.status()).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    fn explanation(&self) -> String {
        match self {
            ProxyError::MissingHost => "the request names no host".into(),
            ProxyError::HeadersTooLarge => {
                format!("the request headers exceed {} KiB", MAX_HEADER_LIST / 1024)
            }
            ProxyError::VisitorBody(_) => "the request body was malformed or cut short".into(),
            ProxyError::UnknownHostname => "no such hostname on this edge".into(),
            ProxyError::AmbiguousPath(why) => {
                format!("{why}; origins read such a path in different ways, so it is refused")
            }
            ProxyError::Stale { age, limit } => format!(
                "this edge node has not been able to read its configuration store for {} s \
                 (its limit is {} s); it refuses requests rather than apply hostnames and \
                 policies that may have changed since",
                age.as_secs(),
                limit.as_secs()
            ),
            ProxyError::Misdirected { .. } => {
                "this connection was opened for another hostname".into()
            }
            ProxyError::Rejected { message, .. } => message.clone(),
            ProxyError::NoConnector => "no connector is serving this hostname right now".into(),
            ProxyError::Tunnel(_) => "the connection to the connector failed".into(),
            ProxyError::NoStreamSlot => {
                "every stream of the connection to the connector stayed in use".into()
            }
            ProxyError::ResponseTimeout => "the connector did not answer in time".into(),
            ProxyError::Connector(ConnectorFault::UnknownHostname) => {
                "the connector does not serve this hostname".into()
            }
            ProxyError::Connector(ConnectorFault::OriginUnreachable) => {
                "the connector could not reach the origin".into()
            }
            ProxyError::Connector(ConnectorFault::OriginTimeout) => {
                "the origin did not answer in time".into()
            }
        }
    }

    /// The edge's error page for this failure.
    pub(crate) fn into_response(self, request_id: &str) -> Response<BoxBody> {
        let status = self.status();
        // A stale node says so once, where it fails to read the store; not per request.
        let quiet = self.fault() == Fault::Client || matches!(self, ProxyError::Stale { .. });
        if quiet {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        } else {
            tracing::info!(error = %postern_schema::error_chain(&self), status = status.as_u16(), "request failed");
        }
        let body = format!(
            "{} {}: {}\nrequest id: {request_id}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.explanation()
        );
        let mut response = Response::new(body::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID, value);
        }
        if let ProxyError::Rejected { headers: extra, .. } = self {
            for (name, value) in extra.iter() {
                headers.insert(name.clone(), value.clone());
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_maps_to_the_status_of_the_design() {
        let table = [
            (ProxyError::UnknownHostname, 404),
            (ProxyError::MissingHost, 400),
            (ProxyError::HeadersTooLarge, 431),
            (
                ProxyError::Misdirected {
                    sni: "a".into(),
                    host: "b".into(),
                },
                421,
            ),
            (ProxyError::NoConnector, 503),
            (ProxyError::AmbiguousPath("why"), 400),
            (
                ProxyError::Stale {
                    age: Duration::from_secs(400),
                    limit: Duration::from_secs(300),
                },
                503,
            ),
            (ProxyError::NoStreamSlot, 504),
            (ProxyError::ResponseTimeout, 504),
            (
                ProxyError::Connector(ConnectorFault::OriginUnreachable),
                502,
            ),
            (ProxyError::Connector(ConnectorFault::OriginTimeout), 504),
            (ProxyError::Connector(ConnectorFault::UnknownHostname), 404),
        ];
        for (error, status) in table {
            let response = error.into_response("r1");
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers().get("x-request-id").map(|v| v.as_bytes()),
                Some(&b"r1"[..])
            );
        }
    }
}
