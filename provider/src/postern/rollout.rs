//! Applied means in effect: after a write, the provider waits until every live connector the
//! write affects has acknowledged the new configuration (the edge's `GET /v1/rollout`), for at
//! most the provider's `rollout_timeout`. On timeout the apply fails with a diagnostic that
//! names the connectors still on the old version; connectors that left before acknowledging
//! the change (the edge's `departed`) are named in a warning.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postern_schema::api::{ErrorCode, PendingConnection, Rollout, RolloutScope};

use postern_schema::client::Client;

use super::provider_data::ProviderData;
use crate::framework::Diagnostics;

/// How long a write waits for the connectors when `rollout_timeout` is not set.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the other connectors may take to answer once one refused a change, so that the
/// error names every one that refuses it.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// The first pause between two questions to the edge; it grows to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);

/// The longest pause between two questions to the edge.
const MAX_POLL: Duration = Duration::from_millis(250);

/// The least time one question to the edge is given, however close the deadline.
const MIN_QUESTION: Duration = Duration::from_millis(500);

/// What a write touched, for the rollout question and the diagnostic.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// The part of the configuration the write changed.
    scope: RolloutScope,
    /// What was written, e.g. `hostname "app.example.com"`.
    subject: String,
}

impl Change {
    /// A write of what `scope` names: a tunnel (everything it serves, as its labels decide
    /// which routed hostnames it serves), a hostname, or a policy (the hostnames that use it).
    pub(crate) fn new(scope: RolloutScope) -> Self {
        let subject = match &scope {
            RolloutScope::All => "configuration".to_owned(),
            RolloutScope::Tunnel(id) => format!("tunnel {id}"),
            RolloutScope::Hostname(name) => format!("hostname {name:?}"),
            RolloutScope::Policy(id) => format!("policy {id}"),
        };
        Self { scope, subject }
    }
}

/// Waits until the connectors applied the writes made through `client` (one made with
/// [`Client::tracking_revisions`]), at most the provider's `rollout_timeout`. On timeout adds an error
/// naming the connectors that did not; when the edge cannot say, a warning.
pub(crate) async fn wait(
    data: &ProviderData,
    client: &Client,
    change: Change,
    diagnostics: &mut Diagnostics,
) {
    let timeout = data.rollout_timeout;
    let Some(revision) = client.revision() else {
        return;
    };
    if timeout.is_zero() {
        return;
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = FIRST_POLL;
    let mut first_refusal: Option<Instant> = None;
    let last: Result<Rollout, String> = loop {
        // One question may not outlast the timeout by much, even if the edge hangs.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_QUESTION);
        let Ok(answer) =
            tokio::time::timeout(budget, client.rollout(Some(revision), &change.scope)).await
        else {
            // The budget covered the rest of the timeout: it is over.
            break Err(format!(
                "the edge gave no answer within {}",
                format_duration(budget)
            ));
        };
        match &answer {
            Ok(rollout) if rollout.complete => {
                tracing::debug!(
                    revision,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    departed = rollout.departed.len(),
                    "every connector still connected applied the change"
                );
                if !rollout.departed.is_empty() {
                    diagnostics.warning(
                        "Connectors left before applying the change",
                        departed_detail(&change, revision, &rollout.departed),
                    );
                }
                return;
            }
            Ok(rollout) if rollout.pending.iter().any(|p| !p.refused.is_empty()) => {
                // A connector said no: waiting longer will not change its mind. The others
                // get a moment to answer too, so that the error names every one that refused.
                let first = *first_refusal.get_or_insert_with(Instant::now);
                if rollout.pending.iter().all(|p| !p.refused.is_empty())
                    || first.elapsed() >= REFUSAL_GRACE
                {
                    diagnostics.error(
                        "A connector refused the change",
                        refusal_detail(&change, revision, rollout),
                    );
                    return;
                }
            }
            Err(error) if error.code() == Some(ErrorCode::NotFound) => {
                diagnostics.warning(
                    "Cannot confirm that connectors applied the change",
                    format!(
                        "The edge at {} does not answer GET /v1/rollout (an older edge?), so \
                         Terraform cannot wait until every connector serves the new {}. Set the \
                         provider's `rollout_timeout = \"0s\"` to skip the check.",
                        client.endpoint(),
                        change.subject
                    ),
                );
                return;
            }
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            break answer.map_err(|e| e.to_string());
        }
        let nap = pause.min(deadline - now);
        tokio::select! {
            _ = data.stop.cancelled() => {
                diagnostics.warning(
                    "Stopped waiting for connectors",
                    format!(
                        "Terraform was interrupted while waiting for the connectors to apply the \
                         new {}; the edge has it, but some connectors may still serve the old \
                         configuration.",
                        change.subject
                    ),
                );
                return;
            }
            _ = tokio::time::sleep(nap) => {}
        }
        pause = (pause * 3 / 2).min(MAX_POLL);
    };
    match last {
        Ok(rollout) => diagnostics.error(
            format!(
                "Connectors did not apply the change within {}",
                format_duration(timeout)
            ),
            timeout_detail(&change, revision, &rollout, timeout),
        ),
        Err(error) => diagnostics.warning(
            "Cannot confirm that connectors applied the change",
            format!(
                "The edge stored the new {}, but asking it whether every connector applied it \
                 failed: {error}. Check the connectors with GET /v1/tunnels/{{id}}/connections.",
                change.subject
            ),
        ),
    }
}

/// The detail of a timeout: what was written and, per connector, where it runs and which
/// version it is on.
fn timeout_detail(change: &Change, revision: u64, rollout: &Rollout, timeout: Duration) -> String {
    let mut text = format!(
        "The edge stored the new {} (revision {revision}), but after {} ",
        change.subject,
        format_duration(timeout)
    );
    if rollout.catalog_revision < revision {
        text.push_str(&format!(
            "the edge's routing still serves revision {} and has not caught up with it.",
            rollout.catalog_revision
        ));
    } else {
        text.push_str(
            "these connectors have not acknowledged it, so they may still serve the old \
             configuration:\n",
        );
        for line in connector_lines(&rollout.pending) {
            text.push_str(&format!("  - {line}\n"));
        }
        if !rollout.departed.is_empty() {
            text.push_str("and these left before acknowledging it:\n");
            for line in connector_lines(&rollout.departed) {
                text.push_str(&format!("  - {line}\n"));
            }
        }
        text.push_str(
            "Check that they are running and can reach the edge: a stopped or frozen connector \
             is dropped by the edge within seconds, and gets the new configuration when it \
             connects again.",
        );
    }
    text.push_str(
        " The edge keeps the change and Terraform recorded it; GET /v1/rollout lists the \
         connectors still pending. Raise the provider's `rollout_timeout` to wait longer, or \
         set it to \"0s\" not to wait.",
    );
    text
}

/// The detail of a refusal: per connector and hostname, the reason it gave.
fn refusal_detail(change: &Change, revision: u64, rollout: &Rollout) -> String {
    let mut refusals = std::collections::BTreeSet::new();
    for connection in &rollout.pending {
        for refused in &connection.refused {
            refusals.insert((
                connection.tunnel_name.as_str(),
                connection.connector_id.as_str(),
                refused.hostname.as_str(),
                refused.reason.as_str(),
            ));
        }
    }
    let mut text = format!(
        "The edge stored the new {} (revision {revision}), but connectors refused to serve it:\n",
        change.subject
    );
    for (tunnel, connector, hostname, reason) in refusals {
        text.push_str(&format!(
            "  - connector {connector} of tunnel {tunnel:?} refused {hostname}: {reason}\n"
        ));
    }
    text.push_str(
        "Point the hostname at an origin the connector allows, or add the origin to the \
         connector's --allow-origin list and restart it.",
    );
    text
}

/// The detail of a rollout some connectors left before acknowledging: what was written and,
/// per connector, where it ran and which version it was on.
fn departed_detail(change: &Change, revision: u64, departed: &[PendingConnection]) -> String {
    let mut text = format!(
        "The edge stored the new {} (revision {revision}) and every connector still connected \
         applied it, but these connectors disconnected (or were declared dead after not \
         answering) before acknowledging it:\n",
        change.subject
    );
    for line in connector_lines(departed) {
        text.push_str(&format!("  - {line}\n"));
    }
    text.push_str(
        "They serve nothing of the change until they connect again (they then get the new \
         configuration before any request). If they were their tunnel's only connectors, its \
         hostnames have no connector now: check that they are running and can reach the edge \
         (GET /v1/tunnels/{id}/connections).",
    );
    text
}

/// One line per connector (its connections grouped): id, addresses, tunnel, version.
fn connector_lines(pending: &[PendingConnection]) -> Vec<String> {
    let mut connectors: BTreeMap<(&str, &str), Vec<&PendingConnection>> = BTreeMap::new();
    for connection in pending {
        connectors
            .entry((&connection.tunnel_name, &connection.connector_id))
            .or_default()
            .push(connection);
    }
    connectors
        .into_iter()
        .map(|((tunnel, connector), connections)| {
            let addresses: Vec<&str> = connections.iter().map(|c| c.address.as_str()).collect();
            let version = connections
                .iter()
                .map(|c| c.config_version)
                .min()
                .unwrap_or_default();
            let tunnel_id = connections
                .first()
                .map(|c| c.tunnel_id.to_string())
                .unwrap_or_default();
            format!(
                "connector {connector} at {} (tunnel {tunnel:?}, {tunnel_id}), on configuration \
                 version {version}",
                addresses.join(", ")
            )
        })
        .collect()
}

/// `30s`, `1.5s`, `250ms`.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use postern_schema::ids::TunnelId;

    use super::*;

    #[test]
    fn changes_name_what_was_written() {
        let id = TunnelId::new_random();
        assert_eq!(
            Change::new(RolloutScope::Tunnel(id)).subject,
            format!("tunnel {id}")
        );
        assert_eq!(
            Change::new(RolloutScope::Hostname("app.example.com".into())).subject,
            "hostname \"app.example.com\""
        );
    }

    #[test]
    fn a_timeout_names_each_connector_once_with_its_addresses() {
        let tunnel_id = TunnelId::new_random();
        let connection = |id: &str, address: &str| PendingConnection {
            tunnel_id,
            tunnel_name: "web".into(),
            connection_id: id.into(),
            connector_id: "c-frozen".into(),
            address: address.into(),
            config_version: 7,
            refused: Vec::new(),
        };
        let rollout = Rollout {
            revision: 9,
            catalog_revision: 9,
            complete: false,
            pending: vec![
                connection("1", "127.0.0.1:5001"),
                connection("2", "127.0.0.1:5002"),
            ],
            departed: Vec::new(),
        };
        let change = Change::new(RolloutScope::Hostname("app.example.com".into()));
        let detail = timeout_detail(&change, 9, &rollout, Duration::from_secs(2));
        assert!(
            detail.contains(&format!(
                "connector c-frozen at 127.0.0.1:5001, 127.0.0.1:5002 (tunnel \"web\", \
                 {tunnel_id}), on configuration version 7"
            )),
            "{detail}"
        );
        assert!(detail.contains("after 2s"), "{detail}");
        assert_eq!(detail.matches("c-frozen").count(), 1, "{detail}");
    }

    #[test]
    fn connectors_that_left_are_named_with_their_tunnel() {
        let tunnel_id = TunnelId::new_random();
        let left = PendingConnection {
            refused: Vec::new(),
            tunnel_id,
            tunnel_name: "web".into(),
            connection_id: "1".into(),
            connector_id: "c-stopped".into(),
            address: "127.0.0.1:5001".into(),
            config_version: 4,
        };
        let change = Change::new(RolloutScope::Hostname("app.example.com".into()));
        let detail = departed_detail(&change, 5, &[left]);
        assert!(
            detail.contains(&format!(
                "connector c-stopped at 127.0.0.1:5001 (tunnel \"web\", {tunnel_id}), on \
                 configuration version 4"
            )),
            "{detail}"
        );
        assert!(
            detail.contains("hostname \"app.example.com\" (revision 5)"),
            "{detail}"
        );
    }
}
