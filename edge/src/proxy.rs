//! The public reverse proxy: visitors' HTTP and HTTPS traffic (HTTP/1.1 and HTTP/2), routed
//! by `Host`/SNI through policies and label routes to a connector's tunnel, or through a link
//! to another edge node that holds one.
//!
//! Every request runs the phases of [`request`], top-down in that file: find the hostname,
//! apply its policies, pick a destination, open the stream, forward the response, respond.
//! Around them: the public listeners and their limits ([`listener`], [`limits`], [`shares`],
//! [`activity`], [`framing`], [`tls`]), the rewriting between the visitor's HTTP and the tunnel's HTTP/2 ([`forward`]),
//! the choice of connection ([`route`]), requests to and from other nodes ([`nodes`],
//! [`links`]), and the one place failures become statuses ([`error`]). Raw TCP services are
//! carried beside it ([`tcp`]): a listener per service port, the same policies' IP lists and
//! rate limits at accept, one tunnel stream per connection; and so are TLS passthrough
//! hostnames, whose ClientHello's server name ([`sni`]) sends the connection down the tunnel
//! untouched.

mod activity;
mod error;
mod forward;
mod framing;
mod limits;
mod links;
mod listener;
mod login;
mod nodes;
mod request;
mod route;
mod rules;
mod shares;
mod sni;
mod tcp;
mod tls;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::certs::Certificates;

pub(crate) use limits::ProxySettings;
pub(crate) use links::serve_links;
pub(crate) use request::Proxy;
pub(crate) use tcp::serve_tcp_services;

/// Serves visitors on (this worker's share of) the public HTTP listener until `cancel`.
pub(crate) async fn serve_http(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    cancel: CancellationToken,
) {
    if let Some(listener) = adopt(listener, "http") {
        listener::serve(listener, proxy, None, cancel).await;
    }
}

/// Serves visitors on (this worker's share of) the public HTTPS listener until `cancel`.
pub(crate) async fn serve_https(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    tls: TlsAcceptor,
    cancel: CancellationToken,
) {
    if let Some(listener) = adopt(listener, "https") {
        listener::serve(listener, proxy, Some(tls), cancel).await;
    }
}

/// The TLS acceptor of the public HTTPS listener: certificates by SNI from `certificates`
/// (uploaded, ACME, the visitors' CA for hostnames `catalog` declares).
pub(crate) fn https_acceptor(
    catalog: Catalog,
    certificates: Certificates,
) -> Result<TlsAcceptor, rustls::Error> {
    tls::acceptor(catalog, certificates)
}

/// Registers a worker's share of a public listener with its runtime.
fn adopt(listener: std::net::TcpListener, what: &str) -> Option<TcpListener> {
    match TcpListener::from_std(listener) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::error!(%error, listener = what, "a worker cannot take its public listener");
            None
        }
    }
}
