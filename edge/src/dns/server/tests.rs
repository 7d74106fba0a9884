//! The wire over real loopback sockets: answers that follow the catalog, protocol errors, and
//! garbage that must neither crash nor stall the server.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, Query};
use hickory_server::proto::rr::{DNSClass, RData, RecordType};
use postern_schema::api::{HostnameSpec, TunnelSpec};
use postern_schema::ids::TunnelId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::store::{Kind, Ref, SqliteStore, Store, Write};

/// How long a test waits for one answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

struct TestDns {
    udp: SocketAddr,
    tcp: SocketAddr,
    store: Arc<dyn Store>,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A rate limit no test but the rate limit's own reaches.
const RATE_LIMIT: RateLimitConfig = RateLimitConfig {
    responses_per_second: 1_000,
    slip: 2,
    ipv4_prefix: 24,
    ipv6_prefix: 56,
};

const TCP: TcpConfig = TcpConfig {
    max_connections: 16,
    idle_timeout: Duration::from_secs(10),
};

async fn start() -> TestDns {
    start_with(RATE_LIMIT).await
}

async fn start_with(rate_limit: RateLimitConfig) -> TestDns {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("dns.db")).expect("store"));
    let catalog = Catalog::load(store.clone(), vec!["127.0.0.1".into()])
        .await
        .expect("catalog");
    let cancel = CancellationToken::new();
    tokio::spawn(catalog.clone().run(cancel.clone()));
    let metrics = Arc::new(Metrics::default());
    let config = ZoneConfig::new(&["example.com".into()], &["127.0.0.1".parse().expect("ip")]);
    let handler = ZoneHandler::new(catalog.clone(), config, rate_limit, metrics.clone());
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("tcp");
    let (udp_addr, tcp_addr) = (
        udp.local_addr().expect("udp addr"),
        tcp.local_addr().expect("tcp addr"),
    );
    tokio::spawn(run(udp, tcp, handler, TCP, cancel.clone()));
    TestDns {
        udp: udp_addr,
        tcp: tcp_addr,
        store,
        catalog,
        metrics,
        cancel,
        _dir: dir,
    }
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message
}

/// Sends `bytes` in one datagram and waits for at most one answer.
async fn exchange_udp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    socket.send_to(bytes, server).await.expect("send");
    let mut buffer = vec![0u8; 65_535];
    match tokio::time::timeout(ANSWER_WITHIN, socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => Some(buffer[..len].to_vec()),
        _ => None,
    }
}

async fn ask_udp(server: SocketAddr, message: &Message) -> Message {
    let bytes = message.to_vec().expect("encode");
    let answer = exchange_udp(server, &bytes).await.expect("an answer");
    let answer = Message::from_vec(&answer).expect("decodable answer");
    assert_eq!(answer.metadata.id, message.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn ask_tcp(server: SocketAddr, message: &Message) -> Message {
    let bytes = message.to_vec().expect("encode");
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).expect("short query");
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .expect("a TCP answer in time")
        .expect("a TCP answer");
    Message::from_vec(&answer).expect("decodable answer")
}

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

async fn create_hostname(dns: &TestDns, hostname: &str) -> TunnelId {
    let tunnel_id = TunnelId::new_random();
    let tunnel = TunnelSpec {
        name: "web".into(),
        labels: [("release".to_string(), "stable".to_string())].into(),
    };
    dns.store
        .create(
            Write {
                kind: Kind::Tunnel,
                id: tunnel_id.to_string(),
                name: tunnel.name.clone(),
                body: serde_json::to_value(&tunnel).expect("json"),
                refs: Vec::new(),
            },
            Some("secret".into()),
        )
        .await
        .expect("create tunnel");
    let spec = HostnameSpec {
        tls_passthrough: None,
        hostname: hostname.into(),
        service: "http://localhost:4000".into(),
        tunnel_id: Some(tunnel_id),
        routes: None,
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: None,
    };
    let record = dns
        .store
        .create(
            Write {
                kind: Kind::Hostname,
                id: hostname.into(),
                name: hostname.into(),
                body: serde_json::to_value(&spec).expect("json"),
                refs: vec![Ref {
                    kind: Kind::Tunnel,
                    id: tunnel_id.to_string(),
                    pointer: "/tunnel_id".into(),
                }],
            },
            None,
        )
        .await
        .expect("create hostname");
    dns.catalog.refresh_to(record.revision).await;
    tunnel_id
}

#[tokio::test]
async fn answers_follow_the_catalog() {
    let dns = start().await;
    let before = ask_udp(dns.udp, &query("app.example.com.", RecordType::A)).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    assert!(before.metadata.authoritative);
    assert_eq!(before.authorities.len(), 1, "SOA for negative caching");

    create_hostname(&dns, "app.example.com").await;
    let after = ask_udp(dns.udp, &query("App.Example.Com.", RecordType::A)).await;
    assert_eq!(after.metadata.response_code, ResponseCode::NoError);
    assert!(after.metadata.authoritative);
    assert!(!after.metadata.recursion_available);
    assert!(after.metadata.recursion_desired);
    assert_eq!(addresses(&after), ["127.0.0.1"]);
    // The question is echoed as asked.
    assert_eq!(after.queries[0].name().to_ascii(), "App.Example.Com.");

    let txt = ask_tcp(dns.tcp, &query("app.example.com.", RecordType::TXT)).await;
    let strings: Vec<String> = txt
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(strings, ["tunnel=web release=stable"]);

    let deleted = dns
        .store
        .delete(Kind::Hostname, "app.example.com", None)
        .await
        .expect("delete");
    dns.catalog.refresh_to(deleted.revision).await;
    let gone = ask_udp(dns.udp, &query("app.example.com.", RecordType::A)).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    let counted = |rcode| dns.metrics.value(QUERIES, &[("rcode", rcode)]);
    assert_eq!(counted("nxdomain"), 2);
    assert_eq!(counted("noerror"), 2);
}

#[tokio::test]
async fn apex_and_outside_names_over_both_transports() {
    let dns = start().await;
    for soa in [
        ask_udp(dns.udp, &query("example.com.", RecordType::SOA)).await,
        ask_tcp(dns.tcp, &query("example.com.", RecordType::SOA)).await,
    ] {
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert!(matches!(
            soa.answers.first().map(|r| &r.data),
            Some(RData::SOA(_))
        ));
    }
    let ns = ask_udp(dns.udp, &query("example.com.", RecordType::NS)).await;
    assert_eq!(ns.answers.len(), 1);
    let mut glue = ns.clone();
    glue.answers = ns.additionals.clone();
    assert_eq!(addresses(&glue), ["127.0.0.1"]);

    for transport in ["udp", "tcp"] {
        let question = query("www.example.org.", RecordType::A);
        let refused = match transport {
            "udp" => ask_udp(dns.udp, &question).await,
            _ => ask_tcp(dns.tcp, &question).await,
        };
        assert_eq!(
            refused.metadata.response_code,
            ResponseCode::Refused,
            "{transport}"
        );
        assert!(!refused.metadata.authoritative);
    }
    assert_eq!(dns.metrics.value(QUERIES, &[("rcode", "refused")]), 2);
}

#[tokio::test]
async fn protocol_errors_get_error_codes() {
    let dns = start().await;

    let mut two = query("a.example.com.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("b.example.com.").expect("name"),
        RecordType::A,
    ));
    let answer = ask_udp(dns.udp, &two).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    let mut notify = query("example.com.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let answer = ask_udp(dns.udp, &notify).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);

    let mut edns1 = query("example.com.", RecordType::SOA);
    let mut edns = Edns::new();
    edns.set_version(1);
    edns1.set_edns(edns);
    let answer = ask_udp(dns.udp, &edns1).await;
    // 16 is both BADVERS and BADSIG; with an OPT record it means BADVERS.
    assert_eq!(u16::from(answer.metadata.response_code), 16);
    assert!(answer.edns.is_some());

    let mut edns0 = query("example.com.", RecordType::SOA);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns0.set_edns(edns);
    let answer = ask_udp(dns.udp, &edns0).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let opt = answer.edns.as_ref().expect("an OPT record in the answer");
    assert_eq!(opt.max_payload(), MAX_UDP_PAYLOAD);

    let chaos = {
        let mut message = Message::query();
        let mut question = Query::query(
            Name::from_ascii("version.bind.").expect("name"),
            RecordType::TXT,
        );
        question.set_query_class(DNSClass::CH);
        message.add_query(question);
        message
    };
    let answer = ask_udp(dns.udp, &chaos).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn malformed_datagrams_neither_crash_nor_stall_the_server() {
    let dns = start().await;
    let valid = query("example.com.", RecordType::SOA)
        .to_vec()
        .expect("encode");

    // A header that parses followed by a truncated question: FORMERR with the same id.
    let mut cut = valid.clone();
    cut.truncate(valid.len() - 3);
    let answer = exchange_udp(dns.udp, &cut).await.expect("a FORMERR answer");
    let answer = Message::from_vec(&answer).expect("decodable");
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(answer.metadata.id, u16::from_be_bytes([valid[0], valid[1]]));

    // Shorter than a header, or a response: dropped without an answer.
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    sender
        .send_to(&[0x12, 0x34, 0x01], dns.udp)
        .await
        .expect("send");
    let mut response = valid.clone();
    response[2] |= 0x80;
    sender.send_to(&response, dns.udp).await.expect("send");
    sender.send_to(&[], dns.udp).await.expect("send");

    // Pseudo-random garbage, deterministic so a failure can be replayed.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let len = (next() % 600) as usize;
        let packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        sender.send_to(&packet, dns.udp).await.expect("send");
    }
    // Garbage over TCP too: a length prefix and junk, then a hang-up.
    if let Ok(mut stream) = TcpStream::connect(dns.tcp).await {
        let _ = stream
            .write_all(&[0x00, 0x20, 0xde, 0xad, 0xbe, 0xef])
            .await;
    }

    let answer = ask_udp(dns.udp, &query("example.com.", RecordType::SOA)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let answer = ask_tcp(dns.tcp, &query("example.com.", RecordType::SOA)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn udp_answers_over_the_rate_are_dropped_or_truncated_and_tcp_is_not_limited() {
    let dns = start_with(RateLimitConfig {
        responses_per_second: 5,
        ..RATE_LIMIT
    })
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let question = query("example.com.", RecordType::SOA);
    for _ in 0..20 {
        socket
            .send_to(&question.to_vec().expect("encode"), dns.udp)
            .await
            .expect("send");
    }
    let (mut whole, mut truncated) = (0, 0);
    let mut buffer = vec![0u8; 65_535];
    while let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buffer)).await
    {
        let answer = Message::from_vec(&buffer[..len]).expect("decodable");
        if answer.metadata.truncation {
            assert!(answer.answers.is_empty());
            assert_eq!(answer.queries.len(), 1, "the question is echoed");
            truncated += 1;
        } else {
            assert_eq!(answer.answers.len(), 1);
            whole += 1;
        }
    }
    // Five at once (plus what the bucket refilled meanwhile), then every second one truncated.
    assert!((5..=7).contains(&whole), "{whole} whole answers");
    assert!((6..=8).contains(&truncated), "{truncated} truncated");
    let limited = |action| {
        dns.metrics
            .value("postern_edge_dns_rate_limited_total", &[("action", action)])
    };
    assert_eq!(limited("truncated"), truncated);
    assert_eq!(limited("dropped"), 20 - whole - truncated);

    // Over TCP the same question is answered however often it is asked.
    for _ in 0..10 {
        let answer = ask_tcp(dns.tcp, &question).await;
        assert_eq!(answer.answers.len(), 1);
    }
    // Another question is another answer, with its own allowance.
    let answer = ask_udp(dns.udp, &query("ns.example.com.", RecordType::A)).await;
    assert_eq!(answer.answers.len(), 1);
}
