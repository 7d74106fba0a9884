//! Prometheus counters, gauges and histograms, rendered in the text exposition format at
//! `/metrics`.
//! Label values come from declared objects (hostnames, policies, routes, tunnels) and a few
//! fixed sets (status codes, reasons), never from free-form request data, so cardinality stays
//! bounded.
//!
//! Counting is on every request's path, so a series already seen is found without a lock held
//! for writing and without allocating: an index by a hash of the name and label values, read
//! under a shared lock, points at the series' atomic cell. Only a series' first use takes the
//! exclusive locks (and allocates its key).
//!
//! Beside the counters, [`Window`]s count the same kind of series over the last minute only
//! (requests per route, for the status page's observed split); they are read through the API's
//! `GET /v1/status`, not rendered here.

mod window;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Help text of every metric the edge exports, in the order they are rendered.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "postern_edge_api_requests_total",
        "counter",
        "Control API requests by method and status.",
    ),
    (
        "postern_edge_requests_total",
        "counter",
        "Public requests by hostname and status.",
    ),
    (
        "postern_edge_route_requests_total",
        "counter",
        "Public requests by hostname, route (its selector, keys sorted) and status.",
    ),
    (
        "postern_edge_routed_requests_total",
        "counter",
        "Public requests sent to a connector, by hostname, route (empty for a hostname bound to \
         one tunnel), release (the `release` label of the tunnel that served it) and status.",
    ),
    (
        "postern_edge_routed_errors_total",
        "counter",
        "Public requests sent to a connector that were answered with a 5xx status, by \
         hostname, route and release.",
    ),
    (
        "postern_edge_routed_request_duration_seconds",
        "histogram",
        "Seconds from a public request's arrival to its response head, for requests sent to \
         a connector, by hostname, route and release.",
    ),
    (
        "postern_edge_policy_decisions_total",
        "counter",
        "Policy decisions by policy, hostname, decision and reason.",
    ),
    (
        "postern_edge_connectors",
        "gauge",
        "Live connector connections by tunnel.",
    ),
    (
        "postern_edge_route_ejected",
        "gauge",
        "1 for each weighted route out of rotation, by hostname, path prefix (empty for the \
         hostname's own routes), route and reason (error_rate, consecutive_failures, \
         origin_unhealthy).",
    ),
    (
        "postern_edge_certificate_expiry_timestamp_seconds",
        "gauge",
        "When each public certificate (ACME or uploaded) expires, Unix seconds, by its names \
         (comma-separated) and source.",
    ),
    (
        "postern_edge_acme_orders_total",
        "counter",
        "ACME orders this node made, by outcome (issued, failed).",
    ),
    (
        "postern_edge_tunnel_sessions_total",
        "counter",
        "Tunnel sessions accepted, by outcome.",
    ),
    (
        CONFIG_PUSHES,
        "counter",
        "Configuration messages sent to connectors, by kind (snapshot: everything the tunnel serves; delta: what changed).",
    ),
    (
        CONFIG_PUSH_BYTES,
        "counter",
        "Bytes of the configuration messages sent to connectors, by kind.",
    ),
    (
        "postern_edge_enrollments_total",
        "counter",
        "Enrolment attempts by outcome.",
    ),
    (
        "postern_edge_certificate_renewals_total",
        "counter",
        "Renewal requests a tunnel connection made beyond what a connector needs, refused \
         (outcome refused).",
    ),
    (
        "postern_edge_visitor_connections_refused_total",
        "counter",
        "Visitor connections closed at once, by reason (client_share: the client, an IPv4 \
         address or an IPv6 /64, already held --max-connections-per-ip).",
    ),
    (
        "postern_edge_worker_handoffs_total",
        "counter",
        "Public requests sent on a tunnel connection of another worker than the one serving \
         them (the connector chosen had no connection on that worker): each is handed between threads.",
    ),
    (
        "postern_edge_tcp_connections_total",
        "counter",
        "Connections to TCP services, by service and outcome: carried (through a tunnel to the \
         origin), or why the edge closed it at once (ip, rate_limit and the other policy \
         reasons, client_share, no_connector, no_stream_slot, stale, tunnel_error, \
         origin_unreachable). A TLS passthrough hostname's connections are counted here too, \
         its hostname as the service.",
    ),
    (
        "postern_edge_tcp_bytes_total",
        "counter",
        "Bytes carried for TCP services, by service and direction (to_origin, to_visitor), \
         counted when a connection ends.",
    ),
    (
        "postern_edge_tcp_connection_duration_seconds",
        "histogram",
        "Seconds a carried TCP connection lasted, by service.",
    ),
    (
        "postern_edge_dns_queries_total",
        "counter",
        "DNS queries by response code.",
    ),
    (
        "postern_edge_dns_rate_limited_total",
        "counter",
        "DNS answers over UDP beyond --dns-rate-limit, by what was sent instead: nothing \
         (dropped) or a truncated answer (truncated).",
    ),
    (
        "postern_edge_dns_tcp_connections_closed_total",
        "counter",
        "DNS TCP connections the edge closed on its own, by reason: idle (no query within \
         --dns-tcp-idle-timeout), evicted (idle longest when a new connection came at \
         --dns-tcp-max-connections), refused (at the cap with none idle).",
    ),
];

pub(crate) use window::{WINDOW_SECONDS, Window};

/// Configuration messages sent to connectors, by kind.
pub(crate) const CONFIG_PUSHES: &str = "postern_edge_config_pushes_total";

/// Bytes of the configuration messages sent to connectors, by kind.
pub(crate) const CONFIG_PUSH_BYTES: &str = "postern_edge_config_push_bytes_total";

/// The [`Window`] of requests per route: by `hostname` and `route`, like
/// `postern_edge_route_requests_total` without the status.
pub(crate) const RECENT_ROUTE_REQUESTS: &str = "postern_edge_route_requests_recent";

type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// A value computed at scrape time (a gauge), with its labels.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// The metric family.
    pub(crate) name: &'static str,
    /// Label names and values.
    pub(crate) labels: Vec<(&'static str, String)>,
    /// The value.
    pub(crate) value: f64,
}

/// Upper bounds, in seconds, of the buckets of every latency histogram.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram over [`LATENCY_BUCKETS`]: observing is a few atomic adds, no lock.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts one observation of `elapsed`.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many observations were made.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes `<name>_bucket` (cumulative, with `le`), `<name>_sum` and `<name>_count`.
    fn render(&self, out: &mut String, name: &str, labels: &[(&'static str, String)]) {
        let mut cumulative = 0u64;
        let bounds = LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()));
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            cumulative += bucket.load(Ordering::Relaxed);
            let mut with_le = labels.to_vec();
            with_le.push(("le", bound));
            write_sample(out, &format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        write_sample(out, &format!("{name}_sum"), labels, sum);
        write_sample(out, &format!("{name}_count"), labels, cumulative as f64);
    }
}

/// Cells of one kind (counters or histograms) by series: the ordered map renders them, the
/// index finds a known one on the hot path.
struct Cells<T> {
    ordered: Mutex<BTreeMap<SeriesKey, Arc<T>>>,
    /// By [`series_hash`]; a bucket holds every series with that hash.
    index: RwLock<Index<T>>,
}

impl<T> Default for Cells<T> {
    fn default() -> Self {
        Self {
            ordered: Mutex::default(),
            index: RwLock::default(),
        }
    }
}

impl<T: Default> Cells<T> {
    /// Runs `use_cell` on the cell of a series, creating the series on first use.
    fn with<R>(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        use_cell: impl FnOnce(&Arc<T>) -> R,
    ) -> R {
        self.with_init(name, labels, T::default, use_cell)
    }
}

impl<T> Cells<T> {
    /// Runs `use_cell` on the cell of a series, creating it with `init` on first use.
    fn with_init<R>(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        init: impl FnOnce() -> T,
        use_cell: impl FnOnce(&Arc<T>) -> R,
    ) -> R {
        let hash = series_hash(name, labels);
        {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            if let Some(cell) = find(&index, hash, name, labels) {
                return use_cell(cell);
            }
        }
        let key: SeriesKey = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        let cell = {
            let mut ordered = self.ordered.lock().unwrap_or_else(|p| p.into_inner());
            ordered
                .entry(key.clone())
                .or_insert_with(|| Arc::new(init()))
                .clone()
        };
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if find(&index, hash, name, labels).is_none() {
            index.entry(hash).or_default().push((key, cell.clone()));
        }
        use_cell(&cell)
    }

    /// The cell of a series, if it was ever used.
    fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Option<Arc<T>> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        find(&index, series_hash(name, labels), name, labels).cloned()
    }
}

/// Cells by the hash of their series.
type Index<T> = HashMap<u64, Vec<(SeriesKey, Arc<T>)>, fnv::FnvBuildHasher>;

fn find<'i, T>(
    index: &'i Index<T>,
    hash: u64,
    name: &str,
    labels: &[(&'static str, &str)],
) -> Option<&'i Arc<T>> {
    index.get(&hash)?.iter().find_map(|((n, l), cell)| {
        let same = *n == name
            && l.len() == labels.len()
            && l.iter()
                .zip(labels)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2);
        same.then_some(cell)
    })
}

/// A hash of a series' name and labels. Not keyed (FNV, several times cheaper than SipHash on
/// these short strings, and it runs for every request): label values are declared objects,
/// not request data.
fn series_hash(name: &str, labels: &[(&'static str, &str)]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    name.hash(&mut hasher);
    for (key, value) in labels {
        key.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

/// The edge's metrics registry.
#[derive(Default)]
pub(crate) struct Metrics {
    series: Cells<AtomicU64>,
    histograms: Cells<Histogram>,
    windows: Cells<Window>,
    /// The cells of public requests by hostname, route, release and status (not rendered).
    requests: Cells<RequestCells>,
}

/// What the edge knows of a public request once it is answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicRequest<'a> {
    /// The hostname it was for (empty when it had none the edge serves).
    pub(crate) hostname: &'a str,
    /// The selector of the route it took, when its hostname has routes.
    pub(crate) route: Option<&'a str>,
    /// The `release` label of the tunnel it was sent to (empty when it has none); `None`
    /// when it was not sent to a connector.
    pub(crate) release: Option<&'a str>,
    /// The status it was answered with.
    pub(crate) status: http::StatusCode,
}

/// Pseudo-series name of [`RequestCells`] in their index.
const REQUEST_CELLS: &str = "public_request_cells";

/// Every cell a public request of one hostname, route, release and status updates, so that
/// counting it is one lookup, not one per series.
struct RequestCells {
    /// `postern_edge_requests_total`.
    requests: Arc<AtomicU64>,
    /// `postern_edge_route_requests_total` and the route's [`RECENT_ROUTE_REQUESTS`] window.
    route: Option<(Arc<AtomicU64>, Arc<Window>)>,
    /// Set when the request was sent to a connector.
    routed: Option<RoutedCells>,
}

/// The cells of a public request sent to a connector.
struct RoutedCells {
    /// `postern_edge_routed_requests_total`.
    requests: Arc<AtomicU64>,
    /// `postern_edge_routed_errors_total`, for a 5xx status only.
    errors: Option<Arc<AtomicU64>>,
    /// `postern_edge_routed_request_duration_seconds`.
    duration: Arc<Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Counts a public request in every series it belongs to: by hostname and status; by
    /// route (and in the route's window of the last minute); by route and release, with its
    /// duration, when it was sent to a connector.
    pub(crate) fn count_request(&self, request: &PublicRequest<'_>, elapsed: Duration) {
        let mut labels = [
            ("hostname", request.hostname),
            ("status", request.status.as_str()),
            ("", ""),
            ("", ""),
        ];
        let mut used = 2;
        for (key, value) in [("route", request.route), ("release", request.release)] {
            if let Some(value) = value {
                labels[used] = (key, value);
                used += 1;
            }
        }
        let labels = labels.get(..used).unwrap_or_default();
        self.requests.with_init(
            REQUEST_CELLS,
            labels,
            || self.request_cells(request),
            |cells| {
                cells.requests.fetch_add(1, Ordering::Relaxed);
                if let Some((counter, window)) = &cells.route {
                    counter.fetch_add(1, Ordering::Relaxed);
                    window.add();
                }
                if let Some(routed) = &cells.routed {
                    routed.requests.fetch_add(1, Ordering::Relaxed);
                    if let Some(errors) = &routed.errors {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    routed.duration.observe(elapsed);
                }
            },
        );
    }

    fn request_cells(&self, request: &PublicRequest<'_>) -> RequestCells {
        let PublicRequest {
            hostname,
            route,
            release,
            status,
        } = *request;
        let status = status.as_str();
        let route_cells = route.map(|route| {
            (
                self.counter(
                    "postern_edge_route_requests_total",
                    &[("hostname", hostname), ("route", route), ("status", status)],
                ),
                self.windows.with(
                    RECENT_ROUTE_REQUESTS,
                    &[("hostname", hostname), ("route", route)],
                    Arc::clone,
                ),
            )
        });
        let routed = release.map(|release| {
            let route = route.unwrap_or("");
            let labels = [
                ("hostname", hostname),
                ("route", route),
                ("release", release),
            ];
            RoutedCells {
                requests: self.counter(
                    "postern_edge_routed_requests_total",
                    &[
                        ("hostname", hostname),
                        ("route", route),
                        ("release", release),
                        ("status", status),
                    ],
                ),
                errors: request
                    .status
                    .is_server_error()
                    .then(|| self.counter("postern_edge_routed_errors_total", &labels)),
                duration: self.histogram("postern_edge_routed_request_duration_seconds", &labels),
            }
        });
        RequestCells {
            requests: self.counter(
                "postern_edge_requests_total",
                &[("hostname", hostname), ("status", status)],
            ),
            route: route_cells,
            routed,
        }
    }

    /// Adds 1 to a counter.
    pub(crate) fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Adds `value` to a counter.
    pub(crate) fn add(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        self.series.with(name, labels, |cell| {
            cell.fetch_add(value, Ordering::Relaxed);
        });
    }

    /// The cell of one series, for callers that update it often.
    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<AtomicU64> {
        self.series.with(name, labels, Arc::clone)
    }

    /// The histogram of one series, for callers that observe into it.
    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Histogram> {
        self.histograms.with(name, labels, Arc::clone)
    }

    /// The current value of one series (0 when it was never touched).
    #[cfg(test)]
    pub(crate) fn value(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        self.series
            .get(name, labels)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every series of the counter `name` that was ever used, with its labels and value, in
    /// label order.
    pub(crate) fn series(&self, name: &'static str) -> Vec<(Vec<(&'static str, String)>, u64)> {
        let ordered = self
            .series
            .ordered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ordered
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, labels), cell)| (labels.clone(), cell.load(Ordering::Relaxed)))
            .collect()
    }

    /// Counts one event now in the [`Window`] of one series.
    #[cfg(test)]
    pub(crate) fn count_recent(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.windows.with(name, labels, |window| window.add());
    }

    /// The events of the last [`WINDOW_SECONDS`] in the [`Window`] of one series (0 when it was
    /// never touched).
    pub(crate) fn recent(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        self.windows.get(name, labels).map_or(0, |w| w.total())
    }

    /// Renders every series, plus `gauges` computed at scrape time.
    pub(crate) fn render(&self, gauges: &[Sample]) -> String {
        let series = self
            .series
            .ordered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let histograms = self
            .histograms
            .ordered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for ((name, labels), value) in series.iter().filter(|((n, _), _)| n == family) {
                write_sample(&mut out, name, labels, value.load(Ordering::Relaxed) as f64);
            }
            for ((name, labels), histogram) in histograms.iter().filter(|((n, _), _)| n == family) {
                histogram.render(&mut out, name, labels);
            }
            for sample in gauges.iter().filter(|s| s.name == *family) {
                write_sample(&mut out, sample.name, &sample.labels, sample.value);
            }
        }
        out
    }
}

fn write_sample(out: &mut String, name: &str, labels: &[(&'static str, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{key}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_request_is_counted_in_each_series_it_belongs_to() {
        let metrics = Metrics::default();
        let canary = PublicRequest {
            hostname: "split.example.com",
            route: Some("release=canary"),
            release: Some("canary"),
            status: http::StatusCode::OK,
        };
        let failed = PublicRequest {
            status: http::StatusCode::BAD_GATEWAY,
            ..canary
        };
        let unrouted = PublicRequest {
            hostname: "",
            route: None,
            release: None,
            status: http::StatusCode::NOT_FOUND,
        };
        for _ in 0..3 {
            metrics.count_request(&canary, Duration::from_millis(2));
        }
        metrics.count_request(&failed, Duration::from_millis(40));
        metrics.count_request(&unrouted, Duration::ZERO);

        let host = ("hostname", "split.example.com");
        let route = ("route", "release=canary");
        let release = ("release", "canary");
        let value = |name, labels: &[(&'static str, &str)]| metrics.value(name, labels);
        assert_eq!(
            value("postern_edge_requests_total", &[host, ("status", "200")]),
            3
        );
        assert_eq!(
            value("postern_edge_requests_total", &[host, ("status", "502")]),
            1
        );
        assert_eq!(
            value(
                "postern_edge_requests_total",
                &[("hostname", ""), ("status", "404")]
            ),
            1
        );
        assert_eq!(
            value(
                "postern_edge_route_requests_total",
                &[host, route, ("status", "200")]
            ),
            3
        );
        assert_eq!(
            value(
                "postern_edge_routed_requests_total",
                &[host, route, release, ("status", "502")]
            ),
            1
        );
        assert_eq!(
            value("postern_edge_routed_errors_total", &[host, route, release]),
            1
        );
        assert_eq!(metrics.recent(RECENT_ROUTE_REQUESTS, &[host, route]), 4);
        let durations = metrics.histogram(
            "postern_edge_routed_request_duration_seconds",
            &[host, route, release],
        );
        assert_eq!(durations.count(), 4);
        // Only the series a request belongs to exist: no route or routed series for the 404.
        assert_eq!(metrics.series("postern_edge_route_requests_total").len(), 2);
        assert_eq!(metrics.series("postern_edge_routed_errors_total").len(), 1);
    }

    #[test]
    fn counters_render_in_text_format() {
        let metrics = Metrics::default();
        metrics.inc(
            "postern_edge_route_requests_total",
            &[
                ("hostname", "split.example.com"),
                ("route", "release=canary"),
                ("status", "200"),
            ],
        );
        metrics.add(
            "postern_edge_requests_total",
            &[("hostname", "a\"b"), ("status", "200")],
            2,
        );
        let text = metrics.render(&[Sample {
            name: "postern_edge_connectors",
            labels: vec![("tunnel", "t".into())],
            value: 3.0,
        }]);
        assert!(text.contains(
            "postern_edge_route_requests_total{hostname=\"split.example.com\",route=\"release=canary\",status=\"200\"} 1\n"
        ));
        assert!(
            text.contains("postern_edge_requests_total{hostname=\"a\\\"b\",status=\"200\"} 2\n")
        );
        assert!(text.contains("postern_edge_connectors{tunnel=\"t\"} 3\n"));
        assert!(text.contains("# TYPE postern_edge_connectors gauge\n"));
    }

    #[test]
    fn a_series_is_one_cell_however_it_is_reached() {
        let metrics = Metrics::default();
        let labels = [("hostname", "a.example.com"), ("status", "200")];
        let cell = metrics.counter("postern_edge_requests_total", &labels);
        metrics.inc("postern_edge_requests_total", &labels);
        metrics.add("postern_edge_requests_total", &labels, 2);
        cell.fetch_add(1, Ordering::Relaxed);
        assert_eq!(metrics.value("postern_edge_requests_total", &labels), 4);
        // Same values under other names, or in another order, are other series.
        let swapped = [("status", "200"), ("hostname", "a.example.com")];
        assert_eq!(metrics.value("postern_edge_requests_total", &swapped), 0);
        assert_eq!(
            metrics.value("postern_edge_route_requests_total", &labels),
            0
        );
        let text = metrics.render(&[]);
        assert_eq!(
            text.matches("postern_edge_requests_total{").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn series_lists_a_family_and_windows_count_apart_from_it() {
        let metrics = Metrics::default();
        let decisions = "postern_edge_policy_decisions_total";
        metrics.add(decisions, &[("policy", "b"), ("decision", "deny")], 2);
        metrics.inc(decisions, &[("policy", "a"), ("decision", "allow")]);
        metrics.inc("postern_edge_requests_total", &[("hostname", "x")]);
        let listed = metrics.series(decisions);
        assert_eq!(
            listed,
            vec![
                (
                    vec![
                        ("policy", "a".to_string()),
                        ("decision", "allow".to_string())
                    ],
                    1
                ),
                (
                    vec![
                        ("policy", "b".to_string()),
                        ("decision", "deny".to_string())
                    ],
                    2
                ),
            ]
        );
        let route = [
            ("hostname", "split.example.com"),
            ("route", "release=canary"),
        ];
        assert_eq!(metrics.recent(RECENT_ROUTE_REQUESTS, &route), 0);
        metrics.count_recent(RECENT_ROUTE_REQUESTS, &route);
        metrics.count_recent(RECENT_ROUTE_REQUESTS, &route);
        assert_eq!(metrics.recent(RECENT_ROUTE_REQUESTS, &route), 2);
        // Windows are not counters: neither listed nor rendered.
        assert!(metrics.series(RECENT_ROUTE_REQUESTS).is_empty());
        assert!(!metrics.render(&[]).contains(RECENT_ROUTE_REQUESTS));
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let metrics = Metrics::default();
        let labels = [
            ("hostname", "split.example.com"),
            ("route", "release=canary"),
            ("release", "canary"),
        ];
        let histogram = metrics.histogram("postern_edge_routed_request_duration_seconds", &labels);
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(40));
        histogram.observe(Duration::from_secs(60));
        assert_eq!(histogram.count(), 3);
        let text = metrics.render(&[]);
        let series = "postern_edge_routed_request_duration_seconds";
        let at = "hostname=\"split.example.com\",route=\"release=canary\",release=\"canary\"";
        for (le, count) in [
            ("0.001", 0),
            ("0.005", 1),
            ("0.05", 2),
            ("30", 2),
            ("+Inf", 3),
        ] {
            let line = format!("{series}_bucket{{{at},le=\"{le}\"}} {count}\n");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(
            text.contains(&format!("{series}_count{{{at}}} 3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{series}_sum{{{at}}} 60.043\n")),
            "{text}"
        );
        assert!(text.contains(&format!("# TYPE {series} histogram\n")));
    }
}
