//! `/v1/requests`: the access log's lines as they are written on this node (one JSON object per
//! line, `application/x-ndjson`): the last ones it logged, or with `follow=true` every new one
//! until the client goes away, like `cloudflared tail`; `hostname=` keeps one hostname's.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::request::Query;
use super::state::ApiState;
use crate::access_log::Line;

pub(super) fn router() -> Router<ApiState> {
    Router::new().route("/v1/requests", get(requests))
}

#[derive(Deserialize)]
struct RequestsQuery {
    follow: Option<bool>,
    hostname: Option<String>,
}

async fn requests(
    State(state): State<ApiState>,
    Query(query): Query<RequestsQuery>,
) -> Result<Response, ApiError> {
    let hostname = query.hostname.map(|name| name.to_ascii_lowercase());
    let body = if query.follow.unwrap_or(false) {
        follow(&state, hostname)
    } else {
        let mut text = String::new();
        for line in state.access_log.recent() {
            if wanted(&line, hostname.as_deref()) {
                text.push_str(&line.text);
                text.push('\n');
            }
        }
        Body::from(text)
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// Every line from now on, each sent as it is written, until the client goes away or the edge
/// shuts down. A follower that falls too far behind gets `{"missed": N}` in place of the lines
/// it missed.
fn follow(state: &ApiState, hostname: Option<String>) -> Body {
    let lines = state.access_log.follow();
    let closing = state.access_log.closing();
    let stream = futures::stream::unfold(
        (lines, closing, hostname),
        |(mut lines, closing, hostname)| async move {
            loop {
                let received = tokio::select! {
                    _ = closing.cancelled() => return None,
                    received = lines.recv() => received,
                };
                let chunk = match received {
                    Ok(line) if wanted(&line, hostname.as_deref()) => {
                        let mut text = String::with_capacity(line.text.len() + 1);
                        text.push_str(&line.text);
                        text.push('\n');
                        text
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => format!("{{\"missed\":{missed}}}\n"),
                    Err(RecvError::Closed) => return None,
                };
                let frame = Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(chunk)));
                return Some((frame, (lines, closing, hostname)));
            }
        },
    );
    Body::new(StreamBody::new(stream))
}

fn wanted(line: &Arc<Line>, hostname: Option<&str>) -> bool {
    hostname.is_none_or(|hostname| line.host == hostname)
}
