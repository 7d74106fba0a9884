//! The ordering task, on the control runtime, on the one node that holds the store's ACME lease
//! (the others serve what it stores). Each round it:
//!
//! 1. keeps the certificates the hostnames need: one ACME certificate per hostname that no
//!    other certificate covers (an upload, or one asked for through the API such as a
//!    wildcard), dropped with its hostname or once another valid certificate covers it;
//! 2. orders what is due, one order at a time: a new certificate at once, a valid one at two
//!    thirds of its lifetime; a failure is recorded (`last_error`) and retried with backoff
//!    that never waits past a quarter of what is left of the current certificate, which keeps
//!    serving until it expires;
//! 3. sleeps until the next certificate is due, a hostname changes, a certificate changes, or
//!    the lease must be renewed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::Account;
use postern_schema::error_chain;
use postern_schema::rules::in_zone;
use tokio_util::sync::CancellationToken;

use super::acme::{AcmeError, account_is_gone, forget_account, obtain, open_account};
use super::http::{AcmeHttp, HttpError};
use super::names::best_cover;
use super::served::{Certificates, now};
use super::table::{Status, status_of};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::{CertificateSource, ChallengeKind, Store, StoreError, StoredCertificate};

/// How long the ordering lease lasts; renewed every round and before each order.
const LEASE: Duration = Duration::from_secs(120);

/// The longest a round waits (so the lease is renewed, and a node without it tries again).
const ROUND_EVERY: Duration = Duration::from_secs(10);

/// How long one order may take, from new order to certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// The first retry after a failure, doubling with each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: i64 = 10;
const MAX_BACKOFF: i64 = 3_600;

/// The counter of orders, by outcome.
const ORDERS: &str = "postern_edge_acme_orders_total";

/// The ACME flags.
#[derive(Debug, Clone)]
pub(crate) struct AcmeSettings {
    /// `--acme-directory`.
    pub(crate) directory: String,
    /// `--acme-email`.
    pub(crate) email: Option<String>,
    /// `--acme-ca-cert`.
    pub(crate) ca_cert: Option<PathBuf>,
    /// `--acme-challenges`, in order of preference.
    pub(crate) challenges: Vec<ChallengeKind>,
}

/// The ordering task.
pub(crate) struct Orders {
    settings: AcmeSettings,
    http: AcmeHttp,
    zones: Vec<String>,
    certificates: Certificates,
    settings_store: Arc<dyn Store>,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    /// This node, as the lease knows it.
    holder: String,
    account: Option<Account>,
}

impl Orders {
    /// The task for `settings`; fails when `--acme-ca-cert` is unusable.
    pub(crate) fn new(
        settings: AcmeSettings,
        zones: Vec<String>,
        certificates: Certificates,
        settings_store: Arc<dyn Store>,
        catalog: Catalog,
        metrics: Arc<Metrics>,
        holder: String,
    ) -> Result<Self, HttpError> {
        Ok(Self {
            http: AcmeHttp::new(settings.ca_cert.as_deref())?,
            settings,
            zones,
            certificates,
            settings_store,
            catalog,
            metrics,
            holder,
            account: None,
        })
    }

    /// Runs rounds until `cancel`, then gives the lease up.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(directory = %self.settings.directory, challenges = ?self.settings.challenges.iter().map(|c| c.as_str()).collect::<Vec<_>>(), "obtaining certificates by ACME");
        let mut hostnames = self.catalog.subscribe();
        let mut changes = self.certificates.subscribe();
        loop {
            let wait = tokio::select! {
                _ = cancel.cancelled() => break,
                wait = self.round() => wait,
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = hostnames.changed() => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let store = self.certificates.store().clone();
        let _ = store.release_acme_lease(&self.holder).await;
    }

    /// One round; how long to wait before the next.
    async fn round(&mut self) -> Duration {
        match self.try_round().await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot check the ACME certificates; trying again");
                ROUND_EVERY
            }
        }
    }

    async fn try_round(&mut self) -> Result<Duration, StoreError> {
        let store = self.certificates.store().clone();
        if !store.acme_lease(&self.holder, LEASE).await? {
            return Ok(ROUND_EVERY);
        }
        let stored = store.certificates().await?;
        let (add, drop) = reconcile(&stored, &self.hostnames(), now());
        let changed = !add.is_empty() || !drop.is_empty();
        for certificate in &add {
            store.insert_certificate(certificate).await?;
            tracing::info!(names = ?certificate.names, "a hostname needs a certificate; ordering one");
        }
        for certificate in &drop {
            store.delete_certificate(&certificate.id).await?;
            tracing::info!(names = ?certificate.names, "a certificate is no longer needed");
        }
        if changed {
            self.certificates.reload().await?;
        }
        let stored = if changed {
            store.certificates().await?
        } else {
            stored
        };

        let mut due: Vec<StoredCertificate> = stored
            .into_iter()
            .filter(|c| c.source == CertificateSource::Acme)
            .collect();
        due.sort_by_key(due_at);
        for certificate in due.into_iter().filter(|c| due_at(c) <= now()) {
            if !store.acme_lease(&self.holder, LEASE).await? {
                return Ok(ROUND_EVERY);
            }
            self.order(certificate).await?;
        }
        Ok(self.next_wait().await)
    }

    /// Orders `certificate` and stores the outcome.
    async fn order(&mut self, mut certificate: StoredCertificate) -> Result<(), StoreError> {
        let outcome =
            match tokio::time::timeout(ORDER_TIMEOUT, self.obtain(&certificate.names)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(AcmeError::Order(format!(
                    "unfinished after {}s",
                    ORDER_TIMEOUT.as_secs()
                ))),
            };
        let now = now();
        match outcome {
            Ok(issued) => {
                tracing::info!(names = ?certificate.names, not_after = %super::pem::rfc3339(issued.facts.not_after), "certificate issued");
                self.metrics.inc(ORDERS, &[("outcome", "issued")]);
                certificate.chain_pem = Some(issued.chain_pem);
                certificate.key_pem = Some(issued.key_pem.into());
                certificate.not_before = Some(issued.facts.not_before);
                certificate.not_after = Some(issued.facts.not_after);
                certificate.last_error = None;
                certificate.failures = 0;
                certificate.next_attempt = None;
            }
            Err(error) => {
                let text = error_chain(&error);
                self.metrics.inc(ORDERS, &[("outcome", "failed")]);
                certificate.failures = certificate.failures.saturating_add(1);
                let wait = backoff(&certificate, now);
                tracing::warn!(names = ?certificate.names, error = %text, retry_in_s = wait, still_served = (status_of(&certificate, now) == Status::Valid), "ordering a certificate failed");
                certificate.last_error = Some(text);
                certificate.next_attempt = Some(now + wait);
            }
        }
        let store = self.certificates.store().clone();
        store.update_certificate(&certificate).await?;
        self.certificates.reload().await
    }

    /// An order on the account, opening (or reopening) the account as needed.
    async fn obtain(&mut self, names: &[String]) -> Result<super::acme::Issued, AcmeError> {
        for attempt in 0..2 {
            let account = match &self.account {
                Some(account) => account.clone(),
                None => {
                    let account = open_account(
                        &self.settings.directory,
                        self.settings.email.as_deref(),
                        &self.http,
                        &self.settings_store,
                    )
                    .await?;
                    self.account = Some(account.clone());
                    account
                }
            };
            match obtain(
                &account,
                names,
                &self.settings.challenges,
                &self.certificates,
            )
            .await
            {
                Err(error) if attempt == 0 && account_is_gone(&error) => {
                    tracing::warn!(directory = %self.settings.directory, "the ACME server no longer knows the edge's account; making a new one");
                    self.account = None;
                    forget_account(&self.settings.directory, &self.settings_store).await;
                }
                outcome => return outcome,
            }
        }
        Err(AcmeError::StoredAccount)
    }

    /// Every hostname inside the zones.
    fn hostnames(&self) -> BTreeSet<String> {
        self.catalog
            .snapshot()
            .hostnames
            .keys()
            .filter(|name| self.zones.iter().any(|zone| in_zone(name, zone)))
            .cloned()
            .collect()
    }

    /// Until the next ACME certificate is due, at most [`ROUND_EVERY`].
    async fn next_wait(&self) -> Duration {
        let now = now();
        let next = self
            .certificates
            .table()
            .certificates
            .iter()
            .filter(|c| c.source == CertificateSource::Acme)
            .map(due_at)
            .min();
        match next {
            Some(at) if at > now => Duration::from_secs(u64::try_from(at - now).unwrap_or(0))
                .clamp(Duration::from_secs(1), ROUND_EVERY),
            Some(_) => Duration::from_secs(1),
            None => ROUND_EVERY,
        }
    }
}

/// When a certificate is next due to be ordered (Unix seconds): a new or expired one at once,
/// a valid one at two thirds of its lifetime; never before the backoff allows.
fn due_at(certificate: &StoredCertificate) -> i64 {
    let renew = match (
        &certificate.chain_pem,
        certificate.not_before,
        certificate.not_after,
    ) {
        (Some(_), Some(not_before), Some(not_after)) if not_after > not_before => {
            not_before + (not_after - not_before) * 2 / 3
        }
        _ => i64::MIN,
    };
    renew.max(certificate.next_attempt.unwrap_or(i64::MIN))
}

/// Seconds until the next attempt after a failure: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], and while a certificate is still served, at most a quarter of its
/// remaining life (at least 5 s), so it is renewed before it expires if the server comes back.
fn backoff(certificate: &StoredCertificate, now: i64) -> i64 {
    let exponent = certificate.failures.saturating_sub(1).min(20);
    let mut wait = FIRST_BACKOFF
        .saturating_mul(1_i64 << exponent)
        .min(MAX_BACKOFF);
    if let Some(not_after) = certificate.not_after
        && certificate.chain_pem.is_some()
        && not_after > now
    {
        wait = wait.min(((not_after - now) / 4).max(5));
    }
    wait
}

/// What the hostnames need: new automatic certificates (for hostnames no certificate covers),
/// and automatic certificates to drop (their hostname is gone, or another certificate that is
/// valid covers it).
fn reconcile(
    stored: &[StoredCertificate],
    hostnames: &BTreeSet<String>,
    now: i64,
) -> (Vec<StoredCertificate>, Vec<StoredCertificate>) {
    let others = |hostname: &str, wanted: &dyn Fn(Status) -> bool| {
        stored.iter().any(|c| {
            !c.automatic && wanted(status_of(c, now)) && best_cover(&c.names, hostname).is_some()
        })
    };
    let add = hostnames
        .iter()
        .filter(|hostname| {
            let has_own = stored
                .iter()
                .any(|c| c.automatic && c.names.iter().any(|n| n == *hostname));
            !has_own && !others(hostname, &|status| status != Status::Failed)
        })
        .map(|hostname| {
            StoredCertificate::acme_request(vec![hostname.clone()], true, super::pem::rfc3339(now))
        })
        .collect();
    let drop = stored
        .iter()
        .filter(|c| c.automatic)
        .filter(|c| {
            c.names.iter().any(|name| !hostnames.contains(name))
                || c.names
                    .iter()
                    .all(|name| others(name, &|status| status == Status::Valid))
        })
        .cloned()
        .collect();
    (add, drop)
}

#[cfg(test)]
mod tests;
