//! The supervisor keeps `--connections` tunnel connections up, spread over the token's edge
//! addresses and moved back when a node returns ([`crate::rebalance`]): enrol when there is no
//! usable certificate, dial, reconnect with jittered exponential backoff, renew the certificate
//! before it expires, and on SIGTERM/SIGINT drain every connection within the grace period.
//! A deleted tunnel stops everything: retrying cannot help.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use postern_schema::error_chain;
use postern_schema::ids::TunnelId;
use postern_schema::wire::{self, Event};
use rand::RngExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::Instrument;

use crate::connection::{self, ConnectionError, Steering};
use crate::identity::{EnrollError, Identity, unix_now};
use crate::metrics::ConnectorMetrics;
use crate::orchestrator::Orchestrator;
use crate::origin::Origins;
use crate::rebalance;

/// First reconnect delay (before jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Longest reconnect delay.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// How long a renewal waits for the edge's certificate before trying again.
const RENEWAL_WAIT: Duration = Duration::from_secs(60);

/// Why the connector stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The tunnel no longer exists on the edge.
    #[error(
        "tunnel {0} was deleted on the edge, so this connector stops; create the tunnel again and run the connector with its new token"
    )]
    TunnelDeleted(TunnelId),
    /// Enrolment was refused for good (wrong secret, malformed request).
    #[error("cannot enrol")]
    Enroll(#[source] EnrollError),
}

/// What every connection of one connector process shares.
pub struct Connector {
    /// This process's id, the same on all its connections.
    pub id: String,
    /// Key, certificate, pinned CA.
    pub identity: Identity,
    /// The configuration pushed by the edge.
    pub orchestrator: Orchestrator,
    /// Pooled clients to origins.
    pub origins: Origins,
    /// Counters.
    pub metrics: Arc<ConnectorMetrics>,
    draining: CancellationToken,
    failed: CancellationToken,
    tunnel_deleted: AtomicBool,
    events: Mutex<HashMap<usize, mpsc::Sender<Bytes>>>,
    enrolling: tokio::sync::Mutex<()>,
    /// Keys of connections' event streams: one per dial, so that a connection moving to
    /// another edge node and its successor never share one.
    next_key: AtomicUsize,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("id", &self.id).finish()
    }
}

impl Connector {
    /// A connector with a fresh id.
    pub fn new(
        identity: Identity,
        orchestrator: Orchestrator,
        origins: Origins,
        metrics: Arc<ConnectorMetrics>,
        id: String,
    ) -> Self {
        Self {
            id,
            identity,
            orchestrator,
            origins,
            metrics,
            draining: CancellationToken::new(),
            failed: CancellationToken::new(),
            tunnel_deleted: AtomicBool::new(false),
            events: Mutex::new(HashMap::new()),
            enrolling: tokio::sync::Mutex::new(()),
            next_key: AtomicUsize::new(0),
        }
    }

    /// Is the connector shutting down?
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves once the connector starts shutting down.
    pub fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.draining.cancelled()
    }

    /// The edge said the tunnel was deleted: stop everything.
    pub fn fail_tunnel_deleted(&self) {
        if !self.tunnel_deleted.swap(true, Ordering::SeqCst) {
            tracing::error!(
                tunnel_id = %self.identity.token().tunnel_id,
                "the edge says this tunnel was deleted; the connector stops"
            );
        }
        self.failed.cancel();
    }

    /// Records the event stream of a registered connection.
    pub fn add_events(&self, index: usize, sender: mpsc::Sender<Bytes>) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(index, sender);
    }

    /// Forgets the event stream of a connection.
    pub fn remove_events(&self, index: usize) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index);
    }

    /// Sends `event` on one registered connection; `false` if there is none.
    async fn send_event_anywhere(&self, event: &Event) -> bool {
        let senders: Vec<mpsc::Sender<Bytes>> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut line = wire::to_json(event);
        line.push(b'\n');
        let line = Bytes::from(line);
        for sender in senders {
            if sender.send(line.clone()).await.is_ok() {
                return true;
            }
        }
        false
    }

    /// Enrols unless a usable certificate exists; one enrolment at a time.
    async fn ensure_enrolled(&self) -> Result<(), EnrollError> {
        let _one_at_a_time = self.enrolling.lock().await;
        if self.identity.credentials().is_some() {
            return Ok(());
        }
        tracing::info!(tunnel_id = %self.identity.token().tunnel_id, "enrolling with the edge");
        self.identity.enroll().await
    }
}

/// How long to run and how to stop.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Tunnel connections to keep up.
    pub connections: usize,
    /// How long in-flight requests may take to finish after a stop signal.
    pub grace_period: Duration,
}

/// Runs the connector until `shutdown` resolves (then drains: `Ok`) or the tunnel is deleted
/// or enrolment is refused for good (`Err`).
pub async fn run(
    connector: Arc<Connector>,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let tunnel = connector.identity.token().tunnel_id;

    // Enrol first, retrying what may pass.
    let mut backoff = Backoff::new();
    loop {
        let attempt = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            result = connector.ensure_enrolled() => result,
        };
        match attempt {
            Ok(()) => break,
            Err(error) if error.is_unknown_tunnel() => return Err(RunError::TunnelDeleted(tunnel)),
            Err(error) if error.is_permanent() => return Err(RunError::Enroll(error)),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %error_chain(&error), retry_in_ms = delay.as_millis() as u64, "enrolment failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    let mut tasks = JoinSet::new();
    for index in 0..options.connections.max(1) {
        let span = tracing::info_span!("connection", tunnel_id = %tunnel, index);
        tasks.spawn(keep_connected(connector.clone(), index).instrument(span));
    }
    let renewals = tokio::spawn(renew(connector.clone()));

    let result = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!(grace_period_s = options.grace_period.as_secs_f64(), "stopping: draining connections");
            connector.draining.cancel();
            let drained = tokio::time::timeout(options.grace_period, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!("the grace period is over; closing the remaining connections");
            }
            Ok(())
        }
        _ = connector.failed.cancelled() => Err(RunError::TunnelDeleted(tunnel)),
    };
    renewals.abort();
    tasks.abort_all();
    result
}

/// Keeps connection `index` up until the connector drains or fails: on its home address
/// among the token's edge addresses, or while home cannot be reached on the next one, moving
/// back once home accepts connections again ([`rebalance`]).
async fn keep_connected(connector: Arc<Connector>, index: usize) {
    let addresses = connector.identity.token().edge_addresses.clone();
    let home = rebalance::home_of(index, addresses.len());
    let probe = match rebalance::probe_config(&connector.identity.token().ca_sha256) {
        Ok(probe) => Some(probe),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "cannot probe edge addresses; connections will not move back to their own");
            None
        }
    };
    let mut backoff = Backoff::new();
    let mut attempt = 0usize;
    loop {
        if connector.is_draining() || connector.failed.is_cancelled() {
            return;
        }
        let slot = rebalance::slot_of(index, attempt, addresses.len());
        let mut address = addresses[slot].as_str();
        let result = match (&probe, addresses.get(home)) {
            (Some(probe), Some(home_address)) if slot != home => {
                match away_from_home(&connector, address, home_address, probe).await {
                    Away::Ended(result) => result,
                    Away::WentHome(result) => {
                        // The connection that ended is the one at home.
                        address = home_address;
                        attempt = 0;
                        result
                    }
                }
            }
            _ => try_once(&connector, address, &Steering::default()).await,
        };
        match result {
            Ok(outcome) => {
                if outcome.registered {
                    backoff.reset();
                }
                if outcome.edge_drain == Some(wire::DrainReason::TunnelDeleted) {
                    connector.fail_tunnel_deleted();
                    return;
                }
                if !connector.is_draining() {
                    tracing::info!(edge = %address, "tunnel connection closed; reconnecting");
                }
            }
            Err(Failure::Enroll(error)) => {
                if error.is_unknown_tunnel() {
                    connector.fail_tunnel_deleted();
                    return;
                }
                tracing::warn!(error = %error_chain(&error), "enrolment failed");
            }
            Err(Failure::Connection(ConnectionError::CertificateRejected { address })) => {
                tracing::warn!(edge = %address, "the edge refused this connector's certificate; enrolling again");
                connector.identity.invalidate();
            }
            Err(Failure::Connection(error)) => {
                tracing::warn!(error = %error_chain(&error), "tunnel connection failed");
            }
            Err(Failure::Tls(error)) => {
                tracing::error!(error = %error_chain(&error), "cannot configure TLS");
            }
        }
        if connector.is_draining() || connector.failed.is_cancelled() {
            return;
        }
        attempt += 1;
        connector.metrics.reconnect();
        let delay = backoff.next_delay();
        tracing::debug!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after a delay"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = connector.draining.cancelled() => return,
            _ = connector.failed.cancelled() => return,
        }
    }
}

/// How serving away from home ended.
enum Away {
    /// The connection away from home ended by itself (home was still unreachable).
    Ended(Result<connection::Outcome, Failure>),
    /// A connection at home took over (the one away drained), and has now ended too.
    WentHome(Result<connection::Outcome, Failure>),
}

/// Serves from `address` while `home` cannot be reached. Once a probe finds home again, a
/// connection to home is dialed, and only when the edge registered it does this one drain:
/// the tunnel keeps a registered connection on some node throughout the move.
async fn away_from_home(
    connector: &Arc<Connector>,
    address: &str,
    home: &str,
    probe: &Arc<rustls::ClientConfig>,
) -> Away {
    let steering = Steering::default();
    let here = try_once(connector, address, &steering);
    let moving = go_home(connector, home, probe, &steering.leave);
    tokio::pin!(here, moving);
    let mut here_done = false;
    loop {
        tokio::select! {
            result = &mut here, if !here_done => {
                if !steering.leave.is_cancelled() {
                    return Away::Ended(result);
                }
                tracing::info!(edge = %address, "drained the connection away from home");
                here_done = true;
            }
            result = &mut moving => return Away::WentHome(result),
        }
    }
}

/// Probes `home` until it accepts connections, dials it, and once the edge registered that
/// connection fires `leave` (the connection away from home drains); then serves it until it
/// ends. A dial that ends before it is registered goes back to probing.
async fn go_home(
    connector: &Arc<Connector>,
    home: &str,
    probe: &Arc<rustls::ClientConfig>,
    leave: &CancellationToken,
) -> Result<connection::Outcome, Failure> {
    loop {
        rebalance::wait_until_reachable(home, probe).await;
        let steering = Steering::default();
        let dial = try_once(connector, home, &steering);
        tokio::pin!(dial);
        tokio::select! {
            result = &mut dial => {
                let error = result.err().map(|e| e.describe()).unwrap_or_default();
                tracing::debug!(edge = %home, %error, "the connection home ended before it was registered");
                continue;
            }
            _ = steering.registered.cancelled() => {}
        }
        // Give the edge nodes time to learn that the tunnel has a connection at home before
        // the node away from home loses its own.
        tokio::select! {
            result = &mut dial => {
                let error = result.err().map(|e| e.describe()).unwrap_or_default();
                tracing::debug!(edge = %home, %error, "the connection home ended during the handover");
                continue;
            }
            _ = tokio::time::sleep(rebalance::HANDOVER) => {}
        }
        tracing::info!(edge = %home, "back on this connection's own edge node; draining the one away from it");
        leave.cancel();
        return dial.await;
    }
}

enum Failure {
    Enroll(EnrollError),
    Connection(ConnectionError),
    Tls(crate::tls::TlsConfigError),
}

impl Failure {
    /// The failure and its causes on one line, for logs.
    fn describe(&self) -> String {
        match self {
            Failure::Enroll(error) => error_chain(error),
            Failure::Connection(error) => error_chain(error),
            Failure::Tls(error) => error_chain(error),
        }
    }
}

/// One connection to `address`, under a key of its own.
async fn try_once(
    connector: &Arc<Connector>,
    address: &str,
    steering: &Steering,
) -> Result<connection::Outcome, Failure> {
    let index = connector.next_key.fetch_add(1, Ordering::Relaxed);
    connector.ensure_enrolled().await.map_err(Failure::Enroll)?;
    let Some(tls) = connector.identity.tunnel_config().map_err(Failure::Tls)? else {
        // The certificate expired between the check and now; the next attempt enrols.
        return Err(Failure::Connection(ConnectionError::CertificateRejected {
            address: address.to_string(),
        }));
    };
    connection::run(connector.clone(), index, address, tls, steering)
        .await
        .map_err(Failure::Connection)
}

/// Renews the client certificate two thirds into its validity, over a live connection.
async fn renew(connector: Arc<Connector>) {
    loop {
        let wait = match connector.identity.renew_at() {
            Some(at) => Duration::from_secs(at.saturating_sub(unix_now()).max(0) as u64),
            None => Duration::from_secs(30),
        };
        tokio::time::sleep(wait).await;
        if connector
            .identity
            .renew_at()
            .is_none_or(|at| at > unix_now())
        {
            continue;
        }
        let mut renewals = connector.identity.watch_renewals();
        let csr = match connector.identity.csr_der() {
            Ok(csr) => csr,
            Err(error) => {
                tracing::warn!(%error, "cannot make a renewal request");
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        };
        let event = Event::Renew {
            csr_der: wire::encode_der(&csr),
        };
        if connector.send_event_anywhere(&event).await {
            tracing::info!("asked the edge to renew the client certificate");
            if tokio::time::timeout(RENEWAL_WAIT, renewals.changed())
                .await
                .is_ok()
            {
                continue;
            }
            tracing::warn!("the edge did not renew the certificate in time; trying again");
            tokio::time::sleep(Duration::from_secs(30)).await;
        } else {
            // No registered connection right now; one will come, or expiry leads to enrolment.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Jittered exponential backoff: the first delay is at most 100 ms, each next one up to
/// twice as long, never more than 10 s.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Starts at the shortest delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to the shortest delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: between half and all of `min(cap, base * 2^attempt)`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(BACKOFF_CAP);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_small_grows_and_is_capped() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(50));
        let second = backoff.next_delay();
        assert!(second <= Duration::from_millis(200));
        let mut previous_ceiling = Duration::from_millis(200);
        for attempt in 2..40 {
            let delay = backoff.next_delay();
            let ceiling = (previous_ceiling * 2).min(Duration::from_secs(10));
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
            previous_ceiling = ceiling;
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
