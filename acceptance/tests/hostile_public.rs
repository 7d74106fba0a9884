//! Hostile visitors at the public listeners (issue 9, must show 2): request smuggling attempts,
//! oversized headers, slowloris, ten thousand idle connections and HTTP/2 abuse, each against
//! the real `postern-edge` with a real connector and origin behind it. Every case checks that
//! the edge answered with a clear error (or closed the connection), that nothing ambiguous
//! reached the origin, and that the edge still serves a normal request afterwards. Each test
//! prints the counts it checked.
//!
//! Covered elsewhere: an HTTPS request whose `Host` is not its SNI name gets 421 (`tunnel.rs`,
//! `an_https_request_for_another_host_than_its_sni_is_misdirected`); hostile requests on the
//! control API (`hostile_api.rs`) and the DNS port (`dns.rs`, `hostile_dns.rs`).

use std::time::{Duration, Instant};

use acceptance::fixture::{Served, served};
use acceptance::raw::{self, frame_type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HOST: &str = "app.example.com";

/// Runs the timing-sensitive tests of this file (slowloris, idle connections) one at a time,
/// so that two cores shared by their edges do not blur the timeouts they measure.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A normal request on a fresh connection: 200 from the origin, within 5 s.
async fn still_serves(served: &Served) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(served.edge.addrs.http)
        .await
        .expect("connect");
    let request = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let answer = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(answer.status, Some(200), "{answer:?}");
    assert!(answer.text.ends_with("hello from the origin"), "{answer:?}");
    started.elapsed()
}

/// Paths the origin received, in order.
fn origin_paths(served: &Served) -> Vec<String> {
    served
        .origin
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_get_400_and_a_closed_connection() {
    let served = served(HOST).await;
    // Each attempt carries a second request in what the edge should not take for a body; the
    // origin must never see `/hello?smuggled`.
    let smuggled = format!("GET /hello?smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    // `/upload` answers only once it has read the whole body; `CASE` becomes the case's number.
    let head =
        |headers: &str| format!("POST /upload?case=CASE HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length, then Transfer-Encoding",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "Transfer-Encoding, then Content-Length",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "{}hello{smuggled}",
                head("Content-Length: 5\r\nContent-Length: 50\r\n")
            ),
        ),
        (
            "a Content-Length list with different values",
            format!("{}hello{smuggled}", head("Content-Length: 5, 50\r\n")),
        ),
        (
            "a signed Content-Length",
            format!("{}hello{smuggled}", head("Content-Length: +5\r\n")),
        ),
        (
            "a hexadecimal Content-Length",
            format!("{}hello{smuggled}", head("Content-Length: 0x5\r\n")),
        ),
        (
            "a space before the colon",
            format!("{}hello{smuggled}", head("Content-Length : 5\r\n")),
        ),
        (
            "Transfer-Encoding that does not end in chunked",
            format!(
                "{}5\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked, identity\r\n")
            ),
        ),
        (
            "an unknown Transfer-Encoding",
            format!(
                "{}5\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: xchunked\r\n")
            ),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!(
                "POST /upload?case=CASE HTTP/1.0\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "a chunk size that is not hexadecimal",
            format!(
                "{}zz\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "a chunk size that overflows 64 bits",
            format!(
                "{}10000000000000000\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "a negative chunk size",
            format!(
                "{}-5\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "an obs-fold header line",
            format!(
                "{}hello{smuggled}",
                head("X-Folded: one\r\n two\r\nContent-Length: 5\r\n")
            ),
        ),
        (
            "a NUL in a header value",
            format!(
                "{}hello{smuggled}",
                head("X-Nul: a\0b\r\nContent-Length: 5\r\n")
            ),
        ),
    ];
    let mut refused = 0;
    let mut wrong = Vec::new();
    let mut heads_forwarded = 0;
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let bytes = bytes.replace("CASE", &i.to_string());
        let mut stream = TcpStream::connect(served.edge.addrs.http)
            .await
            .expect("connect");
        let answer = raw::exchange(&mut stream, bytes.as_bytes(), Duration::from_secs(5)).await;
        // A bad chunk arrives after the head, which the edge streams on at once: the origin
        // may see the head of a request whose body is then cut, never a complete request.
        let marker = format!("case={i}");
        let forwarded = served
            .origin
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&marker))
            .count();
        heads_forwarded += forwarded;
        println!(
            "{name}: statuses {:?}, closed {}, heads that reached the origin {forwarded}",
            answer.statuses, answer.closed
        );
        if answer.status == Some(400) && answer.statuses.len() == 1 && answer.closed {
            refused += 1;
        } else {
            wrong.push(format!("{name}: {answer:?}"));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    assert!(
        !origin_paths(&served).iter().any(|p| p.contains("smuggled")),
        "a smuggled request reached the origin: {:?}",
        origin_paths(&served)
    );
    let took = still_serves(&served).await;
    println!(
        "smuggling: {} attempts sent, {refused} answered 400 with the connection closed, 0 smuggled requests reached the origin \
         ({heads_forwarded} heads of requests with a bad chunk reached it before the chunk did, their bodies cut, none answered); \
         a normal request afterwards took {took:?}",
        cases.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let served = served(HOST).await;
    let addr = served.edge.addrs.http;
    let big = "x".repeat(100 * 1024);
    let many: String = (0..200).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let cases = [
        (
            "one 100 KiB header",
            format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n"),
        ),
        (
            "200 headers",
            format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n"),
        ),
        (
            "a 100 KiB request target",
            format!("GET /hello?{big} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        ),
    ];
    let before = served.origin.hits();
    for (name, request) in &cases {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let answer = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
        println!(
            "HTTP/1.1, {name}: statuses {:?}, closed {}",
            answer.statuses, answer.closed
        );
        assert_eq!(answer.status, Some(431), "{name}: {answer:?}");
        assert!(answer.closed, "{name}: the connection stayed open");
    }

    // HTTP/2 (prior knowledge on the plain listener): a 100 KiB header in a HEADERS frame and
    // CONTINUATION frames.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut block = vec![0x82, 0x86, 0x84]; // GET, http, /
    block.push(0x01); // :authority, literal without indexing
    block.push(HOST.len() as u8);
    block.extend_from_slice(HOST.as_bytes());
    block.push(0x00); // a literal header with a literal name
    block.push(5);
    block.extend_from_slice(b"x-big");
    let value = vec![b'x'; 100 * 1024];
    block.push(127);
    let mut rest = value.len() - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend_from_slice(&value);
    let mut bytes = raw::H2_PREFACE.to_vec();
    bytes.extend(raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]));
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let (kind, flags) = match (i, last) {
            (0, _) => (frame_type::HEADERS, 0x1 | if last { 0x4 } else { 0 }),
            (_, true) => (0x9, 0x4),
            _ => (0x9, 0),
        };
        bytes.extend(raw::h2_frame(kind, flags, 1, chunk));
    }
    stream.write_all(&bytes).await.expect("write");
    let (status, frames) = h2_answer(&mut stream, 1, Duration::from_secs(5)).await;
    println!("HTTP/2, one 100 KiB header: status {status:?}, frames {frames:?}");
    assert_eq!(status, Some(431), "{frames:?}");

    assert_eq!(
        served.origin.hits(),
        before,
        "an oversized request was forwarded"
    );

    // Just under the limit, a large header is forwarded, and the tunnel connections that
    // carry it (and other visitors' streams) stay up.
    let slow = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET /slow?ms=2000 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(10)).await
    });
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let large = format!(
        "GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nX-Large: {}\r\n\r\n",
        "y".repeat(30 * 1024)
    );
    let answer = raw::exchange(&mut stream, large.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(answer.status, Some(200), "a 30 KiB header: {answer:?}");
    let slow = slow.await.expect("slow request");
    assert_eq!(
        slow.status,
        Some(200),
        "a request in flight meanwhile: {slow:?}"
    );
    let took = still_serves(&served).await;
    println!(
        "oversized headers: {} HTTP/1.1 requests and 1 HTTP/2 request over the limit sent, all refused with 431, none forwarded; a 30 KiB header under the limit forwarded (200) with a slow request in flight on the same tunnel unharmed (200); a normal request afterwards took {took:?}",
        cases.len()
    );
}

/// Reads frames until stream `stream` gets its response head, is reset, or the connection
/// ends; returns the `:status` (when the head is a bare indexed or literal status) and the
/// frame types seen.
async fn h2_answer(
    stream: &mut TcpStream,
    id: u32,
    wait: Duration,
) -> (Option<u16>, Vec<(u8, u32, Option<u32>)>) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = Vec::new();
    loop {
        let Ok(Ok(frame)) = tokio::time::timeout_at(deadline, raw::read_h2_frame(stream)).await
        else {
            return (None, frames);
        };
        frames.push((frame.kind, frame.stream, frame.error_code()));
        if frame.kind == frame_type::SETTINGS && frame.flags & 0x1 == 0 {
            let _ = stream
                .write_all(&raw::h2_frame(frame_type::SETTINGS, 0x1, 0, &[]))
                .await;
        }
        if frame.stream == id && frame.kind == frame_type::HEADERS {
            return (raw::h2_status(&frame.payload), frames);
        }
        if (frame.stream == id && frame.kind == frame_type::RST_STREAM)
            || frame.kind == frame_type::GOAWAY
        {
            return (None, frames);
        }
    }
}

/// Trickles `bytes` one per second until the edge closes the connection (or `limit` passes);
/// returns how long after the first byte the edge closed it, `None` if it never did.
async fn trickle<S>(mut stream: S, bytes: Vec<u8>, limit: Duration) -> Option<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut next = bytes.into_iter();
    let mut buffer = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < limit {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if let Some(byte) = next.next()
                    && (stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err())
                {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

/// The bytes of a TLS ClientHello for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).expect("name");
    let mut connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("client hello");
    hello
}

/// The header read timeout the edge promises (`proxy.rs`), and how late it may act on a
/// loaded machine.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_timeout_while_others_are_served() {
    let _serial = serial().await;
    let served = served(HOST).await;
    let limit = HEADER_TIMEOUT + SLACK + Duration::from_secs(6);
    let head = format!(
        "GET /hello HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {}",
        "a".repeat(64)
    );
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..10 {
        let stream = TcpStream::connect(served.edge.addrs.http)
            .await
            .expect("connect");
        let bytes = head.clone().into_bytes();
        slow.spawn(async move { (format!("plain #{i}"), trickle(stream, bytes, limit).await) });
    }
    for i in 0..5 {
        let stream = TcpStream::connect(served.edge.addrs.https)
            .await
            .expect("connect");
        let bytes = client_hello(HOST);
        slow.spawn(async move { (format!("TLS #{i}"), trickle(stream, bytes, limit).await) });
    }
    for i in 0..5 {
        let stream = TcpStream::connect(served.edge.addrs.http)
            .await
            .expect("connect");
        slow.spawn(async move {
            (
                format!("silent #{i}"),
                trickle(stream, Vec::new(), limit).await,
            )
        });
    }
    // Keep-alive connections that sent one request in full, then trickle the next head.
    for i in 0..5 {
        let mut stream = TcpStream::connect(served.edge.addrs.http)
            .await
            .expect("connect");
        let first = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        stream.write_all(first.as_bytes()).await.expect("request");
        let mut answer = Vec::new();
        while !answer.ends_with(b"hello from the origin") {
            let mut buffer = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)
                .await
                .expect("response");
            assert!(n > 0, "closed before the first response");
            answer.extend_from_slice(&buffer[..n]);
        }
        let bytes = head.clone().into_bytes();
        slow.spawn(async move {
            (
                format!("keep-alive #{i}"),
                trickle(stream, bytes, limit).await,
            )
        });
    }

    // Meanwhile, normal requests every 500 ms.
    let mut normal = Vec::new();
    while normal.len() < 24 {
        normal.push(still_serves(&served).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut closed = Vec::new();
    while let Some(result) = slow.join_next().await {
        let (name, after) = result.expect("task");
        let after = after.unwrap_or_else(|| panic!("{name}: the edge never closed it"));
        println!("slowloris {name}: closed by the edge after {after:?}");
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_secs(1) && after <= HEADER_TIMEOUT + SLACK,
            "{name}: closed after {after:?}"
        );
        closed.push(after);
    }
    let slowest = normal.iter().max().copied().unwrap_or_default();
    println!(
        "slowloris: 25 slow connections (10 trickling a first request head, 5 a ClientHello, 5 silent, 5 trickling a second head after a first request), all closed by the edge after {:?}..{:?}; {} normal requests meanwhile, all 200, slowest {slowest:?}",
        closed.iter().min().copied().unwrap_or_default(),
        closed.iter().max().copied().unwrap_or_default(),
        normal.len()
    );
    assert!(slowest < Duration::from_secs(2), "slowest {slowest:?}");
}

/// Raises this process's open-file limit to its hard limit (children inherit it).
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_cost_bounded_memory_and_others_are_served() {
    let _serial = serial().await;
    use acceptance::process::{open_fds, rss};
    const IDLE: usize = 10_000;
    let limit = raise_nofile();
    assert!(
        limit as usize > IDLE + 1_000,
        "RLIMIT_NOFILE {limit} is too low for {IDLE} connections"
    );
    let served = served(HOST).await;
    let pid = served.edge.pid();
    // Warm up the paths a connection takes, then measure.
    still_serves(&served).await;
    let (rss_before, fds_before) = (rss(pid), open_fds(pid));

    // Half are idle HTTP/2 connections (preface and SETTINGS sent, no stream): the edge keeps
    // those open (until its HTTP/2 idle timeout, a minute), so they are what its connection
    // limit bounds. A quarter sent the start of
    // an HTTP/1.1 request head and stopped; a quarter sent nothing: the edge closes those.
    let mut h2_hello = raw::H2_PREFACE.to_vec();
    h2_hello.extend(raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]));
    let partial = format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\n").into_bytes();
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    let mut h2_count = 0;
    for batch in 0..IDLE / 100 {
        let mut connecting = tokio::task::JoinSet::new();
        for i in 0..100 {
            let addr = served.edge.addrs.http;
            // From 64 client addresses: one client may hold only 256 connections.
            let client = std::net::IpAddr::from([127, 0, 3, 1 + ((batch * 100 + i) % 64) as u8]);
            let hello = match i % 4 {
                0 | 1 => Some(h2_hello.clone()),
                2 => Some(partial.clone()),
                _ => None,
            };
            h2_count += usize::from(i % 4 < 2);
            connecting.spawn(async move {
                let mut stream = acceptance::visitor::connect_from(client, addr).await?;
                if let Some(hello) = hello {
                    stream.write_all(&hello).await?;
                }
                Ok::<_, std::io::Error>(stream)
            });
        }
        while let Some(result) = connecting.join_next().await {
            let stream = result
                .expect("task")
                .unwrap_or_else(|e| panic!("connection {} of batch {batch}: {e}", idle.len()));
            idle.push(stream);
        }
    }
    let opening = opened.elapsed();
    // Measure with as many of them open as the edge holds at once.
    let peak_fds = acceptance::eventually(
        Duration::from_secs(10),
        "the edge to accept the connections",
        || async {
            let fds = open_fds(pid);
            (fds >= fds_before + h2_count).then_some(fds)
        },
    )
    .await;
    let rss_during = rss(pid);
    let held = peak_fds - fds_before;
    let per_connection = rss_during.saturating_sub(rss_before) / held as u64;
    let mut latencies = Vec::new();
    for _ in 0..20 {
        latencies.push(still_serves(&served).await);
    }

    // The edge closes the HTTP/1.1 ones by itself and keeps the HTTP/2 ones.
    let closing = Instant::now();
    acceptance::eventually(
        HEADER_TIMEOUT + SLACK + Duration::from_secs(10),
        "the edge to close the silent and half-sent connections",
        || async { (open_fds(pid) <= fds_before + h2_count + 10).then_some(()) },
    )
    .await;
    let closed_after = closing.elapsed();
    let fds_h2_only = open_fds(pid) - fds_before;
    drop(idle);
    acceptance::eventually(
        Duration::from_secs(20),
        "the edge to let go of the HTTP/2 connections the visitors closed",
        || async { (open_fds(pid) <= fds_before + 10).then_some(()) },
    )
    .await;
    let rss_after = rss(pid);
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "idle connections: {IDLE} opened in {opening:?} ({h2_count} idle HTTP/2, {} half-sent HTTP/1.1 heads, {} silent); \
         the edge held {held} at once; its RSS was {} KiB before, {} KiB with them open: {per_connection} bytes per connection \
         (so its limit of 16,384 connections per public listener bounds idle visitors to about {} MiB per listener); \
         it closed the {} HTTP/1.1 ones within {closed_after:?} of the measurement and kept the {fds_h2_only} HTTP/2 ones; \
         RSS after all closed {} KiB; 20 normal requests meanwhile, all 200, slowest {slowest:?}",
        IDLE / 4,
        IDLE / 4,
        rss_before / 1024,
        rss_during / 1024,
        per_connection * 16_384 / (1024 * 1024),
        IDLE - h2_count,
        rss_after / 1024,
    );
    assert!(
        per_connection < 32 * 1024,
        "{per_connection} bytes per idle connection"
    );
    assert!(slowest < Duration::from_secs(2), "slowest {slowest:?}");
    still_serves(&served).await;
}

/// Opens an HTTP/2 (prior knowledge) connection to the plain listener and reads the edge's
/// SETTINGS; returns the stream and the settings frame.
async fn h2_connect(served: &Served) -> (TcpStream, raw::H2Frame) {
    let mut stream = TcpStream::connect(served.edge.addrs.http)
        .await
        .expect("connect");
    let mut hello = raw::H2_PREFACE.to_vec();
    hello.extend(raw::h2_frame(frame_type::SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    let settings = tokio::time::timeout(Duration::from_secs(5), raw::read_h2_frame(&mut stream))
        .await
        .expect("the edge's SETTINGS in time")
        .expect("a frame");
    assert_eq!(settings.kind, frame_type::SETTINGS);
    stream
        .write_all(&raw::h2_frame(frame_type::SETTINGS, 0x1, 0, &[]))
        .await
        .expect("settings ack");
    (stream, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_abuse_is_limited_and_others_are_served() {
    let served = served(HOST).await;

    // The edge announces its limits.
    let (mut stream, settings) = h2_connect(&served).await;
    let max_streams = settings
        .setting(raw::SETTINGS_MAX_CONCURRENT_STREAMS)
        .expect("SETTINGS_MAX_CONCURRENT_STREAMS");
    let max_header_list = settings.setting(raw::SETTINGS_MAX_HEADER_LIST_SIZE);
    assert!(max_streams <= 256, "max concurrent streams {max_streams}");

    // More slow streams at once than allowed: the excess is refused, never forwarded.
    let opened = max_streams + 50;
    let mut bytes = Vec::new();
    for i in 0..opened {
        bytes.extend(raw::h2_get(1 + 2 * i, HOST, "/slow?ms=3000", true));
    }
    stream.write_all(&bytes).await.expect("streams");
    let (mut refused, mut answered, mut goaway) = (0u32, 0u32, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while answered + refused < opened && goaway.is_none() {
        let Ok(Ok(frame)) =
            tokio::time::timeout_at(deadline, raw::read_h2_frame(&mut stream)).await
        else {
            break;
        };
        match frame.kind {
            frame_type::RST_STREAM => refused += 1,
            frame_type::HEADERS => answered += 1,
            frame_type::GOAWAY => goaway = frame.error_code(),
            _ => {}
        }
    }
    let slow_at_origin = origin_paths(&served)
        .iter()
        .filter(|p| p.starts_with("/slow"))
        .count();
    println!(
        "HTTP/2 concurrency: limit {max_streams} (max header list {max_header_list:?}); {opened} streams opened at once: {answered} answered, {refused} reset, GOAWAY {goaway:?}; {slow_at_origin} reached the origin"
    );
    assert!(
        slow_at_origin <= max_streams as usize,
        "{slow_at_origin} streams forwarded over a limit of {max_streams}"
    );
    assert!(refused + answered >= opened || goaway.is_some());
    drop(stream);

    // Rapid reset: streams opened and cancelled at once, in bulk.
    let (mut stream, _) = h2_connect(&served).await;
    let hits_before = served.origin.hits();
    let attempts = 20_000u32;
    let started = Instant::now();
    let (read, mut write) = stream.split();
    let reader = async {
        let mut read = read;
        let (mut frames, mut goaway, mut eof) = (0u64, None, false);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), raw::read_h2_frame(&mut read)).await
            {
                Ok(Ok(frame)) => {
                    frames += 1;
                    if frame.kind == frame_type::GOAWAY {
                        goaway = frame.error_code();
                    }
                }
                Ok(Err(_)) => {
                    eof = true;
                    break;
                }
                Err(_) => break,
            }
        }
        (frames, goaway, eof)
    };
    let writer = async {
        let mut sent = 0u32;
        for chunk in 0..attempts / 100 {
            let mut bytes = Vec::new();
            for i in 0..100 {
                let id = 1 + 2 * (chunk * 100 + i);
                bytes.extend(raw::h2_get(id, HOST, "/hello", true));
                bytes.extend(raw::h2_reset(id, raw::CANCEL));
            }
            if write.write_all(&bytes).await.is_err() {
                break;
            }
            sent += 100;
        }
        sent
    };
    let (sent, (frames, goaway, eof)) = tokio::join!(writer, reader);
    let took = started.elapsed();
    let forwarded = served.origin.hits() - hits_before;
    let after = still_serves(&served).await;
    println!(
        "HTTP/2 rapid reset: {sent} of {attempts} streams opened and cancelled in {took:?}; the edge sent {frames} frames, GOAWAY {goaway:?}, closed {eof}; {forwarded} reached the origin; a normal request afterwards took {after:?}"
    );
    assert!(after < Duration::from_secs(2));
}
