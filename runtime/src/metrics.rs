//! The connector's own metrics and readiness, served with `--metrics ADDR`: `/ready` answers
//! 200 once at least one tunnel connection is registered with the edge (503 before), and
//! `/metrics` is Prometheus text.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{BoxBody, full};

/// Status codes are 100 to 999: one counter each, so counting a request is one atomic add.
const STATUSES: usize = 1000;

/// Counters and gauges of one connector process.
#[derive(Debug)]
pub struct ConnectorMetrics {
    registered: AtomicU64,
    reconnects: AtomicU64,
    config_version: AtomicU64,
    /// Visitor requests by status code (the index).
    requests: Box<[AtomicU64]>,
}

impl Default for ConnectorMetrics {
    fn default() -> Self {
        Self {
            registered: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            config_version: AtomicU64::new(0),
            requests: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl ConnectorMetrics {
    /// A tunnel connection was registered (its first config push acknowledged).
    pub(crate) fn connection_up(&self) {
        self.registered.fetch_add(1, Ordering::Relaxed);
    }

    /// A registered tunnel connection ended.
    pub(crate) fn connection_down(&self) {
        self.registered.fetch_sub(1, Ordering::Relaxed);
    }

    /// Registered connections now.
    pub(crate) fn connections(&self) -> u64 {
        self.registered.load(Ordering::Relaxed)
    }

    /// A connection attempt after a failure or loss.
    pub(crate) fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The config version applied.
    pub(crate) fn set_config_version(&self, version: u64) {
        self.config_version.store(version, Ordering::Relaxed);
    }

    /// A visitor request answered with `status`.
    pub(crate) fn request(&self, status: StatusCode) {
        if let Some(counter) = self.requests.get(usize::from(status.as_u16())) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text.
    pub(crate) fn render(&self, connector_id: &str, tunnel_id: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP postern_connector_info The connector process.");
        let _ = writeln!(out, "# TYPE postern_connector_info gauge");
        let _ = writeln!(
            out,
            "postern_connector_info{{connector_id=\"{connector_id}\",tunnel_id=\"{tunnel_id}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP postern_connector_connections Tunnel connections registered with the edge."
        );
        let _ = writeln!(out, "# TYPE postern_connector_connections gauge");
        let _ = writeln!(out, "postern_connector_connections {}", self.connections());
        let _ = writeln!(
            out,
            "# HELP postern_connector_config_version The configuration version applied."
        );
        let _ = writeln!(out, "# TYPE postern_connector_config_version gauge");
        let _ = writeln!(
            out,
            "postern_connector_config_version {}",
            self.config_version.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP postern_connector_reconnects_total Connection attempts after a loss or failure."
        );
        let _ = writeln!(out, "# TYPE postern_connector_reconnects_total counter");
        let _ = writeln!(
            out,
            "postern_connector_reconnects_total {}",
            self.reconnects.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP postern_connector_requests_total Visitor requests by status."
        );
        let _ = writeln!(out, "# TYPE postern_connector_requests_total counter");
        let counted = self
            .requests
            .iter()
            .enumerate()
            .filter_map(|(status, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then_some((status, count))
            });
        for (status, count) in counted {
            let _ = writeln!(
                out,
                "postern_connector_requests_total{{status=\"{status}\"}} {count}"
            );
        }
        out
    }
}

/// Serves `/ready` and `/metrics` on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<ConnectorMetrics>,
    connector_id: String,
    tunnel_id: String,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let metrics = metrics.clone();
        let connector_id = connector_id.clone();
        let tunnel_id = tunnel_id.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = answer(&request, &metrics, &connector_id, &tunnel_id);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

fn answer(
    request: &Request<Incoming>,
    metrics: &ConnectorMetrics,
    connector_id: &str,
    tunnel_id: &str,
) -> Response<BoxBody> {
    let (status, body, content_type) = match request.uri().path() {
        "/ready" if metrics.connections() > 0 => {
            (StatusCode::OK, "ready\n".to_string(), "text/plain")
        }
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the edge yet\n".to_string(),
            "text/plain",
        ),
        "/metrics" => (
            StatusCode::OK,
            metrics.render(connector_id, tunnel_id),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain",
        ),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_status() {
        let metrics = ConnectorMetrics::default();
        metrics.request(StatusCode::OK);
        metrics.request(StatusCode::OK);
        metrics.request(StatusCode::BAD_GATEWAY);
        let text = metrics.render("c", "t");
        assert!(text.contains("postern_connector_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("postern_connector_requests_total{status=\"502\"} 1\n"));
        assert!(!text.contains("status=\"404\""));
    }
}
