//! Active origin health checks (`origin.health_check`): the connector sends `GET path` to each
//! probed origin every `interval`; `unhealthy_after` failed probes in a row (an error, no answer
//! within `timeout`, or a 5xx) make it unhealthy, one success healthy again. Every change, and
//! every round while an origin stays unhealthy, goes to the edge on each registered
//! connection's event stream ([`Event::OriginHealth`]), which routes around this connector for
//! that service.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::connector::Connector;
use crate::orchestrator::Probe;

/// Probes the origins of the current configuration, starting over with each new one.
pub(crate) async fn run(connector: Arc<Connector>) {
    let mut routing = connector.orchestrator.watch();
    loop {
        let current = routing.borrow_and_update().clone();
        connector.forget_origins_except(|service| current.probes.iter().any(|p| p.text == service));
        let mut probes = JoinSet::new();
        for probe in current.probes.iter().cloned() {
            probes.spawn(watch_origin(connector.clone(), probe));
        }
        if routing.changed().await.is_err() {
            return;
        }
        probes.abort_all();
    }
}

/// Probes one origin until aborted.
async fn watch_origin(connector: Arc<Connector>, probe: Probe) {
    let mut failures = 0u32;
    let mut ticks = tokio::time::interval(probe.check.interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = connector
            .origins
            .probe(
                &probe.ingress,
                &probe.service,
                probe.check.path(),
                probe.check.timeout(),
            )
            .await;
        match outcome {
            Ok(()) => {
                failures = 0;
                connector.note_origin_health(&probe.text, None);
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                tracing::debug!(service = %probe.text, %reason, failures, "origin health probe failed");
                if failures >= probe.check.unhealthy_after() {
                    connector.note_origin_health(&probe.text, Some(&reason));
                }
            }
        }
    }
}
