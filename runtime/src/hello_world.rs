//! `--hello-world`: a tiny built-in origin on a loopback port, so a tunnel can be tried
//! without a service of one's own. It goes through the same origin path as any service.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{self, BoxBody};

/// Starts the built-in origin on `127.0.0.1:0`; it serves until `cancel`.
pub async fn start(cancel: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(address)
}

async fn answer(request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // Count the body without keeping it.
    let mut received = 0usize;
    let mut incoming = request.into_body();
    while let Some(Ok(frame)) = incoming.frame().await {
        if let Some(data) = frame.data_ref() {
            received += data.len();
        }
    }
    let text = format!(
        "Hello from postern!\n\nThis answer comes from the connector's built-in hello-world origin, through the edge and the tunnel.\n\nhost: {host}\nmethod: {method}\npath: {path}\nbody bytes: {received}\n"
    );
    let mut response = Response::new(body::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
