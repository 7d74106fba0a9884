//! One authenticated tunnel connection, seen from the edge. The edge is the HTTP/2 *client*:
//! it says hello, opens the connector's event stream, pushes the tunnel's configuration (and
//! every change to it), and only then registers the session so the proxy may open visitor
//! streams on it. It ends the session when the connection dies (keep-alive pings notice a
//! dead peer within seconds), when the tunnel is deleted (revocation), or when the edge
//! shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use postern_schema::api::Connection;
use postern_schema::error_chain;
use postern_schema::ids::TunnelId;
use postern_schema::wire::{
    self, CERTIFICATE_PATH, CONFIG_PATH, CONTROL_AUTHORITY, CertificateGrant, ConfigAck,
    ConfigPush, DRAIN_PATH, Drain, DrainReason, EVENTS_PATH, Event, HELLO_PATH, Hello, HelloAnswer,
    WireError, tuning,
};
use postern_workers::MovableStream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::{Push, PushState, hostnames_for};
use super::context::TunnelContext;
use super::registry::{Placement, Session};
use crate::body::{self, BoxBody, BoxError};
use crate::catalog::Snapshot;
use crate::metrics::{CONFIG_PUSH_BYTES, CONFIG_PUSHES, Metrics};

/// How long a control request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the edge waits to tell a revoked connector why before closing (the whole
/// revocation must fit in one second).
const REVOKE_NOTICE_TIMEOUT: Duration = Duration::from_millis(400);

/// How long the edge waits, when shutting down, for a connector to finish in-flight streams
/// and close.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(8);

/// Renewals one session may ask for at once (connectors ask once, at two thirds of their
/// certificate's life).
const RENEWAL_BURST: f64 = 2.0;

/// How often a session earns another renewal: a flood of renewal requests (each a new valid
/// certificate, and a signature's work) gets this many and no more.
const RENEWAL_EVERY: Duration = Duration::from_secs(600);

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The HTTP/2 handshake over the TLS connection failed.
    #[error("the HTTP/2 handshake failed")]
    Handshake(#[source] hyper::Error),
    /// A control request could not be sent or answered.
    #[error("control request {path} failed")]
    Transport {
        /// The request.
        path: &'static str,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
    /// The connector answered a control request with an error status.
    #[error("control request {path} was answered with status {status}")]
    Status {
        /// The request.
        path: &'static str,
        /// The status.
        status: u16,
    },
    /// The connector did not answer in time.
    #[error("control request {path} timed out")]
    Timeout {
        /// The request.
        path: &'static str,
    },
    /// The answer could not be read.
    #[error("the answer to {path} could not be read")]
    Body {
        /// The request.
        path: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The answer is not the message the protocol says.
    #[error("the answer to {path} is malformed")]
    Malformed {
        /// The request.
        path: &'static str,
        /// Why.
        #[source]
        source: WireError,
    },
}

/// Runs the session of one authenticated connection of `tunnel` until it ends, on the worker
/// of `placement` (which counts it there until the session is registered).
pub(crate) async fn run(
    stream: TlsStream<MovableStream>,
    peer: SocketAddr,
    tunnel: TunnelId,
    context: TunnelContext,
    placement: Placement,
    cancel: CancellationToken,
) {
    let connection_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "session",
        tunnel_id = %tunnel,
        peer_addr = %peer,
        connection_id = %connection_id,
        config_version = tracing::field::Empty,
    );
    async move {
        let handshake = http2::Builder::new(postern_heap::BoxingExecutor)
            .timer(TokioTimer::new())
            .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
            .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
            .initial_stream_window_size(tuning::STREAM_WINDOW)
            .initial_connection_window_size(tuning::CONNECTION_WINDOW)
            .max_frame_size(tuning::MAX_FRAME)
            .max_send_buf_size(tuning::MAX_SEND_BUFFER)
            .handshake::<_, BoxBody>(TokioIo::new(stream))
            .await;
        let (sender, connection) = match handshake {
            Ok(pair) => pair,
            Err(error) => {
                let error = SessionError::Handshake(error);
                tracing::info!(error = %error_chain(&error), "tunnel session failed");
                return;
            }
        };
        // Drives the connection until it ends or `close` is cancelled (which drops it).
        let close = CancellationToken::new();
        let ended = CancellationToken::new();
        tokio::spawn(
            {
                let close = close.clone();
                let ended = ended.clone();
                async move {
                    tokio::select! {
                        result = connection => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "tunnel connection ended with an error");
                            }
                        }
                        _ = close.cancelled() => {}
                    }
                    ended.cancel();
                }
            }
            .in_current_span(),
        );
        let live = Live {
            tunnel,
            peer,
            connection_id,
            sender,
            close: close.clone(),
            ended,
        };
        if let Err(error) = live.serve(&context, placement, &cancel).await {
            tracing::info!(error = %error_chain(&error), "tunnel session failed");
            context.metrics.inc(
                "postern_edge_tunnel_sessions_total",
                &[("outcome", "failed")],
            );
        }
        close.cancel();
    }
    .instrument(span)
    .await;
}

/// A connection whose HTTP/2 handshake is done.
struct Live {
    tunnel: TunnelId,
    peer: SocketAddr,
    connection_id: String,
    sender: SendRequest<BoxBody>,
    close: CancellationToken,
    ended: CancellationToken,
}

impl Live {
    async fn serve(
        self,
        context: &TunnelContext,
        placement: Placement,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        // Subscribe before reading, so no catalog change slips between the two.
        let mut snapshots = context.catalog.subscribe();
        let snapshot = snapshots.borrow_and_update().clone();
        let (Some(record), Some(hostnames)) = (
            snapshot.tunnels.get(&self.tunnel),
            hostnames_for(&snapshot, self.tunnel),
        ) else {
            // A valid certificate of a deleted tunnel: say why, then close.
            tracing::info!("refused a connector whose tunnel was deleted");
            context.metrics.inc(
                "postern_edge_tunnel_sessions_total",
                &[("outcome", "revoked")],
            );
            self.notify_drain(DrainReason::TunnelDeleted, REVOKE_NOTICE_TIMEOUT)
                .await;
            return Ok(());
        };

        let hello = Hello {
            connection_id: self.connection_id.clone(),
            tunnel_id: self.tunnel,
            tunnel_name: record.spec.name.clone(),
            edge_version: env!("CARGO_PKG_VERSION").to_string(),
            wanted_connections: u32::try_from(context.workers.len()).unwrap_or(u32::MAX),
        };
        let answer: HelloAnswer = control(&self.sender, HELLO_PATH, &hello).await?;
        // The connector id and version are shown by the API and logged: bounded, printable.
        answer.check().map_err(|source| SessionError::Malformed {
            path: HELLO_PATH,
            source,
        })?;
        let (events_tx, mut events) = mpsc::channel(16);
        self.open_events(events_tx).await?;

        let info = Connection {
            id: self.connection_id.clone(),
            connector_id: answer.connector_id.clone(),
            address: self.peer.to_string(),
            since: now_rfc3339(),
            version: answer.version.clone(),
            config_version: 0,
            draining: false,
            edge: String::new(),
        };
        let session = Arc::new(Session::new(
            self.sender.clone(),
            info,
            &placement,
            self.close.clone(),
        ));
        if answer.draining {
            session.set_draining();
        }
        let mut pushes = PushState::new(answer.deltas);
        if let Some(push) = pushes.next(&snapshot, self.tunnel, hostnames) {
            push_config(&session, &context.metrics, push).await?;
        }
        session.set_seen_revision(snapshot.revision);
        context.registry.add(session.clone());
        drop(placement);
        context.metrics.inc(
            "postern_edge_tunnel_sessions_total",
            &[("outcome", "accepted")],
        );
        tracing::info!(connector_id = %answer.connector_id, version = %answer.version, "connector connected");

        let result = self
            .watch(
                context,
                cancel,
                &session,
                &mut pushes,
                &mut snapshots,
                &mut events,
            )
            .await;
        context
            .registry
            .leave(&session, context.catalog.snapshot().revision);
        result
    }

    /// Follows the session until it ends: catalog changes (config pushes, revocation), the
    /// connector's events, and edge shutdown.
    async fn watch(
        &self,
        context: &TunnelContext,
        cancel: &CancellationToken,
        session: &Arc<Session>,
        pushes: &mut PushState,
        snapshots: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
        events: &mut mpsc::Receiver<Event>,
    ) -> Result<(), SessionError> {
        let mut events_open = true;
        let mut drain_confirmed = false;
        let mut renewals = Renewals::new();
        loop {
            tokio::select! {
                _ = self.ended.cancelled() => {
                    tracing::info!("connector disconnected");
                    return Ok(());
                }
                _ = cancel.cancelled() => {
                    session.set_draining();
                    self.notify_drain(DrainReason::EdgeShutdown, CONTROL_TIMEOUT).await;
                    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, self.ended.cancelled()).await;
                    return Ok(());
                }
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    match hostnames_for(&snapshot, self.tunnel) {
                        None => {
                            // Revocation: stop routing at once, tell the connector, close.
                            context.registry.remove(self.tunnel, &session.id);
                            tracing::info!("tunnel deleted: closing its connection");
                            self.notify_drain(DrainReason::TunnelDeleted, REVOKE_NOTICE_TIMEOUT).await;
                            return Ok(());
                        }
                        Some(hostnames) => {
                            if let Some(push) = pushes.next(&snapshot, self.tunnel, hostnames) {
                                push_config(session, &context.metrics, push).await?;
                            }
                            session.set_seen_revision(snapshot.revision);
                        }
                    }
                }
                event = events.recv(), if events_open => match event {
                    // One confirmation per session, however often the connector says it.
                    Some(Event::Draining) if !drain_confirmed => {
                        drain_confirmed = true;
                        tracing::info!("connector is draining: no new requests go to this connection");
                        session.set_draining();
                        let sender = self.sender.clone();
                        tokio::spawn(async move {
                            let drain = Drain { reason: DrainReason::ConnectorDraining };
                            if let Err(error) = control::<_, serde_json::Value>(&sender, DRAIN_PATH, &drain).await {
                                tracing::debug!(error = %error_chain(&error), "drain acknowledgement failed");
                            }
                        }.in_current_span());
                    }
                    Some(Event::Draining) => {}
                    Some(Event::Renew { csr_der }) => match renewals.begin() {
                        Some(renewal) => {
                            let renew = renew(context.clone(), self.tunnel, self.sender.clone(), csr_der);
                            tokio::spawn(async move {
                                renew.await;
                                drop(renewal);
                            }.in_current_span());
                        }
                        None => {
                            context.metrics.inc(
                                "postern_edge_certificate_renewals_total",
                                &[("outcome", "refused")],
                            );
                            if renewals.warn_once() {
                                tracing::warn!("refused a renewal request: this connection asks for renewals faster than a connector does");
                            }
                        }
                    },
                    Some(Event::OriginHealth { unhealthy }) => {
                        if unhealthy.is_empty() {
                            tracing::debug!("the connector finds its origins healthy");
                        } else {
                            tracing::debug!(?unhealthy, "the connector finds origins unhealthy");
                        }
                        session.set_unhealthy_origins(unhealthy);
                    }
                    None => events_open = false,
                },
            }
        }
    }

    /// Opens the connector's event stream and reads it in the background into `events`.
    async fn open_events(&self, events: mpsc::Sender<Event>) -> Result<(), SessionError> {
        let path = EVENTS_PATH;
        let request = control_request(path, &serde_json::json!({}));
        let mut sender = self.sender.clone();
        let response = tokio::time::timeout(CONTROL_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| SessionError::Timeout { path })?
            .map_err(|source| SessionError::Transport { path, source })?;
        if !response.status().is_success() {
            return Err(SessionError::Status {
                path,
                status: response.status().as_u16(),
            });
        }
        tokio::spawn(read_events(response.into_body(), events).in_current_span());
        Ok(())
    }

    /// Tells the connector to drain this connection, waiting at most `timeout` for its answer.
    async fn notify_drain(&self, reason: DrainReason, timeout: Duration) {
        let drain = Drain { reason };
        let call = control::<_, serde_json::Value>(&self.sender, DRAIN_PATH, &drain);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(error = %error_chain(&error), "drain notice failed")
            }
            Err(_) => tracing::debug!("drain notice timed out"),
        }
    }
}

/// The renewals one session may ask for: one at a time, [`RENEWAL_BURST`] at once and one
/// more every [`RENEWAL_EVERY`].
struct Renewals {
    tokens: f64,
    updated: std::time::Instant,
    in_flight: Arc<std::sync::atomic::AtomicBool>,
    warned: bool,
}

/// A renewal in progress, until dropped.
struct Renewal(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Renewals {
    fn new() -> Self {
        Self {
            tokens: RENEWAL_BURST,
            updated: std::time::Instant::now(),
            in_flight: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            warned: false,
        }
    }

    /// A renewal may start now: none is in progress and the budget has one.
    fn begin(&mut self) -> Option<Renewal> {
        let now = std::time::Instant::now();
        let earned = now.duration_since(self.updated).as_secs_f64() / RENEWAL_EVERY.as_secs_f64();
        self.tokens = (self.tokens + earned).min(RENEWAL_BURST);
        self.updated = now;
        if self.tokens < 1.0
            || self
                .in_flight
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.tokens -= 1.0;
        Some(Renewal(self.in_flight.clone()))
    }

    /// `true` the first time only: a session's refusals are warned about once.
    fn warn_once(&mut self) -> bool {
        !std::mem::replace(&mut self.warned, true)
    }
}

/// Pushes `push` and records what the connector acknowledged; a delta the connector did not
/// apply (it serves another version than the delta's base) is followed by the snapshot.
async fn push_config(session: &Session, metrics: &Metrics, push: Push) -> Result<(), SessionError> {
    let version = push.message.version;
    session.set_pushed_version(version);
    let mut ack = send_config(session, metrics, &push.message).await?;
    if ack.applied_version < version && push.message.base.is_some() {
        tracing::debug!(
            served = ack.applied_version,
            "the connector did not apply a delta; sending the whole configuration"
        );
        ack = send_config(session, metrics, &push.snapshot()).await?;
    }
    session.set_acked_version(ack.applied_version);
    tracing::Span::current().record("config_version", ack.applied_version);
    tracing::info!(
        config_version = ack.applied_version,
        hostnames = push.hostnames.len(),
        changed = push.message.hostnames.len() + push.message.removed.len(),
        "connector applied its configuration"
    );
    if ack.applied_version >= version {
        let refused = ack.checked_refusals(&push.hostnames);
        for refusal in &refused {
            tracing::warn!(
                hostname = %refusal.hostname,
                reason = %refusal.reason,
                "the connector refuses to serve a hostname"
            );
        }
        // Each refusal is kept with the configuration refused, so that it only counts while
        // that is still what the tunnel needs.
        let refused: Vec<_> = refused
            .into_iter()
            .filter_map(|refusal| {
                let config = push
                    .hostnames
                    .iter()
                    .find(|h| h.hostname == refusal.hostname)?;
                Some((config.clone(), refusal))
            })
            .collect();
        let mut served = push.hostnames;
        served.retain(|h| {
            !refused
                .iter()
                .any(|(config, _)| config.hostname == h.hostname)
        });
        session.set_applied(served, refused);
    }
    Ok(())
}

/// Sends one configuration message, counting its bytes.
async fn send_config(
    session: &Session,
    metrics: &Metrics,
    message: &ConfigPush,
) -> Result<ConfigAck, SessionError> {
    let body = wire::to_json(message);
    let kind = if message.base.is_some() {
        "delta"
    } else {
        "snapshot"
    };
    metrics.inc(CONFIG_PUSHES, &[("kind", kind)]);
    metrics.add(CONFIG_PUSH_BYTES, &[("kind", kind)], body.len() as u64);
    control_raw(&session.sender(), CONFIG_PATH, body).await
}

/// Signs a renewal CSR for the session's tunnel (if it still exists) and hands the
/// certificate to the connector.
async fn renew(
    context: TunnelContext,
    tunnel: TunnelId,
    sender: SendRequest<BoxBody>,
    csr_der: String,
) {
    if !context.catalog.snapshot().tunnels.contains_key(&tunnel) {
        return;
    }
    let csr = match wire::decode_der(&csr_der, "csr_der") {
        Ok(csr) => csr,
        Err(error) => {
            tracing::warn!(%error, "malformed renewal request");
            return;
        }
    };
    let cert = match context
        .ca
        .sign_tunnel_csr(&csr, tunnel, context.settings.client_cert_lifetime)
    {
        Ok(cert) => cert,
        Err(error) => {
            tracing::warn!(%error, "cannot sign the renewal request");
            return;
        }
    };
    let grant = CertificateGrant {
        cert_der: wire::encode_der(cert.as_ref()),
        ca_der: wire::encode_der(context.ca.cert_der().as_ref()),
    };
    match control::<_, serde_json::Value>(&sender, CERTIFICATE_PATH, &grant).await {
        Ok(_) => tracing::info!("renewed the connector's client certificate"),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "cannot deliver the renewed certificate")
        }
    }
}

/// Reads newline-delimited events from the connector's event stream.
async fn read_events(mut body: Incoming, events: mpsc::Sender<Event>) {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(end + 1);
            match wire::from_json::<Event>(&line[..end]) {
                Ok(event) => {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "ignored a malformed connector event"),
            }
        }
        if buffer.len() > wire::MAX_EVENT_LINE {
            tracing::warn!("connector event too long; no longer reading events");
            return;
        }
    }
}

/// A control request: `POST https://_postern/.postern/...` with a JSON body.
fn control_request<T: Serialize>(path: &'static str, body: &T) -> Request<BoxBody> {
    raw_request(path, wire::to_json(body))
}

/// [`control_request`] of a body already in JSON.
fn raw_request(path: &'static str, body: Vec<u8>) -> Request<BoxBody> {
    let mut request = Request::new(body::full(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::builder()
        .scheme("https")
        .authority(CONTROL_AUTHORITY)
        .path_and_query(path)
        .build()
        .unwrap_or_default();
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    request
}

/// Sends a control request and decodes the answer.
async fn control<Req: Serialize, Ans: DeserializeOwned>(
    sender: &SendRequest<BoxBody>,
    path: &'static str,
    body: &Req,
) -> Result<Ans, SessionError> {
    control_raw(sender, path, wire::to_json(body)).await
}

/// [`control`] with a body already in JSON.
async fn control_raw<Ans: DeserializeOwned>(
    sender: &SendRequest<BoxBody>,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Ans, SessionError> {
    let request = raw_request(path, body);
    let call = async {
        let mut sender = sender.clone();
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| SessionError::Transport { path, source })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SessionError::Status {
                path,
                status: status.as_u16(),
            });
        }
        let bytes = Limited::new(response.into_body(), wire::MAX_CONTROL_BODY)
            .collect()
            .await
            .map_err(|source| SessionError::Body { path, source })?
            .to_bytes();
        wire::from_json(&bytes).map_err(|source| SessionError::Malformed { path, source })
    };
    tokio::time::timeout(CONTROL_TIMEOUT, call)
        .await
        .map_err(|_| SessionError::Timeout { path })?
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_flood_gets_the_burst_one_at_a_time() {
        let mut renewals = Renewals::new();
        let first = renewals.begin().expect("the first renewal");
        assert!(renewals.begin().is_none(), "one at a time");
        drop(first);
        let second = renewals.begin().expect("the second renewal");
        drop(second);
        assert!(renewals.begin().is_none(), "the burst is spent");
        assert!(renewals.warn_once());
        assert!(!renewals.warn_once());
    }
}
