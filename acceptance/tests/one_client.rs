//! Limits that hold against one client (issue 23), each against the real `postern-edge` with a
//! real connector and origin: one client address (an IPv4 address or an IPv6 /64) cannot take
//! more than its share of the public listeners while another is served at once; idle
//! connections are closed; the edge raises its own open-file limit; WebSockets count against the
//! same limits and end with the edge; SIGTERM ends everything within `--shutdown-timeout`;
//! an IPv6 /64 is one client for rate limits; a path-restricted hostname forwards exactly the
//! path it checked; a node cut off from its store stops serving after `--max-staleness`.
//!
//! Different 127.x.y.z source addresses stand in for different clients; the IPv6 test runs in
//! a network namespace of its own (`acceptance::netns`). Each test prints what it measured.
//!
//! Covered elsewhere: the tunnel side of the issue (connections per tunnel, renewal floods,
//! oversized hellos, a connector that never answers, garbage TLS logged at debug) in
//! `hostile_tunnel.rs`; the API's request counter in `hostile_api.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use acceptance::fixture::{served, served_with, token, tunnel_for};
use acceptance::process::{open_fds, tcp_sockets_from};
use acceptance::raw::{self, frame_type};
use acceptance::visitor::connect_from;
use acceptance::websocket;
use acceptance::{ConnectorProcess, EdgeOptions, EdgeProcess, PostgresServer, TestOrigin};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "app.example.com";

/// Runs the tests of this file that open thousands of connections or time what the edge
/// does one at a time, so that they do not blur each other's timings on two cores.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Edge options that set limits through their environment variables (`POSTERN_EDGE_<FLAG>`):
/// an edge from before these limits ignores them, so the tests show the old behaviour there
/// rather than an unknown flag.
fn with_env(vars: &[(&str, &str)]) -> EdgeOptions {
    EdgeOptions {
        env: vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        ..EdgeOptions::default()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// `GET /hello` on a fresh connection from `from`: its status (None when the connection was
/// closed without one) and how long it took.
async fn hello_from(from: IpAddr, addr: SocketAddr) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let Ok(mut stream) = connect_from(from, addr).await else {
        return (None, started.elapsed());
    };
    let request = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let answer = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
    (answer.status, started.elapsed())
}

/// The HTTP/2 preface and an empty SETTINGS frame: an HTTP/2 connection with no stream.
fn h2_hello() -> Vec<u8> {
    let mut hello = raw::H2_PREFACE.to_vec();
    hello.extend(raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]));
    hello
}

/// Reads (and discards) until the edge closes `stream`; `true` when it did within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Splits `streams` into those the edge keeps open and those it closes within `wait`.
async fn kept_and_closed(streams: Vec<TcpStream>, wait: Duration) -> (Vec<TcpStream>, usize) {
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in streams {
        checks.spawn(async move {
            let closed = closed_within(&mut stream, wait).await;
            (stream, closed)
        });
    }
    let (mut kept, mut closed) = (Vec::new(), 0);
    while let Some(result) = checks.join_next().await {
        let (stream, was_closed) = result.expect("task");
        if was_closed {
            closed += 1;
        } else {
            kept.push(stream);
        }
    }
    (kept, closed)
}

// === a client's share of the public listeners ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_is_capped_at_its_share_while_another_is_served_at_once() {
    let _serial = serial().await;
    // The default share: 256 connections per client, over both listeners and every worker.
    let served = served(HOST).await;
    let addrs = served.edge.addrs;
    let attacker = ip("127.0.0.2");
    let mut streams = Vec::new();
    for i in 0..300 {
        // Two in three are HTTP/2 connections with no stream on the HTTP listener, one in three
        // silent connections to the HTTPS listener: both kinds the edge holds for a while.
        let stream = if i % 3 == 2 {
            connect_from(attacker, addrs.https).await.expect("connect")
        } else {
            let mut stream = connect_from(attacker, addrs.http).await.expect("connect");
            stream.write_all(&h2_hello()).await.expect("preface");
            stream
        };
        streams.push(stream);
    }
    let (kept, closed) = kept_and_closed(streams, Duration::from_secs(2)).await;

    // Meanwhile another client is served at once.
    let (status, took) = hello_from(ip("127.0.0.3"), addrs.http).await;
    assert_eq!(status, Some(200));
    // The capped client's next connection is closed without an answer.
    let (refused, _) = hello_from(attacker, addrs.http).await;
    println!(
        "client share: 300 connections from one client, {} held by the edge, {closed} closed at once; \
         a request from another client meanwhile took {took:?}; the first client's next request got {refused:?}",
        kept.len()
    );
    assert_eq!(kept.len(), 256, "the client's share is 256 connections");
    assert_eq!(closed, 44);
    assert!(
        took < Duration::from_secs(1),
        "another client waited {took:?}"
    );
    assert_eq!(
        refused, None,
        "a connection over the share is closed unanswered"
    );
    let refusals = served
        .edge
        .metric("postern_edge_visitor_connections_refused_total{reason=\"client_share\"}")
        .await;
    assert!(refusals >= 45, "{refusals} refusals counted");

    // Once it lets go of connections, it is served again.
    drop(kept);
    acceptance::eventually(
        Duration::from_secs(10),
        "the first client to be served again",
        || async { (hello_from(attacker, addrs.http).await.0 == Some(200)).then_some(()) },
    )
    .await;
}

// === idle connections ===

/// Reads HTTP/2 frames, answering SETTINGS and (when `answer_pings`) PINGs, until the edge
/// closes the connection; how long that took, whether a GOAWAY came first, and the stream ids
/// of the responses seen. `None` when it was still open after `wait`.
async fn h2_until_closed(
    stream: &mut TcpStream,
    answer_pings: bool,
    wait: Duration,
) -> Option<(Duration, bool, Vec<u32>)> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + wait;
    let (mut goaway, mut answered) = (false, Vec::new());
    loop {
        let frame = match tokio::time::timeout_at(deadline, raw::read_h2_frame(stream)).await {
            Err(_) => return None,
            Ok(Err(_)) => return Some((started.elapsed(), goaway, answered)),
            Ok(Ok(frame)) => frame,
        };
        match frame.kind {
            frame_type::SETTINGS if frame.flags & 0x1 == 0 => {
                let _ = stream
                    .write_all(&raw::h2_frame(frame_type::SETTINGS, 0x1, 0, &[]))
                    .await;
            }
            frame_type::PING if frame.flags & 0x1 == 0 && answer_pings => {
                let _ = stream
                    .write_all(&raw::h2_frame(frame_type::PING, 0x1, 0, &frame.payload))
                    .await;
            }
            frame_type::HEADERS => answered.push(frame.stream),
            frame_type::GOAWAY => goaway = true,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_their_idle_timeouts_and_silent_peers_after_a_ping() {
    let _serial = serial().await;
    let served = served_with(
        HOST,
        with_env(&[
            ("POSTERN_EDGE_HTTP2_IDLE_TIMEOUT", "2s"),
            ("POSTERN_EDGE_HTTP1_IDLE_TIMEOUT", "1s"),
            ("POSTERN_EDGE_HTTP2_KEEPALIVE_INTERVAL", "1s"),
        ]),
    )
    .await;
    let addr = served.edge.addrs.http;
    let slack = Duration::from_secs(3);

    // HTTP/2 with no stream at all (answering pings): GOAWAY and closed after 2 s.
    let mut never = TcpStream::connect(addr).await.expect("connect");
    never.write_all(&h2_hello()).await.expect("preface");
    let no_stream =
        tokio::spawn(
            async move { h2_until_closed(&mut never, true, Duration::from_secs(20)).await },
        );

    // HTTP/2 after one request: closed 2 s after its response.
    let mut once = TcpStream::connect(addr).await.expect("connect");
    once.write_all(&h2_hello()).await.expect("preface");
    once.write_all(&raw::h2_get(1, HOST, "/hello", true))
        .await
        .expect("request");
    let after_one =
        tokio::spawn(
            async move { h2_until_closed(&mut once, true, Duration::from_secs(20)).await },
        );

    // HTTP/2 that never answers a ping, with a slow request in flight (so not idle): closed
    // once a ping goes unanswered, long before its response.
    let mut deaf = TcpStream::connect(addr).await.expect("connect");
    deaf.write_all(&h2_hello()).await.expect("preface");
    deaf.write_all(&raw::h2_get(1, HOST, "/slow?ms=15000", true))
        .await
        .expect("request");
    let unanswered =
        tokio::spawn(
            async move { h2_until_closed(&mut deaf, false, Duration::from_secs(20)).await },
        );

    // HTTP/1.1 keep-alive after one request: closed 1 s after its response.
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    keep_alive
        .write_all(request.as_bytes())
        .await
        .expect("request");
    let mut answer = Vec::new();
    while !answer.ends_with(b"hello from the origin") {
        let mut buffer = [0u8; 1024];
        let n = keep_alive.read(&mut buffer).await.expect("response");
        assert!(n > 0, "closed before the response");
        answer.extend_from_slice(&buffer[..n]);
    }
    let answered = Instant::now();
    assert!(closed_within(&mut keep_alive, Duration::from_secs(1) + slack).await);
    let http1_after = answered.elapsed();

    let (no_stream_after, goaway, _) = no_stream
        .await
        .expect("task")
        .expect("an idle HTTP/2 connection was never closed");
    let (after_one_after, _, responses) = after_one
        .await
        .expect("task")
        .expect("an HTTP/2 connection idle after a request was never closed");
    let (deaf_after, _, deaf_responses) = unanswered
        .await
        .expect("task")
        .expect("a connection that ignores pings was never closed");
    println!(
        "idle: HTTP/2 without a stream closed after {no_stream_after:?} (GOAWAY {goaway}); HTTP/2 idle after one request closed \
         {after_one_after:?} after it opened (responses {responses:?}); HTTP/2 ignoring pings closed after {deaf_after:?} \
         with its slow request unanswered ({deaf_responses:?}); HTTP/1.1 keep-alive closed {http1_after:?} after its response"
    );
    assert!(
        goaway,
        "the edge says GOAWAY before it closes an idle HTTP/2 connection"
    );
    assert!(
        no_stream_after >= Duration::from_millis(1900)
            && no_stream_after <= Duration::from_secs(2) + slack,
        "{no_stream_after:?}"
    );
    assert_eq!(responses, vec![1]);
    assert!(
        after_one_after >= Duration::from_millis(1900)
            && after_one_after <= Duration::from_secs(2) + slack
    );
    assert!(
        deaf_responses.is_empty(),
        "the slow response came: {deaf_responses:?}"
    );
    assert!(
        deaf_after <= Duration::from_secs(2) + slack,
        "{deaf_after:?}"
    );
    assert!(http1_after >= Duration::from_millis(900), "{http1_after:?}");
}

// === the open-file limit ===

/// Raises this process's open-file limit to its hard limit (the test opens thousands).
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

/// The soft and hard `Max open files` of a process.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_with_a_soft_limit_of_1024_raises_it_and_serves_4000_connections() {
    let _serial = serial().await;
    const CONNECTIONS: usize = 4_000;
    const CLIENTS: usize = 20;
    let hard = raise_nofile();
    assert!(
        hard as usize > 2 * CONNECTIONS + 1_000,
        "RLIMIT_NOFILE {hard} is too low for this test"
    );
    let served = served_with(
        HOST,
        EdgeOptions {
            soft_nofile: Some(1024),
            ..EdgeOptions::default()
        },
    )
    .await;
    let pid = served.edge.pid();
    let (soft, edge_hard) = nofile_of(pid);
    assert_eq!(
        soft, edge_hard,
        "the edge runs with a soft limit of {soft} (hard {edge_hard})"
    );
    assert!(
        served.edge.log().contains("raised the open-file limit"),
        "{}",
        served.edge.log()
    );
    let fds_before = open_fds(pid);

    // 4,000 idle HTTP/2 connections from 20 clients (200 each, within their share).
    let mut held = Vec::with_capacity(CONNECTIONS);
    for batch in 0..CONNECTIONS / 100 {
        let mut connecting = tokio::task::JoinSet::new();
        for i in 0..100 {
            let client = ip(&format!("127.0.1.{}", 1 + (batch * 100 + i) % CLIENTS));
            let addr = served.edge.addrs.http;
            connecting.spawn(async move {
                let mut stream = connect_from(client, addr).await?;
                stream.write_all(&h2_hello()).await?;
                Ok::<_, std::io::Error>(stream)
            });
        }
        while let Some(result) = connecting.join_next().await {
            held.push(result.expect("task").expect("connect"));
        }
    }
    // Counted by peer: the edge's other descriptors come and go meanwhile (the keep-alive
    // connection of the request that showed it serving closes when idle, for one).
    let from_clients = |ip: std::net::Ipv4Addr| ip.octets()[..3] == [127, 0, 1];
    let waiting = Instant::now();
    let fds = loop {
        let held_by_edge = tcp_sockets_from(pid, from_clients);
        if held_by_edge >= CONNECTIONS {
            break open_fds(pid);
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the edge holds {held_by_edge} connections from the clients, not {CONNECTIONS}; its log ends:\n{}",
            served
                .edge
                .log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, took) = hello_from(ip("127.0.2.1"), served.edge.addrs.http).await;
    let (kept, closed) = kept_and_closed(held, Duration::from_millis(500)).await;
    println!(
        "open files: the edge started with a soft limit of 1024, runs with {soft} (hard {edge_hard}); it held {} descriptors \
         more with {CONNECTIONS} idle connections open ({} kept, {closed} closed); a request meanwhile got {status:?} in {took:?}",
        fds - fds_before,
        kept.len()
    );
    assert_eq!(status, Some(200));
    assert_eq!(kept.len(), CONNECTIONS);
    assert!(
        !served
            .edge
            .log()
            .contains("accepting a visitor connection failed"),
        "{}",
        served.edge.log()
    );
}

// === WebSockets ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_count_against_their_clients_share_and_close_within_the_shutdown_deadline() {
    let _serial = serial().await;
    let mut served = served_with(
        HOST,
        with_env(&[
            ("POSTERN_EDGE_MAX_CONNECTIONS_PER_IP", "4"),
            ("POSTERN_EDGE_SHUTDOWN_TIMEOUT", "5s"),
        ]),
    )
    .await;
    let addr = served.edge.addrs.http;
    let client = ip("127.0.0.4");
    let mut sessions = Vec::new();
    for i in 0..4 {
        let stream = connect_from(client, addr).await.expect("connect");
        let (status, ws) = websocket::upgrade(stream, HOST, "/ws")
            .await
            .expect("upgrade");
        assert_eq!(status, 101, "session {i}");
        let mut ws = ws.expect("a WebSocket");
        ws.send_text(&format!("hello {i}")).await.expect("send");
        let echo = ws.receive().await.expect("echo");
        assert_eq!(echo.payload, format!("hello {i}").into_bytes());
        sessions.push(ws);
    }
    // Four upgraded connections are the client's whole share: a fifth is closed at once.
    let (fifth, _) = hello_from(client, addr).await;
    assert_eq!(
        fifth, None,
        "a fifth connection beside four WebSockets was served"
    );
    let (other, _) = hello_from(ip("127.0.0.5"), addr).await;
    assert_eq!(other, Some(200));
    // The sessions still work.
    for (i, ws) in sessions.iter_mut().enumerate() {
        ws.send_text(&format!("again {i}")).await.expect("send");
        assert_eq!(
            ws.receive().await.expect("echo").payload,
            format!("again {i}").into_bytes()
        );
    }

    // SIGTERM: every WebSocket ends and the edge exits within its 5 s deadline.
    let pid = served.edge.pid();
    let waiting = sessions
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    match tokio::time::timeout(Duration::from_secs(15), ws.receive()).await {
                        Ok(Ok(frame)) if frame.opcode != 0x8 => continue,
                        Ok(_) => return Some(started.elapsed()),
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect::<Vec<_>>();
    let exited = tokio::task::spawn_blocking(move || {
        let exit = served.edge.terminate_within(Duration::from_secs(15));
        (served, exit)
    });
    let mut ended = Vec::new();
    for wait in waiting {
        ended.push(
            wait.await
                .expect("task")
                .expect("a WebSocket outlived the edge's shutdown"),
        );
    }
    let (_served, exit) = exited.await.expect("task");
    let (status, took) = exit.expect("the edge did not exit within 15 s of SIGTERM");
    println!(
        "WebSockets: 4 sessions were the client's whole share (a fifth connection closed at once, another client served); \
         on SIGTERM (pid {pid}) they ended after {ended:?} and the edge exited ({status}) after {took:?}"
    );
    assert!(took <= Duration::from_secs(6), "exited after {took:?}");
    assert!(
        ended.iter().all(|after| *after <= Duration::from_secs(6)),
        "{ended:?}"
    );
}

// === shutdown ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_connections_on_every_listener_exits_within_the_shutdown_timeout() {
    let _serial = serial().await;
    let mut served = served_with(HOST, with_env(&[("POSTERN_EDGE_SHUTDOWN_TIMEOUT", "3s")])).await;
    let addrs = served.edge.addrs;
    let mut idle = Vec::new();
    // Silent TCP connections to every listener.
    for addr in [addrs.api, addrs.http, addrs.https, addrs.tunnel, addrs.dns] {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // An API connection idle after one request (keep-alive), one with half a request head.
    let mut api = TcpStream::connect(addrs.api).await.expect("connect");
    let answer = raw::exchange(
        &mut api,
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", addrs.api).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(answer.status, Some(200));
    idle.push(api);
    let mut half = TcpStream::connect(addrs.api).await.expect("connect");
    half.write_all(b"GET /v1/tunnels HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half a head");
    idle.push(half);
    // An idle HTTP/2 visitor, an HTTP/1.1 keep-alive visitor, a WebSocket and the connector's
    // two tunnel sessions.
    let mut h2 = TcpStream::connect(addrs.http).await.expect("connect");
    h2.write_all(&h2_hello()).await.expect("preface");
    idle.push(h2);
    let (status, ws) = websocket::connect(addrs.http, HOST, "/ws")
        .await
        .expect("upgrade");
    assert_eq!(status, 101);
    let ws = ws.expect("a WebSocket");

    let exit = tokio::task::spawn_blocking(move || {
        let exit = served.edge.terminate_within(Duration::from_secs(30));
        (served, exit)
    })
    .await
    .expect("task");
    let (status, took) = exit
        .1
        .expect("the edge did not exit within 30 s of SIGTERM");
    println!(
        "shutdown: with idle connections on the API (silent, keep-alive, half a head), HTTP, HTTPS, tunnel and DNS \
         listeners, an idle HTTP/2 visitor, a WebSocket and two tunnel sessions open, the edge exited ({status}) {took:?} after SIGTERM \
         (--shutdown-timeout 3s)"
    );
    assert!(took <= Duration::from_secs(4), "exited after {took:?}");
    drop((idle, ws));
}

// === IPv6: one /64 is one client ===

#[test]
fn requests_from_2000_addresses_of_one_ipv6_slash_64_are_rate_limited_as_one_client() {
    acceptance::netns::in_network_namespace(&["fd00:23:0:1::", "fd00:23:0:2::"], || async {
        let edge = EdgeProcess::start_with(EdgeOptions {
            public_ip: Some(ip("::1")),
            ..EdgeOptions::default()
        });
        let client = edge.client();
        let origin = TestOrigin::start().await;
        let tunnel = tunnel_for(&client, "v6", HOST, &origin.url()).await;
        let _connector = ConnectorProcess::run(&token(&tunnel), 1, &[]);
        acceptance::fixture::connections(&client, tunnel.id, 1).await;
        let policy = edge
            .api()
            .post(
                "/v1/policies",
                &json!({"name": "slow", "rate_limit": {"requests_per_second": 1, "burst": 20}}),
            )
            .await;
        assert_eq!(policy.status, 201, "{}", policy.text);
        let mut hostname = client.hostname(HOST).await.expect("hostname").spec;
        hostname.policy_ids = vec![
            policy.body["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("policy id"),
        ];
        client
            .replace_hostname(&hostname, None)
            .await
            .expect("attach the policy");

        let addr = edge.addrs.http;
        let started = Instant::now();
        let (mut passed, mut limited, mut other) = (0usize, 0usize, Vec::new());
        for i in 1..=2_000u32 {
            let from = ip(&format!("fd00:23:0:1::{i:x}"));
            match hello_from(from, addr).await.0 {
                Some(200) => passed += 1,
                Some(429) => limited += 1,
                status => other.push(status),
            }
        }
        let elapsed = started.elapsed();
        let (neighbour, _) = hello_from(ip("fd00:23:0:2::1"), addr).await;
        let allowance = 20 + elapsed.as_secs_f64().ceil() as usize;
        println!(
            "IPv6 /64: 2,000 requests from 2,000 addresses of fd00:23:0:1::/64 in {elapsed:?}: {passed} passed, {limited} got 429 \
             (the policy allows a burst of 20 and 1 a second: at most {allowance}); a client of another /64 got {neighbour:?}"
        );
        assert!(other.is_empty(), "{other:?}");
        assert!((20..=allowance).contains(&passed), "{passed} passed");
        assert_eq!(passed + limited, 2_000);
        assert_eq!(neighbour, Some(200), "another /64 is another client");
    });
}

// === paths ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_refused_or_forwarded_exactly_as_checked() {
    let served = served(HOST).await;
    let policy = served
        .edge
        .api()
        .post(
            "/v1/policies",
            &json!({"name": "public-only", "allow_paths": ["/public/**"]}),
        )
        .await;
    assert_eq!(policy.status, 201, "{}", policy.text);
    let client = served.edge.client();
    let mut hostname = client.hostname(HOST).await.expect("hostname").spec;
    hostname.policy_ids = vec![
        policy.body["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("policy id"),
    ];
    client
        .replace_hostname(&hostname, None)
        .await
        .expect("attach the policy");

    // (what the visitor sends, the status it must get, what the origin must receive)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/public/..;/admin", 400, None),
        ("/public/..;jsessionid=x/admin", 400, None),
        ("/public//../admin", 403, None),
        ("/public/..%2fadmin", 400, None),
        ("/public%2F..%2Fadmin", 400, None),
        ("/public/..%5cadmin", 400, None),
        ("/public/..%5Cadmin", 400, None),
        ("/public/%2e%2e/admin", 403, None),
        ("/public/x/../../admin", 403, None),
        ("/public//x?case=merged", 404, Some("/public/x?case=merged")),
        (
            "/public/a/./b/../c?case=dots",
            404,
            Some("/public/a/c?case=dots"),
        ),
        (
            "/public/%61%62c?case=decoded",
            404,
            Some("/public/abc?case=decoded"),
        ),
        (
            "/public/plain?case=plain",
            404,
            Some("/public/plain?case=plain"),
        ),
    ];
    let mut lines = Vec::new();
    let mut wrong = Vec::new();
    for (path, want, at_origin) in cases {
        let before = served.origin.requests().len();
        let mut stream = TcpStream::connect(served.edge.addrs.http)
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let answer = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
        let received: Vec<String> = served.origin.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        lines.push(format!(
            "{path} -> {:?}, origin received {received:?}",
            answer.status
        ));
        let expected: Vec<String> = at_origin.iter().map(|p| p.to_string()).collect();
        if answer.status != Some(*want) || received != expected {
            wrong.push(format!(
                "{path}: {:?} (want {want}), origin received {received:?} (want {expected:?})",
                answer.status
            ));
        }
    }
    println!(
        "paths on a hostname restricted to /public/**:\n  {}",
        lines.join("\n  ")
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// === a node cut off from its store ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_store_serves_until_the_staleness_limit_then_answers_503() {
    let mut postgres = PostgresServer::start();
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--store".into(), postgres.url()],
        ..with_env(&[("POSTERN_EDGE_MAX_STALENESS", "15s")])
    });
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "stale", HOST, &origin.url()).await;
    let _connector = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    acceptance::fixture::connections(&client, tunnel.id, 1).await;
    let addr = edge.addrs.http;
    assert_eq!(hello_from(ip("127.0.0.1"), addr).await.0, Some(200));

    postgres.stop();
    let stopped = Instant::now();
    let mut answers = Vec::new();
    let refusal = loop {
        let at = stopped.elapsed();
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let answer = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
        answers.push((at, answer.status));
        if answer.status == Some(503) {
            break (at, answer.text);
        }
        assert!(
            at < Duration::from_secs(40),
            "still serving 40 s after the store went away: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let served_before = answers
        .iter()
        .filter(|(_, status)| *status == Some(200))
        .count();
    postgres.restart();
    let back = Instant::now();
    acceptance::eventually(
        Duration::from_secs(20),
        "the node to serve again",
        || async { (hello_from(ip("127.0.0.1"), addr).await.0 == Some(200)).then_some(()) },
    )
    .await;
    println!(
        "staleness: after the store went away the node answered {served_before} requests with 200, then 503 after {:?} \
         (--max-staleness 15s, counted from its last successful read, which the catalog makes every 10 s): {:?}; \
         with the store back it served again after {:?}",
        refusal.0,
        refusal
            .1
            .lines()
            .find(|line| line.starts_with("503 "))
            .unwrap_or_default(),
        back.elapsed()
    );
    assert!(
        answers
            .iter()
            .take_while(|(_, s)| *s != Some(503))
            .all(|(_, s)| *s == Some(200)),
        "{answers:?}"
    );
    assert!(
        served_before >= 4,
        "the node served only {served_before} requests before refusing"
    );
    // The last read was at most 10 s before the store went away, so the refusal comes between
    // 5 and 15 s (plus a retry) after it.
    assert!(
        refusal.0 >= Duration::from_secs(4),
        "refused after {:?}",
        refusal.0
    );
    assert!(
        refusal.0 <= Duration::from_secs(18),
        "refused after {:?}",
        refusal.0
    );
    assert!(
        refusal
            .1
            .contains("has not been able to read its configuration store"),
        "{}",
        refusal.1
    );
    assert!(
        edge.log().contains("cannot reload the catalog"),
        "{}",
        edge.log()
    );
}
