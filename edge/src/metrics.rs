//! Prometheus counters and gauges, rendered in the text exposition format at `/metrics`.
//! Label values come from declared objects (hostnames, policies, routes, tunnels) and a few
//! fixed sets (status codes, reasons), never from free-form request data, so cardinality stays
//! bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
        "postern_edge_policy_decisions_total",
        "counter",
        "Policy decisions by policy, hostname, decision and reason.",
    ),
    (
        "postern_edge_request_duration_seconds_sum",
        "counter",
        "Total seconds spent on public requests, by hostname.",
    ),
    (
        "postern_edge_connectors",
        "gauge",
        "Live connector connections by tunnel.",
    ),
    (
        "postern_edge_tunnel_sessions_total",
        "counter",
        "Tunnel sessions accepted, by outcome.",
    ),
    (
        "postern_edge_enrollments_total",
        "counter",
        "Enrolment attempts by outcome.",
    ),
    (
        "postern_edge_dns_queries_total",
        "counter",
        "DNS queries by response code.",
    ),
];

type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// A value computed at scrape time (a gauge), with its labels.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric family.
    pub name: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// The edge's metrics registry.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<SeriesKey, Arc<AtomicU64>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Adds 1 to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Adds `value` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        self.counter(name, labels)
            .fetch_add(value, Ordering::Relaxed);
    }

    /// The cell of one series, for callers that update it often.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Arc<AtomicU64> {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.entry(key).or_default().clone()
    }

    /// The current value of one series (0 when it was never touched).
    pub fn value(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key: SeriesKey = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Renders every series, plus `gauges` computed at scrape time.
    pub fn render(&self, gauges: &[Sample]) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for ((name, labels), value) in series.iter().filter(|((n, _), _)| n == family) {
                write_sample(&mut out, name, labels, value.load(Ordering::Relaxed) as f64);
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
}
