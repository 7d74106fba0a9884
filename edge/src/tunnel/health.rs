//! Passive health of weighted routes: the edge counts each route's answers and ejects a route
//! (its weight goes to the other routes) after [`CONSECUTIVE_FAILURES`] 5xx answers in a row,
//! or, with `max_error_rate`, when its share of 5xx answers over the last minute exceeds that
//! rate (once it has had [`MIN_ANSWERS`] answers in the minute). An ejected route takes traffic
//! again after [`EJECTION`], counting afresh; its connectors' own health checks still keep it
//! out while they find the origin unhealthy. Keys come from declared hostnames and routes only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Seconds of answers a route's error rate looks back over.
pub(crate) const WINDOW_SECONDS: u64 = 60;
/// Answers a route needs in the window before its error rate can eject it.
pub(crate) const MIN_ANSWERS: u64 = 20;
/// 5xx answers in a row that eject a route whatever its `max_error_rate`.
pub(crate) const CONSECUTIVE_FAILURES: u32 = 5;
/// How long an ejected route stays out before it is tried again.
pub(crate) const EJECTION: Duration = Duration::from_secs(10);

/// One route of one hostname (or of one of its path routes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RouteKey {
    /// The hostname as declared.
    pub(crate) hostname: String,
    /// The path route's prefix; `None` for the hostname's own routes.
    pub(crate) prefix: Option<String>,
    /// The route's selector, `k=v,k2=v2`.
    pub(crate) route: String,
}

/// Why a route is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its 5xx share over the minute exceeded `max_error_rate`.
    ErrorRate,
    /// [`CONSECUTIVE_FAILURES`] 5xx answers in a row.
    ConsecutiveFailures,
}

impl Reason {
    /// The API's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::ErrorRate => "error_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
        }
    }
}

/// An ejected route, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ejected {
    /// The route.
    pub(crate) key: RouteKey,
    /// Why.
    pub(crate) reason: Reason,
    /// The route's 5xx share of the window when it was ejected.
    pub(crate) error_rate: f64,
    /// How long it has been out.
    pub(crate) since: Duration,
    /// How long until it is tried again.
    pub(crate) remaining: Duration,
}

/// Answers of one second: (second, answers, 5xx).
type Bucket = (u64, u64, u64);

#[derive(Debug)]
struct Tracker {
    buckets: [Bucket; WINDOW_SECONDS as usize],
    consecutive: u32,
    ejected: Option<(Instant, Reason, f64)>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            buckets: [(0, 0, 0); WINDOW_SECONDS as usize],
            consecutive: 0,
            ejected: None,
        }
    }
}

impl Tracker {
    fn totals(&self, second: u64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|(at, _, _)| *at <= second && second - at < WINDOW_SECONDS)
            .fold((0, 0), |(n, e), (_, an, ae)| (n + an, e + ae))
    }

    /// Ends an ejection that has run its time: the route starts counting afresh.
    fn expire(&mut self, now: Instant) -> bool {
        match self.ejected {
            Some((at, _, _)) if now.duration_since(at) >= EJECTION => {
                *self = Tracker::default();
                true
            }
            _ => false,
        }
    }
}

/// The passive health of every weighted route this node has answered for.
#[derive(Debug)]
pub(crate) struct RouteHealth {
    routes: RwLock<HashMap<RouteKey, Arc<Mutex<Tracker>>>>,
    /// Routes out right now (an upper bound: an expired ejection counts until looked at), so
    /// that picking a route costs nothing while none is.
    ejected: AtomicUsize,
    start: Instant,
}

impl Default for RouteHealth {
    fn default() -> Self {
        Self {
            routes: RwLock::new(HashMap::new()),
            ejected: AtomicUsize::new(0),
            start: Instant::now(),
        }
    }
}

impl RouteHealth {
    /// Counts an answer of `key`'s route (`failed`: a 5xx), ejecting the route when it crosses
    /// a threshold; `max_error_rate` is the route's setting.
    pub(crate) fn record(&self, key: &RouteKey, failed: bool, max_error_rate: Option<f64>) {
        self.record_at(key, failed, max_error_rate, Instant::now());
    }

    fn record_at(&self, key: &RouteKey, failed: bool, max_error_rate: Option<f64>, now: Instant) {
        let tracker = self.tracker(key);
        let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
        if tracker.expire(now) {
            self.ejected.fetch_sub(1, Ordering::Relaxed);
        }
        if tracker.ejected.is_some() {
            // Answers of requests sent before the ejection: already judged.
            return;
        }
        let second = now.duration_since(self.start).as_secs() + 1;
        let bucket = &mut tracker.buckets[(second % WINDOW_SECONDS) as usize];
        if bucket.0 != second {
            *bucket = (second, 0, 0);
        }
        bucket.1 += 1;
        bucket.2 += u64::from(failed);
        tracker.consecutive = if failed { tracker.consecutive + 1 } else { 0 };
        let (answers, errors) = tracker.totals(second);
        let rate = errors as f64 / answers.max(1) as f64;
        let reason = if max_error_rate.is_some_and(|max| answers >= MIN_ANSWERS && rate > max) {
            Some(Reason::ErrorRate)
        } else if tracker.consecutive >= CONSECUTIVE_FAILURES {
            Some(Reason::ConsecutiveFailures)
        } else {
            None
        };
        if let Some(reason) = reason {
            tracker.ejected = Some((now, reason, rate));
            self.ejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                hostname = %key.hostname,
                prefix = key.prefix.as_deref().unwrap_or(""),
                route = %key.route,
                reason = reason.as_str(),
                error_rate = rate,
                "route ejected: its weight goes to the other routes for {} s",
                EJECTION.as_secs()
            );
        }
    }

    /// Is `key`'s route out?
    pub(crate) fn is_ejected(&self, key: &RouteKey) -> bool {
        if self.ejected.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.is_ejected_at(key, Instant::now())
    }

    fn is_ejected_at(&self, key: &RouteKey, now: Instant) -> bool {
        let Some(tracker) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
        else {
            return false;
        };
        let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
        if tracker.expire(now) {
            self.ejected.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(hostname = %key.hostname, route = %key.route, "ejected route tried again");
        }
        tracker.ejected.is_some()
    }

    /// Anything out right now? (Cheap; may say yes for an ejection about to expire.)
    pub(crate) fn any_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) > 0
    }

    /// The routes out right now, by key.
    pub(crate) fn ejected(&self) -> Vec<Ejected> {
        self.ejected_at(Instant::now())
    }

    fn ejected_at(&self, now: Instant) -> Vec<Ejected> {
        let routes: Vec<(RouteKey, Arc<Mutex<Tracker>>)> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        let mut out = Vec::new();
        for (key, tracker) in routes {
            let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
            if tracker.expire(now) {
                self.ejected.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some((at, reason, error_rate)) = tracker.ejected {
                let since = now.duration_since(at);
                out.push(Ejected {
                    key,
                    reason,
                    error_rate,
                    since,
                    remaining: EJECTION.saturating_sub(since),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn tracker(&self, key: &RouteKey) -> Arc<Mutex<Tracker>> {
        if let Some(tracker) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return tracker.clone();
        }
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Forgets the routes `keep` does not name (hostnames or routes deleted).
    pub(crate) fn retain(&self, keep: impl Fn(&RouteKey) -> bool) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.retain(|key, tracker| {
            let kept = keep(key);
            if !kept
                && tracker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ejected
                    .is_some()
            {
                self.ejected.fetch_sub(1, Ordering::Relaxed);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RouteKey {
        RouteKey {
            hostname: "app.example.com".into(),
            prefix: None,
            route: "release=canary".into(),
        }
    }

    #[test]
    fn an_error_rate_above_the_limit_ejects_after_enough_answers_and_expires() {
        let health = RouteHealth::default();
        let now = health.start;
        for i in 0..15 {
            health.record_at(&key(), i % 3 == 0, Some(0.2), now);
        }
        assert!(!health.is_ejected_at(&key(), now), "too few answers yet");
        for i in 0..5 {
            health.record_at(&key(), i % 2 == 0, Some(0.2), now);
        }
        assert!(health.is_ejected_at(&key(), now));
        let out = health.ejected_at(now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, Reason::ErrorRate);
        assert!(out[0].error_rate > 0.2);
        assert!(health.is_ejected_at(&key(), now + EJECTION - Duration::from_millis(1)));
        assert!(!health.is_ejected_at(&key(), now + EJECTION));
        assert!(!health.any_ejected());
        // Counted afresh: one more failure does not eject again.
        health.record_at(&key(), true, Some(0.2), now + EJECTION);
        assert!(!health.is_ejected_at(&key(), now + EJECTION));
    }

    #[test]
    fn consecutive_failures_eject_without_a_rate_and_a_success_resets_them() {
        let health = RouteHealth::default();
        let now = health.start;
        for _ in 0..CONSECUTIVE_FAILURES - 1 {
            health.record_at(&key(), true, None, now);
        }
        health.record_at(&key(), false, None, now);
        for _ in 0..CONSECUTIVE_FAILURES - 1 {
            health.record_at(&key(), true, None, now);
        }
        assert!(!health.is_ejected_at(&key(), now));
        health.record_at(&key(), true, None, now);
        assert!(health.is_ejected_at(&key(), now));
        assert_eq!(
            health.ejected_at(now)[0].reason,
            Reason::ConsecutiveFailures
        );
    }

    #[test]
    fn answers_older_than_the_window_do_not_count() {
        let health = RouteHealth::default();
        let now = health.start;
        for _ in 0..4 {
            health.record_at(&key(), true, Some(0.5), now);
        }
        for _ in 0..30 {
            health.record_at(&key(), false, Some(0.5), now);
        }
        let later = now + Duration::from_secs(WINDOW_SECONDS + 1);
        for _ in 0..19 {
            health.record_at(&key(), false, Some(0.5), later);
        }
        // 4 failures a minute ago no longer count: 1 of 20 now.
        health.record_at(&key(), true, Some(0.04), later);
        assert!(health.is_ejected_at(&key(), later), "1/20 = 5 % > 4 %");
    }

    #[test]
    fn forgetting_a_route_forgets_its_ejection() {
        let health = RouteHealth::default();
        for _ in 0..CONSECUTIVE_FAILURES {
            health.record(&key(), true, None);
        }
        assert!(health.any_ejected());
        health.retain(|_| false);
        assert!(!health.any_ejected());
        assert!(health.ejected().is_empty());
    }
}
