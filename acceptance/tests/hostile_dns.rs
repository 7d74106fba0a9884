//! Hostility on the DNS port, against the real `postern-edge` (random datagrams are in
//! `dns.rs`). On the TCP side: a length prefix larger than the data, frames trickled a byte at
//! a time, a zero-length frame, pipelined frames, and a thousand idle connections, of which the
//! edge keeps at most `--dns-tcp-max-connections`. The edge keeps answering over TCP and UDP,
//! closes the connections that stall, and logs no panic. As a reflector: `ANY` is answered
//! with one record set (RFC 8482), and a flood of one question from one client prefix is
//! rate-limited (dropped, every second limited answer sent truncated) while another prefix is
//! answered. Limits are set through environment variables, which an edge without them ignores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use acceptance::{EdgeOptions, EdgeProcess};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a well-behaved query may wait for its answer while the port is under load.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The edge closes a TCP connection that sends nothing for 10 s; allow some slack.
const IDLE_CLOSE_WITHIN: Duration = Duration::from_secs(20);

/// Idle connections held open at once.
const IDLE_CONNECTIONS: usize = 1_000;

fn query(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        RecordType::SOA,
    ));
    message.to_vec().expect("encode")
}

fn framed(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).expect("short message");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    frame
}

/// Reads one length-prefixed answer and checks that it answers `id` with NOERROR.
async fn read_answer(stream: &mut TcpStream, id: u16) {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, read)
        .await
        .expect("a TCP answer in time")
        .expect("a TCP answer");
    let answer = Message::from_vec(&answer).expect("a decodable answer");
    assert_eq!(answer.metadata.id, id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
}

/// A normal query over a fresh TCP connection is answered.
async fn tcp_answers(dns: SocketAddr, id: u16) {
    let mut stream = tokio::time::timeout(ANSWER_WITHIN, TcpStream::connect(dns))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.write_all(&framed(&query(id))).await.expect("send");
    read_answer(&mut stream, id).await;
}

/// A normal query over UDP is answered.
async fn udp_answers(dns: SocketAddr, id: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.send_to(&query(id), dns).await.expect("send");
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(ANSWER_WITHIN, socket.recv_from(&mut buffer))
        .await
        .expect("a UDP answer in time")
        .expect("a UDP answer");
    let answer = Message::from_vec(&buffer[..len]).expect("a decodable answer");
    assert_eq!(answer.metadata.id, id);
}

/// Waits until the server closes `stream` (EOF or reset); `false` if it is still open then.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(within, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn lying_trickled_and_idle_tcp_clients_do_not_stop_dns() {
    raise_open_file_limit();
    let edge = EdgeProcess::start();
    let dns = edge.addrs.dns;
    let started = Instant::now();

    // A length prefix that promises 65,535 bytes, followed by ten.
    let mut liar = TcpStream::connect(dns).await.expect("connect");
    liar.write_all(&[0xff, 0xff]).await.expect("send");
    liar.write_all(&[0u8; 10]).await.expect("send");
    // Half a length prefix, then nothing.
    let mut half = TcpStream::connect(dns).await.expect("connect");
    half.write_all(&[0x00]).await.expect("send");
    tcp_answers(dns, 1).await;

    // A frame trickled a byte at a time is answered once complete.
    let mut slow = TcpStream::connect(dns).await.expect("connect");
    for byte in framed(&query(2)) {
        slow.write_all(&[byte]).await.expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read_answer(&mut slow, 2).await;
    // The prefix in one write, the message a second later.
    let message = query(3);
    slow.write_all(&framed(&message)[..2]).await.expect("send");
    tokio::time::sleep(Duration::from_secs(1)).await;
    slow.write_all(&message).await.expect("send");
    read_answer(&mut slow, 3).await;

    // Two frames in one write: two answers, in order.
    let mut pipelined = TcpStream::connect(dns).await.expect("connect");
    let mut both = framed(&query(4));
    both.extend(framed(&query(5)));
    pipelined.write_all(&both).await.expect("send");
    read_answer(&mut pipelined, 4).await;
    read_answer(&mut pipelined, 5).await;

    // A zero-length frame: whatever becomes of that connection, the next one is served.
    let mut empty = TcpStream::connect(dns).await.expect("connect");
    empty.write_all(&[0x00, 0x00]).await.expect("send");
    tcp_answers(dns, 6).await;

    // A thousand connections that send nothing, held open together.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(
            TcpStream::connect(dns)
                .await
                .expect("connect an idle connection"),
        );
    }
    tcp_answers(dns, 7).await;
    udp_answers(dns, 8).await;

    // The server closes what stalls: the liar, the half prefix and the idle connections.
    assert!(
        closed_within(&mut liar, IDLE_CLOSE_WITHIN).await,
        "a connection that promised more than it sent stayed open"
    );
    assert!(closed_within(&mut half, IDLE_CLOSE_WITHIN).await);
    let mut waits = tokio::task::JoinSet::new();
    for mut stream in idle {
        waits.spawn(async move { closed_within(&mut stream, IDLE_CLOSE_WITHIN).await });
    }
    let still_open = waits
        .join_all()
        .await
        .into_iter()
        .filter(|closed| !closed)
        .count();
    assert_eq!(still_open, 0, "idle connections the edge did not close");

    tcp_answers(dns, 9).await;
    udp_answers(dns, 10).await;
    assert_eq!(edge.api().get("/healthz").await.status, 200);
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
    assert!(started.elapsed() < Duration::from_secs(90));
}

/// Raises this process's soft open-file limit to its hard limit (a thousand connections and
/// more need it where the soft limit is 1,024).
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
}

fn edge_with_env(env: &[(&str, &str)]) -> EdgeProcess {
    EdgeProcess::start_with(EdgeOptions {
        args: vec![
            "--public-address".into(),
            "127.0.0.1".into(),
            "--public-address".into(),
            "::1".into(),
        ],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EdgeOptions::default()
    })
}

/// Asks `question` over UDP from `socket` and waits for its answer (bytes).
async fn udp_exchange(socket: &UdpSocket, dns: SocketAddr, question: &Message) -> Vec<u8> {
    socket
        .send_to(&question.to_vec().expect("encode"), dns)
        .await
        .expect("send");
    let mut buffer = vec![0u8; 65_535];
    loop {
        let (len, _) = tokio::time::timeout(ANSWER_WITHIN, socket.recv_from(&mut buffer))
            .await
            .expect("a UDP answer in time")
            .expect("a UDP answer");
        if Message::from_vec(&buffer[..len]).is_ok_and(|m| m.metadata.id == question.metadata.id) {
            return buffer[..len].to_vec();
        }
    }
}

fn question(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand_id();
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    message
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

#[tokio::test]
async fn any_is_answered_with_one_record_set() {
    let edge = edge_with_env(&[]);
    let api = edge.api();
    let dns = edge.addrs.dns;
    // A tunnel with many labels, so the name's TXT set is large.
    let labels: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| (format!("label-{i}"), json!("x".repeat(40))))
        .collect();
    let tunnel = api
        .post("/v1/tunnels", &json!({"name": "web", "labels": labels}))
        .await;
    assert_eq!(tunnel.status, 201, "{}", tunnel.text);
    let hostname = api
        .post(
            "/v1/hostnames",
            &json!({
                "hostname": "app.example.com",
                "service": "http://localhost:4000",
                "tunnel_id": tunnel.body["id"],
            }),
        )
        .await;
    assert_eq!(hostname.status, 201, "{}", hostname.text);

    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let txt = udp_exchange(&socket, dns, &question("app.example.com.", RecordType::TXT)).await;
    assert!(txt.len() > 800, "the TXT set is large: {} bytes", txt.len());
    for (name, expected) in [
        ("app.example.com.", RecordType::A),
        ("example.com.", RecordType::SOA),
        ("ns.example.com.", RecordType::A),
    ] {
        let ask = question(name, RecordType::ANY);
        let asked = ask.to_vec().expect("encode").len();
        let bytes = udp_exchange(&socket, dns, &ask).await;
        let answer = Message::from_vec(&bytes).expect("a decodable answer");
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        let types: Vec<RecordType> = answer.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [expected], "{name}: one record set");
        assert!(answer.additionals.is_empty(), "{name}: {answer:?}");
        // Not an amplifier: the answer is the question plus one small record.
        assert!(
            bytes.len() <= 2 * asked + 40,
            "{name} ANY: {} bytes answer a {asked}-byte question",
            bytes.len()
        );
        println!("{name} ANY: {asked} bytes asked, {} answered", bytes.len());
    }
}

/// The cap the next test sets (the default is larger).
const TCP_CAP: usize = 100;

#[tokio::test]
async fn idle_tcp_connections_are_capped_while_udp_and_new_tcp_clients_are_answered() {
    raise_open_file_limit();
    let edge = edge_with_env(&[
        ("POSTERN_EDGE_DNS_TCP_MAX_CONNECTIONS", "100"),
        // Long enough that no connection here is closed for idling.
        ("POSTERN_EDGE_DNS_TCP_IDLE_TIMEOUT", "60s"),
    ]);
    let dns = edge.addrs.dns;
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(
            TcpStream::connect(dns)
                .await
                .expect("connect an idle connection"),
        );
    }
    // While they are held: UDP is answered at once, and so is a new TCP client (the edge makes
    // room by closing the connection that has been idle longest).
    let started = Instant::now();
    udp_answers(dns, 1).await;
    tcp_answers(dns, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The edge has accepted every connection by now (the last one was answered); count the
    // ones it closed, waiting a little for the closes to arrive.
    let closed = Arc::new(AtomicUsize::new(0));
    let mut waits = tokio::task::JoinSet::new();
    for mut stream in idle {
        let closed = closed.clone();
        waits.spawn(async move {
            if closed_within(&mut stream, Duration::from_secs(3)).await {
                closed.fetch_add(1, Ordering::Relaxed);
            }
            stream
        });
    }
    let idle: Vec<TcpStream> = waits.join_all().await;
    let closed = closed.load(Ordering::Relaxed);
    let open = IDLE_CONNECTIONS - closed;
    println!("{IDLE_CONNECTIONS} idle connections: {open} left open, {closed} closed by the edge");
    assert!(
        open <= TCP_CAP,
        "{open} idle connections open, cap {TCP_CAP}"
    );
    assert!(open > 0, "the newest connections are kept");
    let shed = edge
        .metric("postern_edge_dns_tcp_connections_closed_total{reason=\"evicted\"}")
        .await;
    assert!(
        shed >= (IDLE_CONNECTIONS - TCP_CAP) as u64,
        "evicted: {shed}"
    );
    drop(idle);
    tcp_answers(dns, 3).await;
    udp_answers(dns, 4).await;
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

/// How many identical questions the flood sends, one a millisecond: ten times the default
/// rate limit (100 answers a second per client prefix and answer).
const FLOOD: usize = 2_000;

#[tokio::test]
async fn a_flood_from_one_prefix_is_rate_limited_while_another_prefix_is_answered() {
    let edge = edge_with_env(&[]);
    let dns = edge.addrs.dns;
    // 127.0.0.2 floods; 127.0.1.2 is in another /24, 127.0.0.3 in the flooder's.
    let flooder = Arc::new(
        UdpSocket::bind("127.0.0.2:0")
            .await
            .expect("flooder socket"),
    );
    let neighbour = Arc::new(
        UdpSocket::bind("127.0.0.3:0")
            .await
            .expect("neighbour socket"),
    );
    let neighbour_sender = neighbour.clone();
    let other = UdpSocket::bind("127.0.1.2:0").await.expect("other socket");

    let full = Arc::new(AtomicUsize::new(0));
    let truncated = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let (flooder, full, truncated) = (flooder.clone(), full.clone(), truncated.clone());
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            let mut last_answer = Instant::now();
            while let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_secs(1), flooder.recv_from(&mut buffer)).await
            {
                last_answer = Instant::now();
                let Ok(answer) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                if answer.metadata.truncation {
                    assert!(answer.answers.is_empty(), "{answer:?}");
                    truncated.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(answer.answers.len(), 1, "{answer:?}");
                    full.fetch_add(1, Ordering::Relaxed);
                }
            }
            last_answer
        })
    };
    // The flooder's neighbour in its /24 shares its limit.
    let neighbour_full = Arc::new(AtomicUsize::new(0));
    let neighbour_receiver = {
        let neighbour_full = neighbour_full.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            while let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_secs(1), neighbour.recv_from(&mut buffer)).await
            {
                if Message::from_vec(&buffer[..len]).is_ok_and(|m| !m.metadata.truncation) {
                    neighbour_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut other_answered = 0;
    for i in 0..FLOOD {
        tick.tick().await;
        let bytes = question("example.com.", RecordType::SOA)
            .to_vec()
            .expect("encode");
        flooder.send_to(&bytes, dns).await.expect("send");
        if i % 200 == 150 {
            neighbour_sender.send_to(&bytes, dns).await.expect("send");
        }
        if i % 200 == 100 {
            // Meanwhile another prefix asks the same question and gets the whole answer.
            let bytes = udp_exchange(&other, dns, &question("example.com.", RecordType::SOA)).await;
            let answer = Message::from_vec(&bytes).expect("decodable");
            assert!(!answer.metadata.truncation, "{answer:?}");
            assert_eq!(answer.answers.len(), 1, "{answer:?}");
            other_answered += 1;
        }
    }
    let flood_took = started.elapsed();
    let last_answer = receiver.await.expect("receiver");
    neighbour_receiver.await.expect("neighbour receiver");
    let neighbour_full = neighbour_full.load(Ordering::Relaxed);
    let (full, truncated) = (
        full.load(Ordering::Relaxed),
        truncated.load(Ordering::Relaxed),
    );
    let dropped = FLOOD - full - truncated;
    println!(
        "{FLOOD} questions in {flood_took:?}: {full} answered, {truncated} truncated, {dropped} \
         without an answer; the other prefix was answered {other_answered} times, the neighbour \
         {neighbour_full}"
    );
    // 100 a second after a burst of 100, over the two seconds of the flood, or longer if the
    // edge was still answering after it (a loaded machine).
    let answering = last_answer
        .saturating_duration_since(started)
        .max(flood_took);
    let allowed = 100 + (100.0 * answering.as_secs_f64()) as usize;
    assert!(
        full <= allowed + 50,
        "{full} whole answers, about {allowed} allowed"
    );
    // Every second limited answer is sent truncated, so a real client retries over TCP.
    assert!(
        truncated >= FLOOD.saturating_sub(allowed) / 3,
        "{truncated} truncated"
    );
    assert!(
        dropped >= FLOOD.saturating_sub(allowed) / 3,
        "{dropped} dropped"
    );
    assert!(
        neighbour_full <= 2,
        "the neighbour got {neighbour_full} whole answers"
    );
    // TCP is not limited: the flooder's host still gets the answer there.
    tcp_answers(dns, 11).await;
    for action in ["dropped", "truncated"] {
        let count = edge
            .metric(&format!(
                "postern_edge_dns_rate_limited_total{{action=\"{action}\"}}"
            ))
            .await;
        assert!(count > 0, "{action}: {count}");
    }
}
