//! Enrolment: a connector without a certificate proves it holds its tunnel's secret and gets a
//! short-lived client certificate for its own key. One request per connection, rate-limited
//! per client (a source IPv4 address or IPv6 /64).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_schema::wire::{
    self, EnrollAnswer, EnrollRequest, RefusalReason, decode_der, encode_der, encode_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::context::TunnelContext;
use crate::auth::secrets_equal;
use crate::client::ClientKey;
use crate::store::Kind;

/// How long an enrolment client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts one source address may make at once.
const BURST: f64 = 10.0;

/// Attempts per second an address earns back.
const REFILL_PER_SECOND: f64 = 0.5;

/// At most this many clients are tracked; at the limit, the fullest of [`EVICTION_SAMPLE`]
/// buckets is forgotten for each new one.
const MAX_TRACKED: usize = 10_000;

/// How many buckets a full limiter looks at to pick the one it forgets.
const EVICTION_SAMPLE: usize = 8;

/// A token bucket per client.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<ClientKey, (f64, Instant)>>,
}

impl Limiter {
    /// Takes one attempt from `ip`'s bucket; `false` when it is empty.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let client = ClientKey::of(ip);
        let level = |(tokens, at): &(f64, Instant)| {
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * REFILL_PER_SECOND)
                .min(BURST)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&client) {
            // Constant time: a flood of new clients neither grows the map nor scans it.
            let fullest = buckets
                .iter()
                .take(EVICTION_SAMPLE)
                .max_by(|a, b| level(a.1).total_cmp(&level(b.1)))
                .map(|(key, _)| *key);
            if let Some(key) = fullest {
                buckets.remove(&key);
            }
        }
        let bucket = buckets.entry(client).or_insert((BURST, now));
        let tokens = level(bucket);
        *bucket = (tokens, now);
        if tokens >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves the one enrolment request of `stream`.
pub(crate) async fn serve_one<S>(
    mut stream: S,
    peer: SocketAddr,
    context: &TunnelContext,
    limiter: &Limiter,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let answer = if limiter.allow(peer.ip()) {
        match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(request)) => decide(request, context).await,
            Ok(Err(message)) => refuse(RefusalReason::BadRequest, message),
            Err(_) => refuse(RefusalReason::BadRequest, "no request within 10 s".into()),
        }
    } else {
        refuse(
            RefusalReason::RateLimited,
            "too many enrolment attempts from this address; try again in a few seconds".into(),
        )
    };
    let outcome = match &answer {
        EnrollAnswer::Granted { .. } => "granted",
        EnrollAnswer::Refused { reason, .. } => match reason {
            RefusalReason::UnknownTunnel => "unknown_tunnel",
            RefusalReason::BadSecret => "bad_secret",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::Internal => "internal",
        },
    };
    context
        .metrics
        .inc("postern_edge_enrollments_total", &[("outcome", outcome)]);
    let _ = stream.write_all(&encode_frame(&answer)).await;
    let _ = stream.shutdown().await;
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<EnrollRequest, String> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|_| "the request frame is incomplete".to_string())?;
    let len = wire::frame_len(header).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|_| "the request frame is incomplete".to_string())?;
    wire::from_json(&body).map_err(|e| format!("the request is malformed: {e}"))
}

async fn decide(request: EnrollRequest, context: &TunnelContext) -> EnrollAnswer {
    let tunnel = request.tunnel_id;
    let span = tracing::info_span!("enroll", tunnel_id = %tunnel);
    let _enter = span.enter();
    if !context.catalog.snapshot().tunnels.contains_key(&tunnel) {
        tracing::info!("enrolment refused: the tunnel does not exist");
        return refuse(
            RefusalReason::UnknownTunnel,
            format!("tunnel {tunnel} does not exist; it may have been deleted"),
        );
    }
    if crate::enrollment::is_one_time(request.secret.expose()) {
        match crate::enrollment::redeem(context.store.as_ref(), tunnel, request.secret.expose())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("enrolment refused: single-use token unknown, used or expired");
                return refuse(
                    RefusalReason::BadSecret,
                    "this single-use enrolment token was already used, has expired, or is not this tunnel's; mint a new one".into(),
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the enrolment grant");
                return refuse(
                    RefusalReason::Internal,
                    "the edge cannot read its store".into(),
                );
            }
        }
    } else {
        let secret = match context
            .store
            .secret(Kind::Tunnel, &tunnel.to_string())
            .await
        {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return refuse(
                    RefusalReason::UnknownTunnel,
                    format!("tunnel {tunnel} does not exist; it may have been deleted"),
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the tunnel secret");
                return refuse(
                    RefusalReason::Internal,
                    "the edge cannot read its store".into(),
                );
            }
        };
        if !secrets_equal(request.secret.expose(), &secret) {
            tracing::warn!("enrolment refused: wrong secret");
            return refuse(
                RefusalReason::BadSecret,
                "the token's secret is not this tunnel's; get the current token from the API"
                    .into(),
            );
        }
    }
    let csr = match decode_der(&request.csr_der, "csr_der") {
        Ok(csr) => csr,
        Err(error) => return refuse(RefusalReason::BadRequest, error.to_string()),
    };
    match context
        .ca
        .sign_tunnel_csr(&csr, tunnel, context.settings.client_cert_lifetime)
    {
        Ok(cert) => {
            tracing::info!("connector enrolled");
            EnrollAnswer::Granted {
                cert_der: encode_der(cert.as_ref()),
                ca_der: encode_der(context.ca.cert_der().as_ref()),
            }
        }
        Err(error) => refuse(
            RefusalReason::BadRequest,
            format!("the certificate signing request is not usable: {error}"),
        ),
    }
}

fn refuse(reason: RefusalReason, message: String) -> EnrollAnswer {
    EnrollAnswer::Refused { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_a_burst_then_refills() {
        let limiter = Limiter::default();
        let ip: IpAddr = [127, 0, 0, 9].into();
        let now = Instant::now();
        for _ in 0..BURST as usize {
            assert!(limiter.allow_at(ip, now));
        }
        assert!(!limiter.allow_at(ip, now));
        assert!(limiter.allow_at([127, 0, 0, 10].into(), now));
        assert!(limiter.allow_at(ip, now + Duration::from_secs(3)));
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_a_flood_stays_bounded() {
        let limiter = Limiter::default();
        let now = Instant::now();
        let allowed = (1..=100u32)
            .filter(|i| {
                let ip: IpAddr = format!("2001:db8:7:7::{i:x}").parse().expect("address");
                limiter.allow_at(ip, now)
            })
            .count();
        assert_eq!(allowed, BURST as usize);
        for i in 0..(MAX_TRACKED as u32 * 3) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(limiter.allow_at(ip, now));
        }
        let tracked = limiter.buckets.lock().expect("lock").len();
        assert!(tracked <= MAX_TRACKED, "{tracked}");
    }
}
