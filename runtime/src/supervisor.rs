//! The supervisor keeps `--connections` tunnel connections up, spread over the token's edge
//! addresses and moved back when a node returns ([`crate::rebalance`]): enrol when there is no
//! usable certificate, dial, reconnect with jittered exponential backoff, renew the certificate
//! before it expires, and on SIGTERM/SIGINT drain every connection within the grace period.
//! A deleted tunnel stops everything: retrying cannot help.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use postern_schema::error_chain;
use postern_schema::ids::TunnelId;
use postern_schema::wire::{self, Event};
use rand::RngExt;
use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::{self, ConnectionError, Outcome, Steering};
use crate::connector::Connector;
use crate::identity::{EnrolError, unix_now};
use crate::rebalance;
use crate::tls::TlsConfigError;

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
    Enrol(#[source] EnrolError),
}

/// The most connections a connector keeps, whatever an edge asks for.
const MAX_CONNECTIONS: usize = 32;

/// How many connections to keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// Exactly this many (`--connections`).
    Fixed(usize),
    /// At least this many, and as many as an edge node asks for in its hello (one per edge
    /// worker, so that every worker serves the tunnel on a connection of its own), up to 32.
    AsTheEdgeAsks(usize),
}

/// How to run and how to stop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tunnel connections to keep up.
    pub connections: Connections,
    /// How long in-flight requests may take to finish after a stop signal.
    pub grace_period: Duration,
    /// The workers' runtimes: connection `index` (and every stream served on it, and its
    /// origin connections) runs on worker `index mod workers`.
    pub workers: Arc<[Handle]>,
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
            Err(error) if error.is_permanent() => return Err(RunError::Enrol(error)),
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
    let mut running = 0;
    let (first, grows) = match options.connections {
        Connections::Fixed(count) => (count.max(1), false),
        Connections::AsTheEdgeAsks(count) => (count.clamp(1, MAX_CONNECTIONS), true),
    };
    open_connections(
        &connector,
        &options.workers,
        &mut tasks,
        &mut running,
        first,
    );
    let renewals = tokio::spawn(renew(connector.clone()));
    let health_checks = tokio::spawn(crate::health::run(connector.clone()));
    let mut wanted = connector.wanted_connections();

    let result = loop {
        tokio::select! {
            changed = wanted.changed(), if grows => {
                if changed.is_ok() {
                    let asked = (*wanted.borrow_and_update()).min(MAX_CONNECTIONS);
                    if asked > running {
                        tracing::info!(connections = asked, "the edge asks for more connections; opening them");
                        open_connections(&connector, &options.workers, &mut tasks, &mut running, asked);
                    }
                }
            }
            _ = &mut shutdown => {
                tracing::info!(grace_period_s = options.grace_period.as_secs_f64(), "stopping: draining connections");
                connector.start_draining();
                let drained = tokio::time::timeout(options.grace_period, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::warn!("the grace period is over; closing the remaining connections");
                }
                break Ok(());
            }
            _ = connector.failed() => break Err(RunError::TunnelDeleted(tunnel)),
        }
    };
    renewals.abort();
    health_checks.abort();
    tasks.abort_all();
    result
}

/// Starts connections `running..up_to`, each on its worker, and counts them in `running`.
fn open_connections(
    connector: &Arc<Connector>,
    workers: &[Handle],
    tasks: &mut JoinSet<()>,
    running: &mut usize,
    up_to: usize,
) {
    let tunnel = connector.identity.token().tunnel_id;
    while *running < up_to {
        let index = *running;
        let span = tracing::info_span!("connection", tunnel_id = %tunnel, index);
        let connection = keep_connected(connector.clone(), index).instrument(span);
        match workers.get(index % workers.len().max(1)) {
            Some(worker) => tasks.spawn_on(connection, worker),
            None => tasks.spawn(connection),
        };
        *running += 1;
    }
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
        if connector.is_draining() || connector.has_failed() {
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
            Err(Failure::Enrol(error)) => {
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
        if connector.is_draining() || connector.has_failed() {
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
            _ = connector.draining() => return,
            _ = connector.failed() => return,
        }
    }
}

/// How serving away from home ended.
enum Away {
    /// The connection away from home ended by itself (home was still unreachable).
    Ended(Result<Outcome, Failure>),
    /// A connection at home took over (the one away drained), and has now ended too.
    WentHome(Result<Outcome, Failure>),
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
) -> Result<Outcome, Failure> {
    loop {
        rebalance::wait_until_reachable(&connector.egress, home, probe).await;
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

/// Why one connection attempt failed.
enum Failure {
    Enrol(EnrolError),
    Connection(ConnectionError),
    Tls(TlsConfigError),
}

impl Failure {
    /// The failure and its causes on one line, for logs.
    fn describe(&self) -> String {
        match self {
            Failure::Enrol(error) => error_chain(error),
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
) -> Result<Outcome, Failure> {
    let key = connector.next_connection_key();
    connector.ensure_enrolled().await.map_err(Failure::Enrol)?;
    let Some(tls) = connector.identity.tunnel_config().map_err(Failure::Tls)? else {
        // The certificate expired between the check and now; the next attempt enrols.
        return Err(Failure::Connection(ConnectionError::CertificateRejected {
            address: address.to_string(),
        }));
    };
    connection::run(connector.clone(), key, address, tls, steering)
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
struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Starts at the shortest delay.
    fn new() -> Self {
        Self::default()
    }

    /// Back to the shortest delay (after a connection that worked).
    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: between half and all of `min(cap, base * 2^attempt)`.
    fn next_delay(&mut self) -> Duration {
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
