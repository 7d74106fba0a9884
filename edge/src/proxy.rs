//! The public reverse proxy: visitors' HTTP and HTTPS traffic (HTTP/1.1 and HTTP/2), routed
//! by `Host`/SNI through policies and label routes to a connector's tunnel, or through a link
//! to another edge node that holds one.
//!
//! Every request runs the phases of [`request`], top-down in that file: find the hostname,
//! apply its policies, pick a destination, open the stream, forward the response, respond.
//! Around them: the public listeners and their limits ([`listener`], [`limits`], [`framing`],
//! [`tls`]), the rewriting between the visitor's HTTP and the tunnel's HTTP/2 ([`forward`]),
//! the choice of connection ([`route`]), requests to and from other nodes ([`nodes`],
//! [`links`]), and the one place failures become statuses ([`error`]).

mod error;
mod forward;
mod framing;
mod limits;
mod links;
mod listener;
mod nodes;
mod request;
mod route;
mod tls;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ca::EdgeCa;

pub(crate) use links::serve_links;
pub(crate) use request::Proxy;

/// Serves visitors on the public HTTP listener until `cancel`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    cancel: CancellationToken,
) {
    listener::serve(listener, proxy, None, cancel).await;
}

/// Serves visitors on the public HTTPS listener until `cancel`: certificates from `ca` by SNI,
/// and for names that are not hostnames one for `localhost` and `public_addresses`.
pub(crate) async fn serve_https(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    ca: Arc<EdgeCa>,
    public_addresses: Vec<String>,
    cancel: CancellationToken,
) {
    match tls::acceptor(proxy.catalog.clone(), ca, &public_addresses) {
        Ok(acceptor) => listener::serve(listener, proxy, Some(acceptor), cancel).await,
        Err(error) => {
            tracing::error!(%error, "the HTTPS listener cannot start");
            cancel.cancelled().await;
        }
    }
}
