//! A TCP service's stream: the edge opens an extended CONNECT stream with `:protocol`
//! `postern-tcp`; the connector dials the declared origin and, once connected, answers 200 and
//! splices the stream with the origin's socket. An end of stream on one side becomes a
//! half-close (FIN, or END_STREAM) on the other; an error on either closes both. An origin
//! that cannot be reached is answered 502 (504 when it took too long), as for HTTP.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use postern_schema::wire::ConnectorFault;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::body::{self, BoxBody};
use crate::orchestrator::TcpIngress;

/// How long to wait for the origin to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `ingress`'s origin for one stream and splices the two once the stream is upgraded;
/// the fault to answer with (and why) when the origin cannot be reached.
pub(crate) async fn serve(
    ingress: &TcpIngress,
    mut request: Request<Incoming>,
) -> Result<Response<BoxBody>, (ConnectorFault, &'static str)> {
    let dialed = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&ingress.address)).await;
    let mut origin = match dialed {
        Ok(Ok(origin)) => origin,
        Ok(Err(error)) => {
            tracing::debug!(service = %ingress.name, address = %ingress.address, %error, "cannot reach the TCP origin");
            return Err((
                ConnectorFault::OriginUnreachable,
                "the connector cannot reach the TCP origin",
            ));
        }
        Err(_) => {
            tracing::debug!(service = %ingress.name, address = %ingress.address, "the TCP origin did not accept in time");
            return Err((
                ConnectorFault::OriginTimeout,
                "the TCP origin did not accept in time",
            ));
        }
    };
    let _ = origin.set_nodelay(true);
    let from_edge = hyper::upgrade::on(&mut request);
    tokio::spawn(
        async move {
            let edge = match from_edge.await {
                Ok(edge) => edge,
                Err(error) => {
                    tracing::debug!(%error, "the TCP stream was not upgraded");
                    return;
                }
            };
            let mut edge = TokioIo::new(edge);
            match tokio::io::copy_bidirectional(&mut edge, &mut origin).await {
                Ok((to_origin, to_edge)) => {
                    tracing::debug!(to_origin, to_edge, "TCP stream ended");
                }
                Err(error) => tracing::debug!(%error, "TCP stream broke off"),
            }
        }
        .in_current_span(),
    );
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}
