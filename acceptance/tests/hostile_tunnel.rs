//! Hostile clients at the tunnel listener (issue 9, must show 2 and the security properties):
//! random bytes in plain TCP and inside TLS, malformed HTTP/2 from a client that holds a valid
//! connector certificate, and certificates that are expired, not yet valid, without the client
//! EKU, naming no tunnel, or of a deleted tunnel. Each is refused or dropped (and logged), and a
//! real connector of the same tunnel keeps serving throughout.
//!
//! What one stolen certificate may take (issue 23), with a fake connector holding a certificate
//! made with the edge's CA: no more connections than the tunnel's cap, one or two renewals for a
//! flood of requests, no hello with an oversized or unprintable connector id or version, and a
//! visitor's 504 within the edge's own deadline when the connector never answers. Garbage on
//! the port is counted, not logged line by line.
//!
//! Covered elsewhere: no certificate, a foreign CA, and tunnel A's certificate for tunnel B's
//! hostnames (`tunnel_auth.rs`); random datagrams and TCP garbage on the DNS port (`dns.rs`).

use std::time::{Duration, Instant};

use acceptance::fake_connector::{
    FakeConnector, FakeOptions, Identity, Visitors, edge_ca, renewal_event, tunnel_identity,
};
use acceptance::fixture::{Served, add_hostname, create_tunnel, served, served_with, tunnel_for};
use acceptance::raw::{self, frame_type};
use acceptance::tunnel_dial::dial;
use acceptance::visitor::edge_http_client;
use acceptance::{EdgeOptions, EdgeProcess, TestOrigin};
use postern_schema::ids::TunnelId;
use postern_schema::wire;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "app.example.com";

/// The real connector still serves, and it alone is registered.
async fn still_serves(served: &Served) {
    let http = edge_http_client(&served.edge, HOST);
    let url = format!("http://{HOST}:{}/hello", served.edge.addrs.http.port());
    let response = http.get(url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let list = served
        .edge
        .client()
        .tunnel_connections(served.tunnel.id)
        .await
        .expect("connections");
    assert_eq!(list.len(), 2, "{list:?}");
}

/// The edge's CA, read from its store (the `settings` row `ca`).
fn ca(served: &Served) -> Issuer<'static, KeyPair> {
    edge_ca(served.edge.data_dir())
}

/// How a crafted client certificate differs from a good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    Expired,
    NotYetValid,
    NoClientAuth,
    NoTunnel,
}

/// A client certificate for `tunnel` signed by `ca`, with `flaw`.
fn identity(
    ca: &Issuer<'static, KeyPair>,
    tunnel: TunnelId,
    flaw: Flaw,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("tunnel {tunnel}"));
    if flaw != Flaw::NoTunnel {
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:postern:tunnel:{tunnel}")
                .try_into()
                .expect("uri"),
        )];
    }
    if flaw != Flaw::NoClientAuth {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    match flaw {
        Flaw::Expired => {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        Flaw::NotYetValid => {
            params.not_before = rcgen::date_time_ymd(2090, 1, 1);
            params.not_after = rcgen::date_time_ymd(2091, 1, 1);
        }
        _ => {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        }
    }
    let cert = params.signed_by(&key, ca).expect("sign");
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// Reads (and discards) until the peer closes; how long that took, or `None` after `wait`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + wait),
            stream.read(&mut sink),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// xorshift64: deterministic bytes, so a failure can be replayed.
struct Noise(u64);

impl Noise {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// How long the edge may take to drop a connection it should drop (its TLS handshake timeout
/// is 10 s; a partial TLS record waits for it).
const DROP_WITHIN: Duration = Duration::from_secs(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_the_tunnel_port_are_dropped_and_connectors_keep_serving() {
    let served = served(HOST).await;
    let addr = served.edge.addrs.tunnel;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut tasks = tokio::task::JoinSet::new();
    // Plain TCP: random bytes of many sizes, some starting like a TLS handshake record.
    for i in 0..100usize {
        let len = [1, 5, 64, 517, 4096, 65_536][i % 6];
        let mut bytes = noise.bytes(len);
        if i % 3 == 0 && bytes.len() >= 3 {
            bytes[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        }
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let _ = stream.write_all(&bytes).await;
            ("plain", closed_within(&mut stream, DROP_WITHIN).await)
        });
    }
    // Inside TLS: on the enrolment ALPN (no certificate needed) and after a valid client
    // certificate on the tunnel ALPN, random bytes instead of the protocol.
    let ca = ca(&served);
    for i in 0..20usize {
        let bytes = noise.bytes([3, 100, 5_000, 70_000][i % 4]);
        let identity = (i % 2 == 1).then(|| identity(&ca, served.tunnel.id, Flaw::None));
        tasks.spawn(async move {
            let (kind, alpn) = match identity {
                None => ("TLS enrolment", wire::ALPN_ENROLL),
                Some(_) => ("TLS tunnel", wire::ALPN_TUNNEL),
            };
            let mut stream = dial(addr, alpn, identity).await.expect("TLS");
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            (kind, closed_within(&mut stream, DROP_WITHIN).await)
        });
    }
    let mut counts: std::collections::BTreeMap<&str, (usize, Duration)> = Default::default();
    while let Some(result) = tasks.join_next().await {
        let (kind, closed) = result.expect("task");
        let took = closed.unwrap_or_else(|| panic!("{kind}: the edge kept a garbage connection"));
        let entry = counts.entry(kind).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(took);
    }
    still_serves(&served).await;
    let log = served.edge.log();
    assert!(!log.contains("panicked"), "{log}");
    // Garbage from the internet is counted, not logged line by line at the default level.
    let handshake_failures = served
        .edge
        .metric("postern_edge_tunnel_sessions_total{outcome=\"handshake_failed\"}")
        .await;
    let logged = log.matches("tunnel TLS handshake failed").count();
    println!(
        "random bytes on the tunnel port: {} connections, all dropped by the edge (slowest per kind: {counts:?}); the real connector kept serving with its 2 connections; \
         {handshake_failures} failed handshakes counted in /metrics, {logged} logged at the default level (info)",
        counts.values().map(|(n, _)| n).sum::<usize>()
    );
    assert!(handshake_failures > 0);
    assert_eq!(
        logged, 0,
        "a failed handshake was logged at info: a log flood for anyone who sends garbage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_from_a_valid_certificate_is_dropped_and_logged() {
    let served = served(HOST).await;
    let ca = ca(&served);
    let settings = raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]);
    let with = |frames: &[Vec<u8>]| {
        let mut bytes = settings.clone();
        for frame in frames {
            bytes.extend_from_slice(frame);
        }
        bytes
    };
    let mut noise = Noise(0x5851_f42d_4c95_7f2d);
    let continuation_flood = {
        let mut frames = vec![raw::h2_frame(frame_type::HEADERS, 0, 1, &[0x88])];
        for _ in 0..2_000 {
            frames.push(raw::h2_frame(0x9, 0, 1, &noise.bytes(1024)));
        }
        with(&frames)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes instead of HTTP/2", noise.bytes(4096)),
        (
            "a SETTINGS frame of 5 bytes",
            raw::h2_frame(frame_type::SETTINGS, 0, 0, &[0; 5]),
        ),
        (
            "SETTINGS with a window size over 2^31-1",
            raw::h2_frame(frame_type::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
        ),
        (
            "DATA on stream 0",
            with(&[raw::h2_frame(frame_type::DATA, 0, 0, b"data")]),
        ),
        (
            "a frame announcing 16 MiB",
            with(&[vec![0xff, 0xff, 0xff, frame_type::DATA, 0, 0, 0, 0, 1]]),
        ),
        (
            "the hello answered with garbage HPACK",
            with(&[raw::h2_frame(frame_type::HEADERS, 0x4, 1, &[0xff; 20])]),
        ),
        (
            "a connection window overflow",
            with(&[raw::h2_frame(
                frame_type::WINDOW_UPDATE,
                0,
                0,
                &0x7fff_ffffu32.to_be_bytes(),
            )]),
        ),
        (
            "a PUSH_PROMISE to a client that disabled push",
            with(&[raw::h2_frame(0x5, 0x4, 1, &[0, 0, 0, 2, 0x88])]),
        ),
        (
            "the hello answered with a body that is not JSON",
            with(&[
                raw::h2_frame(frame_type::HEADERS, 0x4, 1, &[0x88]),
                raw::h2_frame(frame_type::DATA, 0x1, 1, b"not json at all"),
            ]),
        ),
        ("2,000 CONTINUATION frames", continuation_flood),
    ];
    let mut lines = Vec::new();
    for (name, bytes) in &cases {
        let failures_before = served.edge.log().matches("tunnel session failed").count();
        let mut stream = dial(
            served.edge.addrs.tunnel,
            wire::ALPN_TUNNEL,
            Some(identity(&ca, served.tunnel.id, Flaw::None)),
        )
        .await
        .expect("TLS with a valid certificate");
        // The edge is the HTTP/2 client: it speaks first.
        let mut preface = [0u8; 24];
        stream.read_exact(&mut preface).await.expect("preface");
        assert_eq!(&preface[..], raw::H2_PREFACE);
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        let (frames, goaway, took) = drain_frames(&mut stream, DROP_WITHIN).await;
        let took = took.unwrap_or_else(|| panic!("{name}: the edge kept the connection"));
        acceptance::eventually(
            Duration::from_secs(5),
            &format!("{name}: the edge to log the failed session"),
            || async {
                (served.edge.log().matches("tunnel session failed").count() > failures_before)
                    .then_some(())
            },
        )
        .await;
        still_serves(&served).await;
        lines.push(format!(
            "{name}: dropped after {took:?} (GOAWAY {goaway:?}, {frames} frames from the edge)"
        ));
    }
    let log = served.edge.log();
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "malformed HTTP/2 with a valid certificate: {} cases, each dropped, logged as a failed session, never registered; the real connector served between every two: {}",
        cases.len(),
        lines.join("; ")
    );
}

/// Reads frames until the edge closes; returns how many, the GOAWAY code if one came, and when
/// the connection closed.
async fn drain_frames<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> (usize, Option<u32>, Option<Duration>) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + wait);
    let (mut frames, mut goaway) = (0, None);
    loop {
        match tokio::time::timeout_at(deadline, raw::read_h2_frame(stream)).await {
            Ok(Ok(frame)) => {
                frames += 1;
                if frame.kind == frame_type::GOAWAY {
                    goaway = frame.error_code();
                }
            }
            Ok(Err(_)) => return (frames, goaway, Some(started.elapsed())),
            Err(_) => return (frames, goaway, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_unexpired_certificates_of_live_tunnels_are_served() {
    let served = served(HOST).await;
    let ca = ca(&served);
    let addr = served.edge.addrs.tunnel;

    // A control: a certificate crafted with the edge's CA, valid in every way, is served (the
    // edge says hello on it).
    let mut good = dial(
        addr,
        wire::ALPN_TUNNEL,
        Some(identity(&ca, served.tunnel.id, Flaw::None)),
    )
    .await
    .expect("TLS");
    let mut preface = [0u8; 24];
    good.read_exact(&mut preface)
        .await
        .expect("the edge speaks HTTP/2 to a valid certificate");
    drop(good);

    let mut lines = Vec::new();
    for (name, flaw) in [
        ("expired", Flaw::Expired),
        ("not yet valid", Flaw::NotYetValid),
        ("without the client-auth EKU", Flaw::NoClientAuth),
    ] {
        let refused = match dial(
            addr,
            wire::ALPN_TUNNEL,
            Some(identity(&ca, served.tunnel.id, flaw)),
        )
        .await
        {
            Err(_) => true,
            // TLS 1.3: the client learns of the refusal on its first read.
            Ok(mut stream) => {
                let mut byte = [0u8; 1];
                matches!(
                    tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                )
            }
        };
        assert!(refused, "a certificate {name} was served");
        lines.push(format!("{name}: refused in the TLS handshake"));
    }

    // Signed by the CA, but naming no tunnel: the edge closes it without a session.
    let mut stream = dial(
        addr,
        wire::ALPN_TUNNEL,
        Some(identity(&ca, served.tunnel.id, Flaw::NoTunnel)),
    )
    .await
    .expect("TLS");
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(served.edge.log().contains("names no tunnel"));
    lines.push(format!("naming no tunnel: closed after {took:?}"));

    // The certificate of a tunnel that was deleted: the edge tells it so and closes, within a
    // second, without registering it.
    let client = served.edge.client();
    let origin = TestOrigin::start().await;
    let doomed = tunnel_for(&client, "doomed", "doomed.example.com", &origin.url()).await;
    let doomed_identity = identity(&ca, doomed.id, Flaw::None);
    client
        .delete_hostname("doomed.example.com", None)
        .await
        .expect("delete hostname");
    client
        .delete_tunnel(doomed.id, None)
        .await
        .expect("delete tunnel");
    let mut stream = dial(addr, wire::ALPN_TUNNEL, Some(doomed_identity))
        .await
        .expect("TLS");
    let mut preface = [0u8; 24];
    stream.read_exact(&mut preface).await.expect("preface");
    stream
        .write_all(&raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let (_, _, took) = drain_frames(&mut stream, Duration::from_secs(5)).await;
    let took = took.expect("the edge closes a deleted tunnel's connection");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(
        served
            .edge
            .log()
            .contains("refused a connector whose tunnel was deleted")
    );
    lines.push(format!("of a deleted tunnel: closed after {took:?}"));

    still_serves(&served).await;
    println!(
        "tunnel certificates: a valid one crafted with the edge CA is served; {}; the real connector kept serving",
        lines.join("; ")
    );
}

// === what one stolen certificate may take (issue 23) ===

/// A copy of a client identity (the key has no `Clone`).
fn same(identity: &Identity) -> Identity {
    (identity.0.clone(), identity.1.clone_key())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_holds_at_most_its_cap_of_connections_whatever_certificates_it_shows() {
    let served = served_with(
        HOST,
        EdgeOptions {
            env: vec![("POSTERN_EDGE_MAX_CONNECTIONS_PER_TUNNEL".into(), "4".into())],
            ..EdgeOptions::default()
        },
    )
    .await;
    let addr = served.edge.addrs.tunnel;
    let ca = ca(&served);
    // One stolen certificate, used for ten connections: the real connector holds two of the
    // tunnel's four.
    let stolen = tunnel_identity(&ca, served.tunnel.id);
    let (mut registered, mut refused, mut fakes) = (0, 0, Vec::new());
    for _ in 0..10 {
        let fake = FakeConnector::connect(addr, same(&stolen), FakeOptions::default())
            .await
            .expect("TLS with a valid certificate");
        if fake.registered_within(Duration::from_secs(10)).await {
            registered += 1;
        } else {
            assert!(
                fake.closed_within(Duration::from_secs(5)).await,
                "neither registered nor closed"
            );
            assert_eq!(
                fake.hellos(),
                0,
                "a connection over the cap was said hello to"
            );
            refused += 1;
        }
        fakes.push(fake);
    }
    // Another certificate of the tunnel (a renewal with another key) gets no more.
    let renewed = FakeConnector::connect(
        addr,
        tunnel_identity(&ca, served.tunnel.id),
        FakeOptions::default(),
    )
    .await
    .expect("TLS");
    assert!(!renewed.registered_within(Duration::from_secs(3)).await);
    let listed = served
        .edge
        .client()
        .tunnel_connections(served.tunnel.id)
        .await
        .expect("connections");
    let over = served
        .edge
        .metric("postern_edge_tunnel_sessions_total{outcome=\"over_limit\"}")
        .await;
    println!(
        "connections per tunnel (cap 4, the real connector holding 2): one certificate opened 10, {registered} registered, \
         {refused} closed after the handshake without a hello; another certificate of the tunnel was refused too; \
         the API lists {} connections; {over} refusals counted",
        listed.len()
    );
    assert_eq!(registered, 2);
    assert_eq!(refused, 8);
    assert_eq!(listed.len(), 4);
    assert!(over >= 9, "{over}");

    // Once the extra connections go, the tunnel has room again.
    drop((fakes, renewed));
    acceptance::eventually(
        Duration::from_secs(10),
        "the fakes' sessions to end",
        || async {
            let list = served
                .edge
                .client()
                .tunnel_connections(served.tunnel.id)
                .await
                .ok()?;
            (list.len() == 2).then_some(())
        },
    )
    .await;
    still_serves(&served).await;
    let again = FakeConnector::connect(addr, same(&stolen), FakeOptions::default())
        .await
        .expect("TLS");
    assert!(again.registered_within(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_flood_on_one_connection_is_refused() {
    let served = served(HOST).await;
    let ca = ca(&served);
    let fake = FakeConnector::connect(
        served.edge.addrs.tunnel,
        tunnel_identity(&ca, served.tunnel.id),
        FakeOptions::default(),
    )
    .await
    .expect("TLS");
    assert!(fake.registered_within(Duration::from_secs(10)).await);
    const FLOOD: usize = 50;
    for _ in 0..FLOOD {
        fake.send_event(&renewal_event());
    }
    // Give the edge time to answer all of them, were it to.
    let granted = fake
        .certificates_within(FLOOD, Duration::from_secs(5))
        .await;
    let refused = served
        .edge
        .metric("postern_edge_certificate_renewals_total{outcome=\"refused\"}")
        .await;
    println!(
        "renewal flood: {FLOOD} renewal requests on one connection, {granted} certificates granted, {refused} refused"
    );
    assert!(
        (1..=2).contains(&granted),
        "{granted} certificates for one connection"
    );
    assert_eq!(granted as u64 + refused, FLOOD as u64);
    assert!(!fake.is_closed(), "the connection itself stays");
    still_serves_besides(&served, 1).await;
}

/// The real connector still serves, beside `extra` connections of the tunnel.
async fn still_serves_besides(served: &Served, extra: usize) {
    let http = edge_http_client(&served.edge, HOST);
    let url = format!("http://{HOST}:{}/hello", served.edge.addrs.http.port());
    let response = http.get(url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let list = served
        .edge
        .client()
        .tunnel_connections(served.tunnel.id)
        .await
        .expect("connections");
    assert_eq!(list.len(), 2 + extra, "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_unprintable_hellos_are_refused_and_never_logged() {
    let served = served(HOST).await;
    let ca = ca(&served);
    let megabyte = "x".repeat(1 << 20);
    let cases = [
        (
            "a 1 MiB connector_id",
            megabyte.clone(),
            "0.1.0".to_string(),
            "connector_id is 1048576 bytes long",
        ),
        (
            "a 1 MiB version",
            "fake".to_string(),
            megabyte.clone(),
            "version is 1048576 bytes long",
        ),
        (
            "a connector_id forging a log line",
            "fake\n2030-01-01T00:00:00Z ERROR forged".to_string(),
            "0.1.0".to_string(),
            "connector_id holds characters other than printable ASCII",
        ),
    ];
    let mut lines = Vec::new();
    for (name, connector_id, version, logged) in cases {
        let fake = FakeConnector::connect(
            served.edge.addrs.tunnel,
            tunnel_identity(&ca, served.tunnel.id),
            FakeOptions {
                connector_id,
                version,
                ..FakeOptions::default()
            },
        )
        .await
        .expect("TLS");
        assert!(
            !fake.registered_within(Duration::from_secs(5)).await,
            "{name}: registered"
        );
        assert!(
            fake.closed_within(Duration::from_secs(5)).await,
            "{name}: kept open"
        );
        acceptance::eventually(
            Duration::from_secs(5),
            &format!("{name}: the refusal in the log"),
            || async { served.edge.log().contains(logged).then_some(()) },
        )
        .await;
        lines.push(format!(
            "{name}: refused after the hello, logged as {logged:?}"
        ));
    }
    still_serves(&served).await;
    let log = served.edge.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    println!(
        "hellos: {}; the longest log line is {longest} bytes",
        lines.join("; ")
    );
    assert!(longest < 4096, "a log line of {longest} bytes");
    assert!(
        !log.contains(&"x".repeat(256)),
        "the connector id reached the log"
    );
    assert!(
        !log.contains("ERROR forged"),
        "a forged line reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_never_answers_gets_the_visitor_a_504_within_the_edges_deadline() {
    let edge = EdgeProcess::start_with(EdgeOptions {
        env: vec![("POSTERN_EDGE_RESPONSE_HEAD_TIMEOUT".into(), "3s".into())],
        ..EdgeOptions::default()
    });
    let client = edge.client();
    let tunnel = create_tunnel(&client, "mute", &[]).await;
    add_hostname(&client, &tunnel, "mute.example.com", "http://127.0.0.1:9").await;
    let ca = edge_ca(edge.data_dir());
    let fake = FakeConnector::connect(
        edge.addrs.tunnel,
        tunnel_identity(&ca, tunnel.id),
        FakeOptions {
            visitors: Visitors::NeverAnswer,
            ..FakeOptions::default()
        },
    )
    .await
    .expect("TLS");
    assert!(fake.registered_within(Duration::from_secs(10)).await);

    let http = edge_http_client(&edge, "mute.example.com");
    let url = format!(
        "http://mute.example.com:{}/anything",
        edge.addrs.http.port()
    );
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(20), http.get(url).send())
        .await
        .expect("the visitor waited 20 s without an answer")
        .expect("a response");
    let took = started.elapsed();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    println!(
        "a connector that never answers: the visitor got {status} after {took:?} (--response-head-timeout 3s); \
         the connector saw {} request(s): {:?}",
        fake.visitor_requests(),
        body.lines().next().unwrap_or_default()
    );
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_millis(2900) && took <= Duration::from_secs(6),
        "{took:?}"
    );
    assert!(body.contains("did not answer in time"), "{body}");
    assert_eq!(fake.visitor_requests(), 1);
    assert!(
        !fake.is_closed(),
        "one slow stream does not cost the connection"
    );
}
