//! Fuzz target for DNS message handling: request bytes go through what hickory-server does
//! before the handler (header, message, responses dropped), then through [`ZoneHandler`] against
//! a fixed catalog snapshot, over UDP and over TCP. Every query gets exactly one answer that
//! decodes, echoes the id, fits the transport and keeps to the zones; nothing panics. Replays
//! `edge/tests/fuzz-corpus/dns/`, then runs for `POSTERN_FUZZ_SECONDS` (see `postern-fuzzing`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, MessageType, Query};
use hickory_server::proto::rr::rdata::TXT;
use hickory_server::proto::rr::{DNSClass, RData, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use postern_fuzzing::{Fuzz, Rng};
use postern_schema::api::{HostnameSpec, Route, TunnelSpec};
use postern_schema::ids::TunnelId;
use postern_schema::rules;

use super::*;
use crate::store::{Kind, Ref, SqliteStore, Store, Write};

/// The zones of the fuzzed edge.
const ZONES: [&str; 2] = ["example.com", "example.net"];

/// Names the generator asks for: existing ones, missing ones, names outside the zones and odd
/// spellings.
const NAMES: &[&str] = &[
    "app.example.com.",
    "APP.Example.COM.",
    "routed.example.com.",
    "a.b.example.com.",
    "b.example.com.",
    "ns.example.com.",
    "example.com.",
    "example.net.",
    "ns.example.net.",
    "missing.example.com.",
    "*.example.com.",
    "example.org.",
    "www.example.org.",
    "com.",
    ".",
    "xn--bcher-kva.example.com.",
    "a-very-long-label-that-is-exactly-sixty-three-characters-long-x.example.com.",
];

/// The environment: a handler over a snapshot with tunnels and hostnames, including a
/// hostname whose TXT record needs several strings.
struct DnsUnderTest {
    handler: ZoneHandler,
    _dir: tempfile::TempDir,
}

fn set_up() -> DnsUnderTest {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("dns.db")).expect("store"));
        let web = create_tunnel(&store, "web", &[("release", "stable"), ("app", "web")]).await;
        let long_value = "v".repeat(63);
        for i in 0..12 {
            let name = format!("canary-{i:02}");
            create_tunnel(
                &store,
                &name,
                &[
                    ("release", "canary"),
                    ("some.example.com/long", &long_value),
                ],
            )
            .await;
        }
        create_hostname(&store, "app.example.com", Some(web), None).await;
        create_hostname(&store, "a.b.example.com", Some(web), None).await;
        let routes = vec![Route {
            selector: [("release".to_string(), "canary".to_string())].into(),
            weight: 100,
            max_error_rate: None,
        }];
        create_hostname(&store, "routed.example.com", None, Some(routes)).await;
        let catalog = Catalog::load(store, vec!["127.0.0.1".into(), "::1".into()])
            .await
            .expect("catalog");
        let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
        let config = ZoneConfig::new(
            &zones,
            &["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")],
        );
        DnsUnderTest {
            handler: ZoneHandler::new(
                catalog,
                config,
                // Off: every input is asked from the same address, and each must be answered.
                RateLimitConfig {
                    responses_per_second: 0,
                    slip: 0,
                    ipv4_prefix: 24,
                    ipv6_prefix: 56,
                },
                Arc::new(Metrics::default()),
            ),
            _dir: dir,
        }
    })
}

async fn create_tunnel(store: &Arc<dyn Store>, name: &str, labels: &[(&str, &str)]) -> TunnelId {
    let id = TunnelId::new_random();
    let spec = TunnelSpec {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    store
        .create(
            Write {
                kind: Kind::Tunnel,
                id: id.to_string(),
                name: spec.name.clone(),
                body: serde_json::to_value(&spec).expect("json"),
                refs: Vec::new(),
            },
            Some("secret".into()),
        )
        .await
        .expect("create tunnel");
    id
}

async fn create_hostname(
    store: &Arc<dyn Store>,
    hostname: &str,
    tunnel_id: Option<TunnelId>,
    routes: Option<Vec<Route>>,
) {
    let spec = HostnameSpec {
        tls_passthrough: None,
        hostname: hostname.into(),
        service: "http://localhost:4000".into(),
        tunnel_id,
        routes,
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: None,
    };
    let refs = tunnel_id
        .map(|id| Ref {
            kind: Kind::Tunnel,
            id: id.to_string(),
            pointer: "/tunnel_id".into(),
        })
        .into_iter()
        .collect();
    store
        .create(
            Write {
                kind: Kind::Hostname,
                id: hostname.into(),
                name: hostname.into(),
                body: serde_json::to_value(&spec).expect("json"),
                refs,
            },
            None,
        )
        .await
        .expect("create hostname");
}

/// Keeps what the handler sends, encoded as hickory-server's `ResponseHandle` would: bounded
/// by the client's UDP payload size, and SERVFAIL when the answer cannot be encoded.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let max = match (self.protocol, response.edns()) {
            (Protocol::Udp, Some(edns)) => edns.max_payload(),
            (Protocol::Udp, None) => 512,
            _ => u16::MAX,
        };
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(_) => {
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                let mut encoder = BinEncoder::new(&mut bytes);
                hickory_server::proto::serialize::binary::BinEncodable::emit(&header, &mut encoder)
                    .map_err(NetError::from)?;
                ResponseInfo::from(header)
            }
        };
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes);
        Ok(info)
    }
}

/// Runs one request through the server path; `None` when hickory-server drops it (or answers
/// FORMERR itself) before the handler.
fn answer(dns: &DnsUnderTest, bytes: &[u8], protocol: Protocol) -> Option<Vec<Vec<u8>>> {
    let mut decoder = BinDecoder::new(bytes);
    Header::read(&mut decoder).ok()?;
    let src = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
    let request = Request::from_bytes(bytes.to_vec(), src, protocol).ok()?;
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let capture = Capture {
        protocol,
        sent: Arc::default(),
    };
    futures::executor::block_on(
        dns.handler
            .handle_request::<_, TokioTime>(&request, capture.clone()),
    );
    let sent = capture
        .sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Some(sent)
}

fn check(dns: &DnsUnderTest, bytes: &[u8]) {
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let Some(sent) = answer(dns, bytes, protocol) else {
            continue;
        };
        assert_eq!(sent.len(), 1, "{protocol}: one answer per query");
        if question_points_into_header(bytes) {
            // hickory-server echoes the question section byte for byte, so a compression
            // pointer into the request's header points into the answer's changed header. Only
            // the sender of such a query gets a garbled echo; nothing else to check.
            continue;
        }
        let request = Message::from_vec(bytes).ok();
        let reply = Message::from_vec(&sent[0]).unwrap_or_else(|e| {
            panic!(
                "{protocol}: the answer does not decode: {e}\n  answer: {}",
                postern_fuzzing::escape(&sent[0], 2_000)
            )
        });
        assert_eq!(reply.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        if protocol == Protocol::Udp {
            let limit = request
                .as_ref()
                .and_then(|r| r.edns.as_ref())
                .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            assert!(
                sent[0].len() <= usize::from(limit),
                "a UDP answer of {} bytes, limit {limit}",
                sent[0].len()
            );
        }
        let rcode = reply.metadata.response_code;
        if rcode == ResponseCode::ServFail {
            // Only the encoder's fallback answers SERVFAIL: an echoed question too big to send.
            assert!(reply.queries.is_empty());
            continue;
        }
        let Some(request) = request else {
            continue;
        };
        check_zone_answer(&request, &reply);
    }
}

/// Does a name in the question section use a compression pointer into the 12-byte header,
/// directly or through other pointers (a pointer to bytes that are themselves a pointer)?
fn question_points_into_header(bytes: &[u8]) -> bool {
    let questions = bytes
        .get(4..6)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    let mut at = 12;
    for _ in 0..questions {
        match walk_name(bytes, at) {
            Walk::IntoHeader => return true,
            Walk::Unreadable => return false,
            Walk::EndsAt(end) => at = end + 4,
        }
    }
    false
}

/// Where walking the name at `start` leads.
enum Walk {
    IntoHeader,
    Unreadable,
    /// The name is fine; the question's type follows at this offset.
    EndsAt(usize),
}

/// Follows the name at `start`, labels and pointers, to where it ends or first points into the
/// header.
fn walk_name(bytes: &[u8], start: usize) -> Walk {
    // Labels and pointer hops together: far more than any name a decoder accepts (at most
    // 127 labels), and a loop of pointers ends here too.
    const MAX_STEPS: usize = 4096;
    let mut at = start;
    let mut end = None;
    for _ in 0..MAX_STEPS {
        let Some(&len) = bytes.get(at) else {
            return Walk::Unreadable;
        };
        match len {
            0 => return Walk::EndsAt(end.unwrap_or(at + 1)),
            l if l & 0xc0 == 0xc0 => {
                let Some(&low) = bytes.get(at + 1) else {
                    return Walk::Unreadable;
                };
                let target = usize::from(l & 0x3f) << 8 | usize::from(low);
                if target < 12 {
                    return Walk::IntoHeader;
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 != 0 => return Walk::Unreadable,
            l => at += 1 + usize::from(l),
        }
    }
    Walk::Unreadable
}

/// A well-formed query with one question gets an answer that keeps to the zones.
fn check_zone_answer(request: &Message, reply: &Message) {
    let rcode = reply.metadata.response_code;
    let single_query = request.queries.len() == 1
        && request.metadata.op_code == OpCode::Query
        && request.edns.as_ref().is_none_or(|e| e.version() == 0);
    if !single_query {
        assert!(
            matches!(
                rcode,
                ResponseCode::FormErr | ResponseCode::NotImp | ResponseCode::BADVERS
            ) || u16::from(rcode) == 16,
            "{rcode} for a request that is not one plain query"
        );
        return;
    }
    let query = &request.queries[0];
    let name = query.name().to_lowercase().to_ascii();
    let name = name.strip_suffix('.').unwrap_or(&name);
    let in_zone = ZONES.iter().any(|zone| rules::in_zone(name, zone));
    if !in_zone {
        assert_eq!(rcode, ResponseCode::Refused, "{name} is outside the zones");
        assert!(reply.answers.is_empty());
        return;
    }
    assert!(
        matches!(
            rcode,
            ResponseCode::NoError | ResponseCode::NXDomain | ResponseCode::Refused
        ),
        "{rcode} for {name}"
    );
    for record in reply.answers.iter().chain(&reply.authorities) {
        let owner = record.name.to_lowercase().to_ascii();
        let owner = owner.strip_suffix('.').unwrap_or(&owner);
        assert!(
            ZONES.iter().any(|zone| rules::in_zone(owner, zone)),
            "a record for {owner} answers {name}"
        );
        if let RData::TXT(txt) = &record.data {
            assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
        }
    }
}

#[test]
fn dns() {
    let dns = set_up();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/dns");
    Fuzz::new("dns", corpus)
        .generated_percent(50)
        .max_len(4096)
        .dictionary([
            &[0xc0, 0x0c][..],
            &[0xc0, 0x00],
            &[0x00, 0x29, 0x10, 0x00],
            &[0x00, 0x01, 0x00, 0x01],
            &[0x00, 0xfc, 0x00, 0x01],
            &[0x00, 0xff, 0x00, 0xff],
            &[
                0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00,
            ],
            &[0x3f],
            &[0xff, 0xff],
        ])
        .run(query_bytes, |bytes| check(&dns, bytes));
}

/// A query, mostly well formed: one to three questions, EDNS now and then, odd op codes,
/// classes and types, and records in sections a query should not carry.
fn query_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = rng.next_u64() as u16;
    message.metadata.recursion_desired = rng.one_in(2);
    message.metadata.checking_disabled = rng.one_in(8);
    if rng.one_in(8) {
        message.metadata.op_code = OpCode::from_u8(rng.below(16) as u8);
    }
    let questions = match rng.below(10) {
        0 => 0,
        1 => 2,
        2 => 3,
        _ => 1,
    };
    for _ in 0..questions {
        let name = Name::from_ascii(rng.pick(NAMES)).unwrap_or_else(|_| Name::root());
        let qtype = match rng.below(12) {
            0 => RecordType::from(rng.next_u64() as u16),
            1 => RecordType::AXFR,
            2 => RecordType::IXFR,
            3 => RecordType::ANY,
            _ => *rng.pick(&[
                RecordType::A,
                RecordType::AAAA,
                RecordType::TXT,
                RecordType::SOA,
                RecordType::NS,
                RecordType::MX,
                RecordType::CNAME,
            ]),
        };
        let mut query = Query::query(name, qtype);
        if rng.one_in(6) {
            let other = DNSClass::from(rng.next_u64() as u16);
            let class = *rng.pick(&[
                DNSClass::CH,
                DNSClass::HS,
                DNSClass::ANY,
                DNSClass::NONE,
                other,
            ]);
            query.set_query_class(class);
        }
        message.add_query(query);
    }
    if rng.one_in(3) {
        let mut edns = Edns::new();
        edns.set_max_payload(*rng.pick(&[0, 511, 512, 1232, 4096, 65535]));
        edns.set_version(if rng.one_in(6) { 1 } else { 0 });
        edns.set_dnssec_ok(rng.one_in(4));
        message.set_edns(edns);
    }
    if rng.one_in(8) {
        let owner = Name::from_ascii(rng.pick(NAMES)).unwrap_or_else(|_| Name::root());
        let txt = TXT::new(vec!["x".repeat(rng.below(300))]);
        message.add_answer(Record::from_rdata(owner, 30, RData::TXT(txt)));
    }
    message.to_vec().unwrap_or_default()
}
