//! `FakeConnector`: a connector written in the test. It holds a client certificate made with
//! the edge's own CA (read from the edge's store, as a thief of the CA or of one certificate
//! would have it) and speaks the tunnel protocol far enough to be registered: it answers the
//! hello, keeps the event stream open and acknowledges configurations. What a real connector
//! never does is then up to the test: announce an oversized connector id, flood renewal
//! requests, never answer a visitor's request, open more connections than a tunnel may hold.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use postern_schema::ids::TunnelId;
use postern_schema::wire::{self, ConfigAck, ConfigPush, Event, HelloAnswer};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

use crate::connector::eventually;
use crate::origin::TestBody;
use crate::tunnel_dial::dial;

/// A client certificate chain and its key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The CA of the edge whose data directory is `data_dir`, read from its embedded store (the
/// `settings` row `ca`): the edge's API never gives out the CA key, so the test reads the
/// store file as someone who stole it would.
pub fn edge_ca(data_dir: &Path) -> Issuer<'static, KeyPair> {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("postern.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the store");
    let stored: String = db
        .query_row("SELECT value FROM settings WHERE key = 'ca'", [], |row| {
            row.get(0)
        })
        .expect("the CA setting");
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("CA JSON");
    let key = KeyPair::from_pem(stored["key_pem"].as_str().expect("key_pem")).expect("key");
    Issuer::from_ca_cert_pem(stored["cert_pem"].as_str().expect("cert_pem"), key).expect("issuer")
}

/// A valid client certificate of `tunnel`, signed by `ca`, for a fresh key.
pub fn tunnel_identity(ca: &Issuer<'static, KeyPair>, tunnel: TunnelId) -> Identity {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("tunnel {tunnel}"));
    params.subject_alt_names = vec![SanType::URI(
        format!("urn:postern:tunnel:{tunnel}")
            .try_into()
            .expect("uri"),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    let cert = params.signed_by(&key, ca).expect("sign");
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// A renewal request as a connector sends it: a CSR for a fresh key, base64 DER.
pub fn renewal_event() -> Event {
    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr");
    Event::Renew {
        csr_der: wire::encode_der(csr.der()),
    }
}

/// What a visitor's request gets from a fake connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visitors {
    /// 200 `fake connector` at once.
    Answer,
    /// Nothing, ever: the stream stays open.
    NeverAnswer,
}

/// How a fake connector behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The connector id its hello answer announces.
    pub connector_id: String,
    /// The version its hello answer announces.
    pub version: String,
    /// What visitors' requests get.
    pub visitors: Visitors,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            connector_id: "fake-connector".into(),
            version: "0.0.0-fake".into(),
            visitors: Visitors::Answer,
        }
    }
}

/// A connected fake connector; its connection closes when dropped.
pub struct FakeConnector {
    state: Arc<State>,
    events: mpsc::UnboundedSender<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    options: FakeOptions,
    hellos: AtomicUsize,
    applied: AtomicU64,
    certificates: AtomicUsize,
    visitor_requests: AtomicUsize,
    closed: AtomicBool,
    events: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
}

impl FakeConnector {
    /// Dials the tunnel listener at `addr` with `identity` and serves the edge's HTTP/2 client
    /// in the background. Returns once TLS is up (the edge may still refuse the connection).
    pub async fn connect(
        addr: SocketAddr,
        identity: Identity,
        options: FakeOptions,
    ) -> std::io::Result<Self> {
        let tls = dial(addr, wire::ALPN_TUNNEL, Some(identity)).await?;
        let (events, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            options,
            hellos: AtomicUsize::new(0),
            applied: AtomicU64::new(0),
            certificates: AtomicUsize::new(0),
            visitor_requests: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            events: Mutex::new(Some(receiver)),
        });
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn({
                    let state = state.clone();
                    move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .enable_connect_protocol()
                    .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                state.closed.store(true, Ordering::SeqCst);
            })
        };
        Ok(Self {
            state,
            events,
            task,
        })
    }

    /// Waits (at most `within`) until the edge has pushed a configuration this connector
    /// acknowledged (so the edge registered it); `false` if the edge closed the connection or
    /// nothing came.
    pub async fn registered_within(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.state.applied.load(Ordering::SeqCst) > 0 {
                return true;
            }
            if self.is_closed() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Waits (at most `within`) until the edge has closed the connection.
    pub async fn closed_within(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.is_closed() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Has the connection ended?
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst)
    }

    /// How many hello requests the edge sent.
    pub fn hellos(&self) -> usize {
        self.state.hellos.load(Ordering::SeqCst)
    }

    /// How many renewed certificates the edge delivered.
    pub fn certificates(&self) -> usize {
        self.state.certificates.load(Ordering::SeqCst)
    }

    /// How many visitor requests reached this connector.
    pub fn visitor_requests(&self) -> usize {
        self.state.visitor_requests.load(Ordering::SeqCst)
    }

    /// Sends `event` on the event stream.
    pub fn send_event(&self, event: &Event) {
        let mut line = wire::to_json(event);
        line.push(b'\n');
        let _ = self.events.send(Bytes::from(line));
    }

    /// Waits until `count` certificates came, at most `within`; returns how many came.
    pub async fn certificates_within(&self, count: usize, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline && self.certificates() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.certificates()
    }
}

impl Drop for FakeConnector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `connector` has said hello or the edge closed it; panics after `within`.
pub async fn hello_or_close(connector: &FakeConnector, within: Duration) {
    eventually(within, "a hello or a closed connection", || async {
        (connector.hellos() > 0 || connector.is_closed()).then_some(())
    })
    .await
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<TestBody> {
    match request.uri().path() {
        wire::HELLO_PATH => {
            state.hellos.fetch_add(1, Ordering::SeqCst);
            json(&HelloAnswer {
                connector_id: state.options.connector_id.clone(),
                version: state.options.version.clone(),
                draining: false,
                deltas: false,
            })
        }
        wire::EVENTS_PATH => {
            let receiver = state
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match receiver {
                Some(receiver) => Response::new(ChannelBody(receiver).boxed_unsync()),
                None => status(StatusCode::CONFLICT),
            }
        }
        wire::CONFIG_PATH => {
            let Ok(body) = request.into_body().collect().await else {
                return status(StatusCode::BAD_REQUEST);
            };
            let Ok(push) = wire::from_json::<ConfigPush>(&body.to_bytes()) else {
                return status(StatusCode::BAD_REQUEST);
            };
            state
                .applied
                .fetch_max(push.version.max(1), Ordering::SeqCst);
            json(&ConfigAck {
                applied_version: push.version,
                refused: Vec::new(),
            })
        }
        wire::DRAIN_PATH => json(&serde_json::json!({})),
        wire::CERTIFICATE_PATH => {
            state.certificates.fetch_add(1, Ordering::SeqCst);
            json(&serde_json::json!({}))
        }
        _ => {
            state.visitor_requests.fetch_add(1, Ordering::SeqCst);
            match state.options.visitors {
                Visitors::Answer => Response::new(
                    Full::new(Bytes::from_static(b"fake connector"))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                ),
                Visitors::NeverAnswer => std::future::pending().await,
            }
        }
    }
}

fn json<T: serde::Serialize>(message: &T) -> Response<TestBody> {
    Response::new(
        Full::new(Bytes::from(wire::to_json(message)))
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

fn status(code: StatusCode) -> Response<TestBody> {
    let mut response = json(&serde_json::json!({}));
    *response.status_mut() = code;
    response
}

/// The event stream's body: lines as the test sends them; open until the connector goes.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}
