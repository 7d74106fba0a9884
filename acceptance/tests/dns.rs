//! DNS service discovery against the real `postern-edge` binary: hostnames created and deleted
//! through the control API show up in (and vanish from) real DNS answers over UDP and TCP at
//! once; TXT records carry the serving tunnels' labels; names outside the zones are refused; and
//! a flood of random datagrams neither crashes nor stalls the server. Queries are built with
//! hickory-proto and sent over plain sockets, so no `dig` is needed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acceptance::{Api, EdgeOptions, EdgeProcess};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one UDP attempt waits for its answer before asking again.
const ATTEMPT: Duration = Duration::from_millis(250);

fn edge() -> EdgeProcess {
    EdgeProcess::start_with(EdgeOptions {
        args: vec![
            "--public-address".into(),
            "127.0.0.1".into(),
            "--public-address".into(),
            "::1".into(),
        ],
        ..EdgeOptions::default()
    })
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        qtype,
    ));
    message
}

/// One question over UDP: asks again every [`ATTEMPT`] until an answer with the question's id
/// arrives or `within` has passed.
async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType, within: Duration) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    let deadline = Instant::now() + within;
    let mut buffer = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let question = query(name, qtype);
        let bytes = question.to_vec().expect("encode");
        socket.send_to(&bytes, server).await.expect("send");
        let attempt_ends = (Instant::now() + ATTEMPT).min(deadline);
        while let Ok(Ok((len, _))) = tokio::time::timeout(
            attempt_ends.saturating_duration_since(Instant::now()),
            socket.recv_from(&mut buffer),
        )
        .await
        {
            if let Ok(answer) = Message::from_vec(&buffer[..len])
                && answer.metadata.id == question.metadata.id
            {
                assert_eq!(answer.metadata.message_type, MessageType::Response);
                return answer;
            }
        }
    }
    panic!("no DNS answer for {name} {qtype} within {within:?}");
}

/// One question over TCP (two-byte length prefix, RFC 1035 4.2.2).
async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let question = query(name, qtype);
    let bytes = question.to_vec().expect("encode");
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).expect("a short query");
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("a TCP answer within 5 s")
        .expect("a TCP answer");
    let answer = Message::from_vec(&answer).expect("a decodable answer");
    assert_eq!(answer.metadata.id, question.metadata.id);
    answer
}

/// Asks until `accept` likes the answer, for at most `within`; returns the answer and how long
/// it took.
async fn wait_for(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    within: Duration,
    accept: impl Fn(&Message) -> bool,
) -> (Message, Duration) {
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        let answer = ask_udp(server, name, qtype, left.max(ATTEMPT)).await;
        if accept(&answer) || start.elapsed() >= within {
            return (answer, start.elapsed());
        }
    }
}

fn addresses(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

fn txt_strings(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

async fn create(api: &Api, path: &str, body: Value) -> Value {
    let response = api.post(path, &body).await;
    assert_eq!(
        response.status, 201,
        "POST {path} {body}: {}",
        response.text
    );
    response.body
}

async fn tunnel(api: &Api, name: &str, labels: Value) -> String {
    let tunnel = create(api, "/v1/tunnels", json!({"name": name, "labels": labels})).await;
    tunnel["id"].as_str().expect("tunnel id").to_string()
}

#[tokio::test]
async fn hostname_records_appear_and_vanish_with_the_api() {
    let edge = edge();
    let api = edge.api();
    let dns = edge.addrs.dns;
    let web = tunnel(&api, "web", json!({"release": "stable", "app": "web"})).await;

    let before = ask_udp(
        dns,
        "app.example.com.",
        RecordType::A,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);

    create(
        &api,
        "/v1/hostnames",
        json!({"hostname": "app.example.com", "service": "http://localhost:4000", "tunnel_id": web}),
    )
    .await;
    let (a, took) = wait_for(
        dns,
        "app.example.com.",
        RecordType::A,
        Duration::from_secs(1),
        |m| m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty(),
    )
    .await;
    assert!(took < Duration::from_secs(1), "A record after {took:?}");
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!(addresses(&a), ["127.0.0.1"]);

    let aaaa = ask_udp(
        dns,
        "APP.example.COM.",
        RecordType::AAAA,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(addresses(&aaaa), ["::1"]);
    let txt = ask_udp(
        dns,
        "app.example.com.",
        RecordType::TXT,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(txt_strings(&txt), ["tunnel=web app=web release=stable"]);
    // A type the name does not have: NODATA, with the SOA for negative caching.
    let mx = ask_udp(
        dns,
        "app.example.com.",
        RecordType::MX,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert!(matches!(
        mx.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));

    // The same answers over TCP.
    let tcp = ask_tcp(dns, "app.example.com.", RecordType::A).await;
    assert_eq!(addresses(&tcp), ["127.0.0.1"]);
    let tcp_txt = ask_tcp(dns, "app.example.com.", RecordType::TXT).await;
    assert_eq!(txt_strings(&tcp_txt), ["tunnel=web app=web release=stable"]);

    // Relabelling the tunnel changes the TXT record.
    let response = api
        .put(
            &format!("/v1/tunnels/{web}"),
            &json!({"name": "web", "labels": {"release": "canary"}}),
            None,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let (txt, took) = wait_for(
        dns,
        "app.example.com.",
        RecordType::TXT,
        Duration::from_secs(1),
        |m| txt_strings(m) == ["tunnel=web release=canary"],
    )
    .await;
    assert_eq!(
        txt_strings(&txt),
        ["tunnel=web release=canary"],
        "after {took:?}"
    );

    let response = api.delete("/v1/hostnames/app.example.com", None).await;
    assert_eq!(response.status, 204, "{}", response.text);
    let (gone, took) = wait_for(
        dns,
        "app.example.com.",
        RecordType::A,
        Duration::from_secs(1),
        |m| m.metadata.response_code == ResponseCode::NXDomain,
    )
    .await;
    assert!(took < Duration::from_secs(1), "NXDOMAIN after {took:?}");
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    assert!(gone.metadata.authoritative);
    assert!(matches!(
        gone.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
}

#[tokio::test]
async fn txt_lists_every_tunnel_a_route_selects() {
    let edge = edge();
    let api = edge.api();
    let dns = edge.addrs.dns;
    tunnel(&api, "stable-a", json!({"release": "stable"})).await;
    tunnel(&api, "canary-a", json!({"release": "canary", "zone": "eu"})).await;
    tunnel(&api, "other", json!({"release": "other"})).await;
    create(
        &api,
        "/v1/hostnames",
        json!({
            "hostname": "split.example.com",
            "service": "http://localhost:4000",
            "routes": [
                {"selector": {"release": "stable"}, "weight": 90},
                {"selector": {"release": "canary"}, "weight": 10},
            ],
        }),
    )
    .await;
    let txt = ask_udp(
        dns,
        "split.example.com.",
        RecordType::TXT,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        txt_strings(&txt),
        [
            "tunnel=canary-a release=canary zone=eu",
            "tunnel=stable-a release=stable"
        ]
    );
    // A tunnel that starts matching a selector joins at once.
    tunnel(&api, "stable-b", json!({"release": "stable"})).await;
    let (txt, _) = wait_for(
        dns,
        "split.example.com.",
        RecordType::TXT,
        Duration::from_secs(1),
        |m| txt_strings(m).len() == 3,
    )
    .await;
    assert_eq!(
        txt_strings(&txt),
        [
            "tunnel=canary-a release=canary zone=eu",
            "tunnel=stable-a release=stable",
            "tunnel=stable-b release=stable",
        ]
    );
}

#[tokio::test]
async fn the_apex_has_soa_and_ns_and_outside_names_are_refused() {
    let edge = edge();
    let dns = edge.addrs.dns;

    for soa in [
        ask_udp(dns, "example.com.", RecordType::SOA, Duration::from_secs(5)).await,
        ask_tcp(dns, "example.com.", RecordType::SOA).await,
    ] {
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert!(soa.metadata.authoritative);
        let Some(RData::SOA(record)) = soa.answers.first().map(|r| &r.data) else {
            panic!("no SOA at the apex: {soa:?}");
        };
        assert_eq!(record.mname.to_ascii(), "ns.example.com.");
    }
    let ns = ask_udp(dns, "example.com.", RecordType::NS, Duration::from_secs(5)).await;
    let names: Vec<String> = ns
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(ns.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["ns.example.com."]);
    let ns_address = ask_udp(
        dns,
        "ns.example.com.",
        RecordType::A,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(addresses(&ns_address), ["127.0.0.1"]);

    let missing = ask_udp(
        dns,
        "nothing-here.example.com.",
        RecordType::A,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    for name in ["www.example.org.", "example.net.", "badexample.com."] {
        let refused = ask_udp(dns, name, RecordType::A, Duration::from_secs(5)).await;
        assert_eq!(
            refused.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(!refused.metadata.authoritative, "{name}");
    }
    let refused = ask_tcp(dns, "www.example.org.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let metrics = edge.api().get("/metrics").await;
    assert_eq!(metrics.status, 200);
    for rcode in ["noerror", "nxdomain", "refused"] {
        assert!(
            metrics.text.contains(&format!(
                "postern_edge_dns_queries_total{{rcode=\"{rcode}\"}}"
            )),
            "no {rcode} count in:\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn random_datagrams_do_not_crash_or_stall_the_server() {
    let edge = edge();
    let dns = edge.addrs.dns;
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    // xorshift64: deterministic, so a failure can be replayed.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let started = Instant::now();
    for i in 0..10_000u32 {
        let len = match i % 4 {
            0 => (next() % 12) as usize,
            1 => 12 + (next() % 64) as usize,
            _ => (next() % 1_500) as usize,
        };
        let mut packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && packet.len() > 2 {
            // Half of them look like queries (QR = 0), so they get past the first check.
            packet[2] &= 0x7f;
        }
        sender.send_to(&packet, dns).await.expect("send");
    }
    assert!(started.elapsed() < Duration::from_secs(60));

    let answer = ask_udp(
        dns,
        "example.com.",
        RecordType::SOA,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let answer = ask_tcp(dns, "example.com.", RecordType::SOA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(edge.api().get("/healthz").await.status, 200);
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}
