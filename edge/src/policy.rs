//! Edge policies: who may reach a hostname, how, and how often. The proxy asks
//! [`PolicyEngine::check`] once per request, after finding the hostname and before picking a
//! connector; a denied request never reaches a tunnel.
//!
//! A hostname's policies run in the order of its `policy_ids`; the first policy in `enforce` mode
//! that refuses the request decides the answer. A policy in `report` mode never refuses: what it
//! would have refused is counted (`decision="report"`) and logged, and evaluation goes on.

mod basic;
mod compile;
mod evaluate;
mod fetch;
mod jwks;
mod jwt;
mod oidc;
mod path;
mod rate_limit;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use postern_schema::api::{Hostname, Policy, PolicyMode};
use postern_schema::ids::PolicyId;

use self::compile::{CompiledPolicy, compile};
use self::evaluate::{Block, Outcome, evaluate};
use crate::catalog::Snapshot;
use crate::metrics::Metrics;

pub(crate) use self::basic::check_password_hash;
pub(crate) use self::evaluate::{Now, Reason, RequestFacts};
pub(crate) use self::oidc::{
    CALLBACK_PATH, JWKS_PATH, LOGIN_SECS, LOGOUT_PATH, OidcPolicy, query_param,
};
pub(crate) use self::path::canonical_path;
pub(crate) use self::session::{
    Identity, KeysError, LOGIN_COOKIE, Login, PeopleKeys, SESSION_COOKIE, Session,
};

/// The metric family of policy decisions.
pub(crate) const DECISIONS: &str = "postern_edge_policy_decisions_total";

/// Report-mode warnings per policy and hostname: at most one per this interval (the rest are
/// counted and summarised in the next one).
const REPORT_LOG_EVERY: Duration = Duration::from_secs(1);

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it.
    Allow,
    /// Answer it at the edge.
    Deny(Denial),
}

/// A request refused by a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// Why.
    pub(crate) reason: Reason,
    /// The name of the policy that refused it.
    pub(crate) policy: Arc<str>,
    /// For [`Reason::RateLimit`]: the `Retry-After` value, whole seconds, at least 1.
    pub(crate) retry_after_secs: Option<u64>,
}

impl Denial {
    /// 403 (ip, method, path), 401 (JWT missing or invalid) or 429 (rate limit).
    pub(crate) fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// Adds what the status needs: `WWW-Authenticate: Bearer` for a missing token,
    /// `WWW-Authenticate: Bearer error="invalid_token"` for a bad one, `Retry-After` for 429.
    pub(crate) fn add_headers(&self, headers: &mut HeaderMap) {
        match self.reason {
            Reason::JwtMissing => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Reason::JwtInvalid => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Reason::RateLimit => {
                let secs = self.retry_after_secs.unwrap_or(1).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Reason::BasicAuth => {
                // Policy names are lowercase letters, digits and '-': always a header value.
                if let Ok(value) = HeaderValue::from_str(&format!(
                    "Basic realm=\"{}\", charset=\"UTF-8\"",
                    self.policy
                )) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Reason::Login => {
                if let Ok(value) = HeaderValue::from_str(&format!(
                    "Bearer realm=\"{}\", error=\"login_required\"",
                    self.policy
                )) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Reason::Ip | Reason::Method | Reason::Path | Reason::Person => {}
        }
    }
}

/// Evaluates hostnames' policies against requests. Compiles each policy once per version and
/// keeps rate-limit buckets across catalog snapshots. Cheap to share (`Arc`); no lock is held
/// while a request is evaluated.
pub(crate) struct PolicyEngine {
    metrics: Arc<Metrics>,
    /// The cluster's login keys, installed at start.
    people: OnceLock<Arc<PeopleKeys>>,
    compiled: RwLock<HashMap<PolicyId, Arc<Entry>>>,
    /// The catalog revision the cache was last pruned at.
    pruned_at: AtomicU64,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

/// A compiled policy and its per-hostname bookkeeping.
struct Entry {
    policy: CompiledPolicy,
    hosts: RwLock<HashMap<Box<str>, Arc<HostCounters>>>,
}

/// Counter cells of one policy on one hostname, created on first use.
#[derive(Default)]
struct HostCounters {
    allow: OnceLock<Arc<AtomicU64>>,
    deny: [OnceLock<Arc<AtomicU64>>; Reason::ALL.len()],
    report: [OnceLock<Arc<AtomicU64>>; Reason::ALL.len()],
    report_log: Mutex<ReportLog>,
}

#[derive(Default)]
struct ReportLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl PolicyEngine {
    /// An engine that counts decisions in `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            people: OnceLock::new(),
            compiled: RwLock::new(HashMap::new()),
            pruned_at: AtomicU64::new(0),
        }
    }

    /// Applies `policy_ids` (the hostname's, or those of the path route the request falls
    /// under), in order, to one request for `hostname`. `snapshot` is the catalog snapshot
    /// `hostname` was found in.
    ///
    /// On [`Verdict::Deny`], answer with [`Denial::status`] and the headers of
    /// [`Denial::add_headers`], and do not forward the request.
    pub(crate) fn check_policies(
        &self,
        snapshot: &Snapshot,
        hostname: &Hostname,
        policy_ids: &[PolicyId],
        facts: &RequestFacts<'_>,
    ) -> Verdict {
        self.check_ids(snapshot, hostname.spec.hostname.as_str(), policy_ids, facts)
    }

    /// Applies a TCP service's policies, in order, to one connection from `client_ip`, when
    /// it is accepted: its IP lists and its rate limit (one connection is one request). The
    /// service's counters and buckets are its own, under the key [`tcp_key`]. The API lets
    /// no policy with methods, paths or a JWT onto a TCP service; one that gained them since
    /// refuses every connection rather than let them through unchecked.
    pub(crate) fn check_connection(
        &self,
        snapshot: &Snapshot,
        service_name: &str,
        policy_ids: &[PolicyId],
        client_ip: std::net::IpAddr,
    ) -> Verdict {
        self.check_ids(
            snapshot,
            &tcp_key(service_name),
            policy_ids,
            &RequestFacts::connection(client_ip),
        )
    }

    /// Applies a TLS passthrough hostname's policies to one connection from `client_ip`, as
    /// [`Self::check_connection`] does for a TCP service, under the hostname's own counters
    /// and buckets (it serves no HTTP to share them with).
    pub(crate) fn check_passthrough(
        &self,
        snapshot: &Snapshot,
        hostname: &str,
        policy_ids: &[PolicyId],
        client_ip: std::net::IpAddr,
    ) -> Verdict {
        self.check_ids(
            snapshot,
            hostname,
            policy_ids,
            &RequestFacts::connection(client_ip),
        )
    }

    fn check_ids(
        &self,
        snapshot: &Snapshot,
        host: &str,
        ids: &[PolicyId],
        facts: &RequestFacts<'_>,
    ) -> Verdict {
        if ids.is_empty() {
            return Verdict::Allow;
        }
        self.prune(snapshot);
        for id in ids {
            let Some(policy) = snapshot.policies.get(id) else {
                // The store keeps references intact, so a consistent snapshot cannot get here;
                // refuse rather than skip a policy that was meant to apply.
                tracing::error!(hostname = host, policy_id = %id, "hostname refers to a policy that does not exist; refusing the request");
                return Verdict::Deny(Denial {
                    reason: Reason::Ip,
                    policy: Arc::from(id.to_string()),
                    retry_after_secs: None,
                });
            };
            let entry = self.entry(policy);
            let counters = entry.counters(host);
            match evaluate(&entry.policy, host, facts) {
                Outcome::Pass => {
                    self.count(&entry.policy, host, "allow", "allow", &counters.allow);
                }
                Outcome::Block(block) => match entry.policy.mode {
                    PolicyMode::Enforce => {
                        let index = reason_index(block.reason);
                        self.count(
                            &entry.policy,
                            host,
                            "deny",
                            block.reason.as_str(),
                            &counters.deny[index],
                        );
                        tracing::debug!(
                            hostname = host,
                            policy = %entry.policy.name,
                            reason = block.reason.as_str(),
                            jwt = block.jwt.map(|j| j.as_str()),
                            client_ip = %facts.client_ip,
                            "request denied by policy"
                        );
                        return Verdict::Deny(Denial {
                            reason: block.reason,
                            policy: entry.policy.name.clone(),
                            retry_after_secs: block.retry_after_secs,
                        });
                    }
                    PolicyMode::Report => {
                        let index = reason_index(block.reason);
                        self.count(
                            &entry.policy,
                            host,
                            "report",
                            block.reason.as_str(),
                            &counters.report[index],
                        );
                        counters.log_report(&entry.policy, host, &block, facts);
                    }
                },
            }
        }
        Verdict::Allow
    }

    /// Installs the cluster's login keys (once, at start).
    pub(crate) fn install_keys(&self, keys: PeopleKeys) {
        let _ = self.people.set(Arc::new(keys));
    }

    /// The cluster's login keys, once installed.
    pub(crate) fn keys(&self) -> Option<&Arc<PeopleKeys>> {
        self.people.get()
    }

    /// Does any of `hostname`'s policies log people in?
    pub(crate) fn has_login(&self, snapshot: &Snapshot, hostname: &Hostname) -> bool {
        hostname.spec.policy_ids.iter().any(|id| {
            snapshot
                .policies
                .get(id)
                .is_some_and(|policy| policy.spec.oidc.is_some())
        })
    }

    /// The compiled `oidc` block of the first of `hostname`'s policies that has one.
    pub(crate) fn login_policy(
        &self,
        snapshot: &Snapshot,
        hostname: &Hostname,
    ) -> Option<Arc<OidcPolicy>> {
        hostname.spec.policy_ids.iter().find_map(|id| {
            let policy = snapshot.policies.get(id)?;
            policy.spec.oidc.as_ref()?;
            self.entry(policy).policy.oidc.clone()
        })
    }

    /// Before [`check`](Self::check), for a request that carries a bearer token: makes sure the
    /// JWKS of each of `hostname`'s `jwt` policies with a `jwks_url` holds the token's key,
    /// fetching it when it is unknown (rate-limited).
    pub(crate) async fn prepare(
        &self,
        snapshot: &Snapshot,
        hostname: &Hostname,
        authorization: Option<&[u8]>,
    ) {
        let Some(token) = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return;
        };
        let kid = jwt::kid_of(token);
        for id in &hostname.spec.policy_ids {
            let Some(policy) = snapshot.policies.get(id) else {
                continue;
            };
            if policy
                .spec
                .jwt
                .as_ref()
                .is_none_or(|j| j.jwks_url.is_none())
            {
                continue;
            }
            let entry = self.entry(policy);
            if let Some(jwks) = entry.policy.jwt.as_ref().and_then(|j| j.jwks()) {
                jwks.ensure(kid.as_deref()).await;
            }
        }
    }

    /// Who a request that [`check`](Self::check) allowed belongs to: the user of its
    /// `basic_auth` policy or the person of its `oidc` policy (enforcing policies only).
    pub(crate) fn identity(
        &self,
        snapshot: &Snapshot,
        hostname: &Hostname,
        facts: &RequestFacts<'_>,
    ) -> Option<Identity> {
        let host = hostname.spec.hostname.as_str();
        hostname.spec.policy_ids.iter().find_map(|id| {
            let policy = snapshot.policies.get(id)?;
            if policy.spec.mode != PolicyMode::Enforce
                || (policy.spec.oidc.is_none() && policy.spec.basic_auth.is_none())
            {
                return None;
            }
            let entry = self.entry(policy);
            if let Some(oidc) = &entry.policy.oidc
                && let Some(session) = facts.session
                && oidc.recognises(session, host, facts.now.unix.as_secs())
            {
                return Some(Identity::of_session(session));
            }
            let basic = entry.policy.basic.as_ref()?;
            basic.verify(facts.authorization).map(Identity::of_user)
        })
    }

    /// [`PolicyEngine::check_policies`] with the hostname's own policies.
    #[cfg(test)]
    pub(crate) fn check(
        &self,
        snapshot: &Snapshot,
        hostname: &Hostname,
        facts: &RequestFacts<'_>,
    ) -> Verdict {
        self.check_policies(snapshot, hostname, &hostname.spec.policy_ids, facts)
    }

    /// Does one of these enforcing policies restrict paths (`allow_paths`)? Then the proxy
    /// checks and forwards the canonical path only ([`canonical_path`]).
    pub(crate) fn restricts_paths(&self, snapshot: &Snapshot, policy_ids: &[PolicyId]) -> bool {
        policy_ids.iter().any(|id| {
            snapshot.policies.get(id).is_some_and(|policy| {
                policy.spec.mode == PolicyMode::Enforce && !policy.spec.allow_paths.is_empty()
            })
        })
    }

    /// The compiled form of `policy` at its current version, compiling it on first use.
    fn entry(&self, policy: &Policy) -> Arc<Entry> {
        let cached = self
            .compiled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&policy.id)
            .cloned();
        if let Some(entry) = &cached {
            // A newer version than the caller's snapshot means the caller raced an update;
            // the newer policy is the better answer, and compiling the old one again would
            // only evict it.
            if entry.policy.version >= policy.version {
                return entry.clone();
            }
        }
        // Compile outside the lock; if two requests race, both results are equivalent and the
        // later insert wins (rate-limit buckets are shared through `previous` either way).
        let fresh = Arc::new(Entry {
            policy: compile(policy, cached.as_ref().map(|e| &e.policy)),
            hosts: RwLock::new(HashMap::new()),
        });
        let mut compiled = self.compiled.write().unwrap_or_else(|p| p.into_inner());
        let slot = compiled.entry(policy.id).or_insert_with(|| fresh.clone());
        if slot.policy.version < policy.version {
            *slot = fresh;
        }
        slot.clone()
    }

    /// Once per catalog revision: forget policies that are gone, and the buckets of hostnames
    /// that no longer use a policy.
    fn prune(&self, snapshot: &Snapshot) {
        // Only a newer snapshot prunes: a request still holding an older one must not drop
        // what a newer one added.
        if self
            .pruned_at
            .fetch_max(snapshot.revision, Ordering::Relaxed)
            >= snapshot.revision
        {
            return;
        }
        let mut compiled = self.compiled.write().unwrap_or_else(|p| p.into_inner());
        compiled.retain(|id, _| snapshot.policies.contains_key(id));
        for (id, entry) in compiled.iter() {
            let uses = |host: &str| match host.strip_prefix(TCP_KEY_PREFIX) {
                Some(name) => snapshot
                    .tcp_services
                    .values()
                    .any(|s| s.spec.name == name && s.spec.policy_ids.contains(id)),
                None => snapshot
                    .hostnames
                    .get(host)
                    .is_some_and(|h| h.spec.all_policy_ids().any(|used| used == id)),
            };
            if let Some(limiter) = &entry.policy.rate_limit {
                limiter.retain_hosts(uses);
            }
            entry
                .hosts
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|host, _| uses(host));
        }
    }

    fn count(
        &self,
        policy: &CompiledPolicy,
        host: &str,
        decision: &str,
        reason: &str,
        cell: &OnceLock<Arc<AtomicU64>>,
    ) {
        cell.get_or_init(|| {
            self.metrics.counter(
                DECISIONS,
                &[
                    ("policy", policy.name.as_ref()),
                    ("hostname", host),
                    ("decision", decision),
                    ("reason", reason),
                ],
            )
        })
        .fetch_add(1, Ordering::Relaxed);
    }
}

impl Entry {
    fn counters(&self, host: &str) -> Arc<HostCounters> {
        if let Some(counters) = self
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
        {
            return counters.clone();
        }
        self.hosts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.into())
            .or_default()
            .clone()
    }
}

impl HostCounters {
    /// Warns that a report-mode policy would have refused a request: at most once per
    /// [`REPORT_LOG_EVERY`], with the count of the ones not logged since. Never logs tokens,
    /// headers or query strings.
    fn log_report(
        &self,
        policy: &CompiledPolicy,
        host: &str,
        block: &Block,
        facts: &RequestFacts<'_>,
    ) {
        let now = facts.now.monotonic;
        let mut log = self.report_log.lock().unwrap_or_else(|p| p.into_inner());
        let due = log
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_LOG_EVERY);
        if !due {
            log.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.suppressed);
        log.last = Some(now);
        drop(log);
        tracing::warn!(
            hostname = host,
            policy = %policy.name,
            reason = block.reason.as_str(),
            jwt = block.jwt.map(|j| j.as_str()),
            client_ip = %facts.client_ip,
            method = facts.method,
            also_since_last = suppressed,
            "report-only policy would have denied a request"
        );
    }
}

/// What a TCP service's decisions and rate-limit buckets are kept under, in place of a
/// hostname: `tcp:<name>` (no hostname holds a `:`), also the `hostname` label of its
/// decisions.
pub(crate) fn tcp_key(service_name: &str) -> String {
    format!("{TCP_KEY_PREFIX}{service_name}")
}

const TCP_KEY_PREFIX: &str = "tcp:";

fn reason_index(reason: Reason) -> usize {
    // `Reason` is a fieldless enum listed in `Reason::ALL` order.
    reason as usize
}

#[cfg(test)]
mod test_fixtures;
#[cfg(test)]
mod tests;
