//! The tunnel protocol's messages: enrolment frames, and the control requests the edge sends
//! to a connector under [`CONTROL_PREFIX`] (hello, config push, events, drain, certificate).
//! `docs/guides/tunnel-protocol.md` tells the whole exchange; this module is its only vocabulary.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::api::OriginSettings;
use crate::ids::TunnelId;
use crate::secret::Secret;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and may not be
/// sent on HTTP/2: neither the edge nor the connector passes them on. (`Host` is here too: each
/// hop sets its own, from `:authority` or the origin's settings.)
pub static HOP_BY_HOP: [http::HeaderName; 9] = [
    http::header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TE,
    http::HeaderName::from_static("http2-settings"),
    http::header::HOST,
];

/// Removes hop-by-hop headers, including those the `Connection` header names; keeps
/// `TE: trailers`, which HTTP/2 allows and gRPC needs.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, HeaderName, HeaderValue, TE};
    // It runs on every request and response at both ends: one pass over the names present (a
    // handful) finds what to remove, instead of a hashed lookup for every hop-by-hop name.
    let hops = &HOP_BY_HOP;
    let mut present = hops.each_ref().map(|_| false);
    for name in headers.keys() {
        if let Some(index) = hops.iter().position(|hop| hop == name) {
            present[index] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    let wants_trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for name in named {
        headers.remove(name);
    }
    for (name, present) in hops.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    if wants_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// ALPN of an authenticated tunnel connection (TLS 1.3, client certificate required).
pub const ALPN_TUNNEL: &[u8] = b"postern/1";

/// ALPN of an enrolment connection (no client certificate; exactly one request).
pub const ALPN_ENROLL: &[u8] = b"postern-enroll/1";

/// ALPN of a connection between two edge nodes on the tunnel port: TLS 1.3 with both sides
/// presenting a node certificate from the shared edge CA, then HTTP/2 with the forwarding node
/// as the client. Every stream is a visitor request forwarded to a node that holds a connection.
pub const ALPN_PEER: &[u8] = b"postern-peer/1";

/// ALPN a connector offers, alone, to check that an edge address accepts connections again
/// (before moving a connection back to it): the edge closes such a connection after the
/// ClientHello, without answering.
pub const ALPN_PROBE: &[u8] = b"postern-probe/1";

/// The TLS server name of an edge node's certificate on `postern-peer/1`. The node itself is
/// named by the certificate's URI SAN `urn:postern:node:<node id>`.
pub const PEER_SERVER_NAME: &str = "peer.postern.invalid";

/// Request header on a forwarded stream: the id of the node the visitor reached, which applied
/// the hostname's policies. A node never forwards such a request again.
pub const FORWARDED_BY_HEADER: &str = "x-postern-forwarded-by";

/// Request header on a forwarded stream: the catalog revision the forwarding node routed with;
/// the receiving node waits briefly to have caught up with it.
pub const REVISION_HEADER: &str = "x-postern-revision";

/// The TLS server name the connector expects on the edge's tunnel certificate. The edge CA is
/// pinned, so the name only has to be one no public hostname can take (`.invalid`).
pub const TUNNEL_SERVER_NAME: &str = "tunnel.postern.invalid";

/// The `:authority` of every control request. It contains `_`, which no hostname may, so a
/// visitor request can never be mistaken for a control request.
pub const CONTROL_AUTHORITY: &str = "_postern";

/// The path prefix of control requests.
pub const CONTROL_PREFIX: &str = "/.postern/";

/// `POST`: the edge introduces the connection ([`Hello`] → [`HelloAnswer`]).
pub const HELLO_PATH: &str = "/.postern/hello";
/// `POST`: the edge pushes the tunnel's configuration ([`ConfigPush`] → [`ConfigAck`]).
pub const CONFIG_PATH: &str = "/.postern/config";
/// `POST`: the edge opens the connector's event stream (newline-delimited [`Event`]s).
pub const EVENTS_PATH: &str = "/.postern/events";
/// `POST`: the edge tells the connector to drain this connection ([`Drain`]).
pub const DRAIN_PATH: &str = "/.postern/drain";
/// `POST`: the edge hands over a renewed client certificate ([`CertificateGrant`]).
pub const CERTIFICATE_PATH: &str = "/.postern/certificate";

/// Request header on visitor streams: the config version the edge routed with. A connector
/// that has applied less waits briefly for the push in flight before answering.
pub const CONFIG_VERSION_HEADER: &str = "x-postern-config-version";

/// Response header from the connector saying why it could not serve a visitor request
/// ([`ConnectorFault`]); the edge strips it and answers with its own status page.
pub const ERROR_HEADER: &str = "x-postern-error";

/// Request header the connector adds towards the origin: which connector forwarded it.
pub const CONNECTOR_HEADER: &str = "x-postern-connector";

/// The longest enrolment frame either side accepts.
pub const MAX_ENROLL_FRAME: usize = 64 * 1024;

/// The longest control message body either side accepts.
pub const MAX_CONTROL_BODY: usize = 8 * 1024 * 1024;

/// The longest event line the edge accepts.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// The largest header list either side sends on a visitor stream, counted as HTTP/2 counts
/// it ([`header_list_size`]): the edge answers larger requests itself (431), the connector
/// larger origin responses (502).
pub const MAX_HEADER_LIST: usize = 32 * 1024;

/// The header list both sides of a tunnel connection accept (their
/// `SETTINGS_MAX_HEADER_LIST_SIZE`): twice [`MAX_HEADER_LIST`]. HTTP/2 tears the whole
/// connection down for a header block far over this setting, so it must stay well above what
/// the other side may send, or one visitor could cut every stream on the connection.
pub const ACCEPTED_HEADER_LIST: u32 = 2 * MAX_HEADER_LIST as u32;

/// HTTP/2 settings both ends of a tunnel connection use: the edge as the client, the
/// connector as the server. Each side grants the other the same windows.
pub mod tuning {
    use std::time::Duration;

    /// How often each side pings an idle tunnel connection; with [`KEEPALIVE_TIMEOUT`], a dead
    /// peer is noticed within about five seconds.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

    /// How long a ping may go unanswered before the connection is declared dead.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

    /// The flow-control window each side grants the other per stream (request bodies to the
    /// connector, response bodies to the edge). 1 MiB is several times a fast link's
    /// bandwidth-delay product, so bulk bodies never wait for WINDOW_UPDATEs, and it bounds
    /// what one stream can make a side buffer. On loopback it moved bulk bodies faster than
    /// 4 MiB did (less memory touched per stream).
    pub const STREAM_WINDOW: u32 = 1024 * 1024;

    /// The connection-level window: several bulk streams at once.
    pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

    /// The largest DATA frame each side accepts: fewer frames (and wake-ups) per bulk body.
    pub const MAX_FRAME: u32 = 64 * 1024;

    /// How much of a body each side queues per stream before waiting for the other.
    pub const MAX_SEND_BUFFER: usize = 1024 * 1024;

    /// The streams a connector serves at once on one connection (its HTTP/2 server announces
    /// it). The edge keeps [`CONTROL_STREAMS`] of them for its control requests (the event
    /// stream stays open) and opens visitor streams on the rest; a request that finds none
    /// free waits a bounded time for one.
    pub const MAX_CONCURRENT_STREAMS: u32 = 200;

    /// The streams of [`MAX_CONCURRENT_STREAMS`] the edge keeps for control requests.
    pub const CONTROL_STREAMS: u32 = 8;
}

/// The size of a header list as HTTP/2 counts it: name, value and 32 bytes per field
/// (RFC 9113 §6.5.2).
pub fn header_list_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// Why a wire message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame is longer than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Its announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The JSON does not match the message.
    #[error("malformed message")]
    Malformed(#[source] serde_json::Error),
    /// A base64 field is not base64.
    #[error("malformed base64 in {field}")]
    Base64 {
        /// The field.
        field: &'static str,
    },
    /// A text field is longer than the protocol allows.
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A text field holds characters other than printable ASCII.
    #[error("{field} holds characters other than printable ASCII")]
    FieldNotPrintable {
        /// The field.
        field: &'static str,
    },
}

// === enrolment ===

/// The one request of an enrolment connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The tunnel to enrol as (from the token).
    pub tunnel_id: TunnelId,
    /// The enrolment secret (from the token).
    pub secret: Secret,
    /// A PKCS#10 certificate signing request for the connector's own key, base64 DER.
    pub csr_der: String,
}

/// The edge's answer to an [`EnrollRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EnrollAnswer {
    /// A client certificate bound to the tunnel, and the CA that signed it (both base64 DER).
    Granted {
        /// The client certificate.
        cert_der: String,
        /// The edge CA certificate.
        ca_der: String,
    },
    /// No certificate.
    Refused {
        /// Why.
        reason: RefusalReason,
        /// A sentence for humans.
        message: String,
    },
}

/// Why an enrolment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The tunnel does not exist (it was deleted). Retrying will not help.
    UnknownTunnel,
    /// The secret is wrong. Retrying will not help.
    BadSecret,
    /// Too many attempts from this address; try again later.
    RateLimited,
    /// The request was malformed.
    BadRequest,
    /// The edge failed; try again later.
    Internal,
}

impl RefusalReason {
    /// Will the same request ever succeed?
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            RefusalReason::UnknownTunnel | RefusalReason::BadSecret | RefusalReason::BadRequest
        )
    }
}

/// An enrolment frame: 4-byte big-endian length, then that many bytes of JSON.
pub fn encode_frame<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    let json = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    frame
}

/// The length announced by a frame header, checked against [`MAX_ENROLL_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_ENROLL_FRAME {
        return Err(WireError::TooLong {
            len,
            max: MAX_ENROLL_FRAME,
        });
    }
    Ok(len)
}

// === control requests ===

/// `POST /.postern/hello`: the first request on a tunnel connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The edge's id for this connection.
    pub connection_id: String,
    /// The tunnel the edge derived from the client certificate.
    pub tunnel_id: TunnelId,
    /// The tunnel's name.
    pub tunnel_name: String,
    /// The edge's software version.
    pub edge_version: String,
    /// How many connections this edge node wants from the connector (one per worker, so
    /// every worker serves the tunnel's requests on a connection of its own); 0 when it has
    /// no wish. A connector whose connection count was not set explicitly opens at least this
    /// many to the node.
    #[serde(default)]
    pub wanted_connections: u32,
}

/// The connector's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAnswer {
    /// The connector process (the same on all its connections).
    pub connector_id: String,
    /// The connector's software version.
    pub version: String,
    /// The connector is shutting down: route nothing new to it.
    #[serde(default)]
    pub draining: bool,
    /// The connector applies deltas ([`ConfigPush::base`]); an older one takes snapshots only.
    #[serde(default)]
    pub deltas: bool,
}

/// The longest `connector_id` a [`HelloAnswer`] may carry (connectors send a UUID).
pub const MAX_CONNECTOR_ID: usize = 128;

/// The longest `version` a [`HelloAnswer`] may carry.
pub const MAX_CONNECTOR_VERSION: usize = 64;

impl HelloAnswer {
    /// Checks what the edge shows and logs of the answer: `connector_id` and `version` are
    /// printable ASCII of at most [`MAX_CONNECTOR_ID`] and [`MAX_CONNECTOR_VERSION`] bytes.
    /// The error names the field and its length, never its content.
    pub fn check(&self) -> Result<(), WireError> {
        check_text("connector_id", &self.connector_id, MAX_CONNECTOR_ID)?;
        check_text("version", &self.version, MAX_CONNECTOR_VERSION)
    }
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), WireError> {
    if text.len() > max {
        return Err(WireError::FieldTooLong {
            field,
            len: text.len(),
            max,
        });
    }
    if !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(WireError::FieldNotPrintable { field });
    }
    Ok(())
}

/// The `:protocol` of an extended CONNECT stream that carries one raw TCP connection.
pub const TCP_PROTOCOL: &str = "postern-tcp";

/// The authority of a [`TCP_PROTOCOL`] stream (it names no hostname).
pub const TCP_AUTHORITY: &str = "_postern-tcp";

/// The header of a [`TCP_PROTOCOL`] stream that names the TCP service (its id).
pub const TCP_SERVICE_HEADER: &str = "x-postern-tcp-service";

/// The header of a [`TCP_PROTOCOL`] stream that carries a visitor's TLS connection to a
/// hostname with [`HostnameConfig::tls_passthrough`] (instead of [`TCP_SERVICE_HEADER`]): it
/// names the hostname, whose `https://` origin the connector dials.
pub const TCP_HOSTNAME_HEADER: &str = "x-postern-tcp-hostname";

/// `POST /.postern/config`: what the tunnel serves, at one version: all of it (a snapshot,
/// without `base`), or only what changed since version `base` (a delta, sent only to a
/// connector that said [`HelloAnswer::deltas`]). A connector that does not serve exactly
/// `base` ignores a delta and acknowledges the version it serves; the edge then sends a
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPush {
    /// Increases with every change (the edge's catalog revision); stale versions are ignored.
    pub version: u64,
    /// A snapshot: the hostnames the tunnel serves, ordered by name. A delta: the hostnames
    /// added or changed since `base`.
    pub hostnames: Vec<HostnameConfig>,
    /// Present on a delta: the version it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
    /// On a delta: the hostnames no longer served since `base`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// The TCP services the tunnel serves, ordered by name: all of them, in a delta too
    /// (absent from older edges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_services: Vec<TcpServiceConfig>,
}

impl ConfigPush {
    /// Everything the tunnel serves at `version`.
    pub fn snapshot(
        version: u64,
        hostnames: Vec<HostnameConfig>,
        tcp_services: Vec<TcpServiceConfig>,
    ) -> Self {
        Self {
            version,
            hostnames,
            base: None,
            removed: Vec::new(),
            tcp_services,
        }
    }
}

/// One TCP service a tunnel serves: the edge opens an extended CONNECT stream with
/// `:protocol` [`TCP_PROTOCOL`] and [`TCP_SERVICE_HEADER`] naming it; the connector dials
/// `service` and splices the two byte streams (half-close passed on both ways).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpServiceConfig {
    /// The service's id (a UUID), as the stream names it.
    pub id: String,
    /// Its name, for logs.
    pub name: String,
    /// Its origin, `tcp://host:port`.
    pub service: String,
}

/// One hostname a tunnel serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostnameConfig {
    /// The hostname.
    pub hostname: String,
    /// Its service: an origin URL or `http_status:NNN`.
    pub service: String,
    /// How to reach the origin.
    #[serde(default)]
    pub origin: OriginSettings,
    /// TLS passes through: the edge sends the visitor's raw TLS bytes on a [`TCP_PROTOCOL`]
    /// stream with [`TCP_HOSTNAME_HEADER`], never an HTTP request (absent from older edges).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_passthrough: bool,
    /// The hostname's path routes this tunnel serves: a request whose path one of them covers
    /// (the longest prefix wins) goes to its service instead of `service`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathConfig>,
}

/// One path route a tunnel serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathConfig {
    /// The prefix: it covers itself and everything below it.
    pub prefix: String,
    /// Its service: an origin URL or `http_status:NNN`.
    pub service: String,
}

/// The connector's answer to [`ConfigPush`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAck {
    /// The version the connector serves now (the pushed one, or a newer one it already had).
    pub applied_version: u64,
    /// Hostnames of that version the connector will not serve, and why (a service outside its
    /// `--allow-origin` list, or one it cannot use); absent when it serves them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedHostname>,
}

/// The longest refusal reason the edge keeps (bytes); longer ones are cut.
pub const MAX_REFUSAL_REASON: usize = 512;

impl ConfigAck {
    /// The refusals the edge keeps and shows: those that name a hostname of `pushed`, one per
    /// hostname, each reason printable ASCII (anything else replaced by `?`) of at most
    /// [`MAX_REFUSAL_REASON`] bytes. A connector cannot grow the edge's memory or put control
    /// characters in its logs and API answers this way.
    pub fn checked_refusals(&self, pushed: &[HostnameConfig]) -> Vec<RefusedHostname> {
        let mut kept: Vec<RefusedHostname> = Vec::new();
        for refused in &self.refused {
            let known = pushed.iter().any(|h| h.hostname == refused.hostname);
            if !known || kept.iter().any(|k| k.hostname == refused.hostname) {
                continue;
            }
            let reason: String = refused
                .reason
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .take(MAX_REFUSAL_REASON)
                .collect();
            kept.push(RefusedHostname {
                hostname: refused.hostname.clone(),
                reason,
            });
        }
        kept
    }
}

/// A hostname a connector refuses to serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedHostname {
    /// The hostname.
    pub hostname: String,
    /// Why, in a sentence the operator can act on.
    pub reason: String,
}

/// One line of the connector's event stream (the answer body of `POST /.postern/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The connector is shutting down: stop routing new requests to this connection, then
    /// answer with `POST /.postern/drain` ([`DrainReason::ConnectorDraining`]).
    Draining,
    /// The connector's certificate is due for renewal: sign this CSR (base64 DER) and send the
    /// certificate with `POST /.postern/certificate`.
    Renew {
        /// The CSR for the connector's key.
        csr_der: String,
    },
    /// The services (as pushed) whose origins this connector's health checks find unhealthy,
    /// all of them each time (empty once every one recovered). The edge routes around this
    /// connection for those services.
    OriginHealth {
        /// The unhealthy services.
        unhealthy: Vec<String>,
    },
}

/// `POST /.postern/drain`: stop using this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Why.
    pub reason: DrainReason,
}

/// Why a connection is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainReason {
    /// The tunnel was deleted: the connector must stop and not reconnect.
    TunnelDeleted,
    /// The edge is shutting down: reconnect (to it or another edge).
    EdgeShutdown,
    /// Answer to [`Event::Draining`]: the edge routes nothing new here; close when idle.
    ConnectorDraining,
}

/// `POST /.postern/certificate`: a renewed client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateGrant {
    /// The client certificate, base64 DER.
    pub cert_der: String,
    /// The edge CA certificate, base64 DER.
    pub ca_der: String,
}

/// Why the connector could not serve a visitor request, in [`ERROR_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorFault {
    /// The hostname is not declared for this tunnel (404).
    UnknownHostname,
    /// The origin refused or failed the connection (502).
    OriginUnreachable,
    /// The origin did not answer in time (504).
    OriginTimeout,
}

impl ConnectorFault {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorFault::UnknownHostname => "unknown_hostname",
            ConnectorFault::OriginUnreachable => "origin_unreachable",
            ConnectorFault::OriginTimeout => "origin_timeout",
        }
    }

    /// Parses a header value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "unknown_hostname" => Some(ConnectorFault::UnknownHostname),
            "origin_unreachable" => Some(ConnectorFault::OriginUnreachable),
            "origin_timeout" => Some(ConnectorFault::OriginTimeout),
            _ => None,
        }
    }

    /// The HTTP status the visitor gets.
    pub fn status(self) -> u16 {
        match self {
            ConnectorFault::UnknownHostname => 404,
            ConnectorFault::OriginUnreachable => 502,
            ConnectorFault::OriginTimeout => 504,
        }
    }
}

// === codecs ===

/// Encodes a control message body.
pub fn to_json<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}

/// Decodes a control message body or an enrolment frame.
pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(WireError::Malformed)
}

/// Base64 (standard, padded) of DER bytes.
pub fn encode_der(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// DER bytes from base64; `field` names the field in the error.
pub fn decode_der(text: &str, field: &'static str) -> Result<Vec<u8>, WireError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| WireError::Base64 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_te_trailers_stays() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "connection",
            http::HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", http::HeaderValue::from_static("1"));
        headers.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
        headers.insert("te", http::HeaderValue::from_static("trailers, deflate"));
        headers.insert("host", http::HeaderValue::from_static("a.example.com"));
        headers.insert("accept", http::HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["accept"], "*/*");
    }

    #[test]
    fn headers_without_hop_by_hop_ones_are_left_alone() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-length", http::HeaderValue::from_static("100"));
        headers.insert("x-custom", http::HeaderValue::from_static("1"));
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
        headers.insert("te", http::HeaderValue::from_static("gzip"));
        headers.insert("upgrade", http::HeaderValue::from_static("h2c"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before, "TE without trailers and Upgrade go");
    }

    fn round_trip<T>(message: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = to_json(message);
        let back: T = from_json(&bytes).expect("decodes");
        assert_eq!(&back, message);
    }

    #[test]
    fn hello_answers_are_bounded_and_printable() {
        let answer = |connector_id: String, version: &str| HelloAnswer {
            connector_id,
            version: version.into(),
            draining: false,
            deltas: true,
        };
        let uuid = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f".to_string();
        assert!(answer(uuid.clone(), "0.1.0").check().is_ok());
        let long = answer("x".repeat(1 << 20), "0.1.0").check();
        assert!(
            matches!(long, Err(WireError::FieldTooLong { field: "connector_id", len, .. }) if len == 1 << 20)
        );
        assert!(
            !long
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("xxx")
        );
        assert!(answer(uuid.clone(), &"1".repeat(65)).check().is_err());
        assert!(
            answer("a\nforged log line".into(), "0.1.0")
                .check()
                .is_err()
        );
        assert!(answer(uuid, "0.1.0\u{1b}[2J").check().is_err());
    }

    #[test]
    fn control_messages_round_trip() {
        round_trip(&Hello {
            connection_id: "c1".into(),
            tunnel_id: TunnelId::new_random(),
            tunnel_name: "web".into(),
            edge_version: "0.1.0".into(),
            wanted_connections: 2,
        });
        round_trip(&HelloAnswer {
            connector_id: "k".into(),
            version: "0.1.0".into(),
            draining: false,
            deltas: true,
        });
        round_trip(&ConfigPush {
            tcp_services: Vec::new(),
            version: 7,
            hostnames: vec![HostnameConfig {
                hostname: "app.example.com".into(),
                service: "http://localhost:4000".into(),
                tls_passthrough: false,
                origin: OriginSettings {
                    no_tls_verify: Some(true),
                    ..OriginSettings::default()
                },
                paths: vec![PathConfig {
                    prefix: "/api".into(),
                    service: "h2c://localhost:50051".into(),
                }],
            }],
            base: None,
            removed: Vec::new(),
        });
        round_trip(&ConfigPush {
            version: 9,
            hostnames: Vec::new(),
            base: Some(7),
            removed: vec!["gone.example.com".into()],
            tcp_services: Vec::new(),
        });
        round_trip(&ConfigAck {
            applied_version: 7,
            refused: vec![],
        });
        let pushed = [HostnameConfig {
            paths: Vec::new(),
            hostname: "db.example.com".into(),
            service: "http://127.0.0.1:1".into(),
            origin: Default::default(),
            tls_passthrough: false,
        }];
        let refusal = |hostname: &str, reason: &str| RefusedHostname {
            hostname: hostname.into(),
            reason: reason.into(),
        };
        let ack = ConfigAck {
            applied_version: 1,
            refused: vec![
                refusal("db.example.com", "not\nallowed"),
                refusal("db.example.com", "twice"),
                refusal("never-pushed.example.com", "x"),
            ],
        };
        assert_eq!(
            ack.checked_refusals(&pushed),
            vec![refusal("db.example.com", "not?allowed")],
            "one per pushed hostname, printable"
        );
        let long = ConfigAck {
            applied_version: 1,
            refused: vec![refusal("db.example.com", &"x".repeat(10_000))],
        };
        assert_eq!(
            long.checked_refusals(&pushed)[0].reason.len(),
            MAX_REFUSAL_REASON
        );
        round_trip(&ConfigAck {
            applied_version: 8,
            refused: vec![RefusedHostname {
                hostname: "db.example.com".into(),
                reason: "not in --allow-origin".into(),
            }],
        });
        round_trip(&Event::Draining);
        round_trip(&Event::OriginHealth {
            unhealthy: vec!["http://127.0.0.1:4000".into()],
        });
        round_trip(&Event::Renew {
            csr_der: encode_der(b"csr"),
        });
        round_trip(&Drain {
            reason: DrainReason::TunnelDeleted,
        });
        round_trip(&CertificateGrant {
            cert_der: "a".into(),
            ca_der: "b".into(),
        });
        round_trip(&EnrollAnswer::Refused {
            reason: RefusalReason::UnknownTunnel,
            message: "gone".into(),
        });
    }

    #[test]
    fn events_and_drains_have_stable_names() {
        assert_eq!(to_json(&Event::Draining), br#"{"event":"draining"}"#);
        assert_eq!(
            to_json(&Drain {
                reason: DrainReason::ConnectorDraining
            }),
            br#"{"reason":"connector_draining"}"#
        );
    }

    #[test]
    fn enrolment_frames_carry_their_length() {
        let request = EnrollRequest {
            tunnel_id: TunnelId::new_random(),
            secret: Secret::new("s"),
            csr_der: encode_der(&[1, 2, 3]),
        };
        let frame = encode_frame(&request);
        let header: [u8; 4] = frame[..4].try_into().expect("four bytes");
        let len = frame_len(header).expect("within limit");
        assert_eq!(len, frame.len() - 4);
        let back: EnrollRequest = from_json(&frame[4..]).expect("decodes");
        assert_eq!(back, request);
        assert_eq!(
            decode_der(&back.csr_der, "csr_der").expect("b64"),
            [1, 2, 3]
        );
    }

    #[test]
    fn oversized_and_malformed_input_is_an_error() {
        assert!(frame_len((MAX_ENROLL_FRAME as u32 + 1).to_be_bytes()).is_err());
        assert!(from_json::<EnrollRequest>(b"{").is_err());
        assert!(from_json::<EnrollRequest>(br#"{"tunnel_id":"x"}"#).is_err());
        assert!(decode_der("!!", "x").is_err());
        assert_eq!(
            ConnectorFault::parse("origin_timeout").map(|f| f.status()),
            Some(504)
        );
        assert_eq!(ConnectorFault::parse("nope"), None);
    }
}
