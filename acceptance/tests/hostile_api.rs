//! Hostile input on the control API of the real `postern-edge`: garbage and malformed bodies,
//! deep nesting, huge bodies and numbers, invalid UTF-8, NUL bytes, repeated member names,
//! unknown methods, very long paths and headers, lying lengths and percent-encoded ids. Each gets
//! a clear 4xx: the contract's error body (checked against openapi.json) wherever the API
//! answers, or the HTTP layer's own status where hyper refuses the request first (414, 431 and
//! malformed framing). Nothing is stored, and the edge serves normal requests afterwards. Ten
//! thousand random method names leave `/metrics` (and the edge's memory) as they were (issue 23).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acceptance::{Api, EdgeProcess};
use postern_schema::openapi::ApiContract;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one raw exchange may take.
const EXCHANGE_WITHIN: Duration = Duration::from_secs(10);

/// The API's body limit.
const MAX_BODY: usize = 1024 * 1024;

// === helpers ===

/// An answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn error_code(&self) -> Option<String> {
        self.json()
            .pointer("/error/code")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// Writes `request` on a fresh connection and reads one answer (head, then the body by its
/// `Content-Length` or until the server closes).
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let run = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
        // The server may answer (and close) before it has read everything: ignore write errors.
        let _ = stream.write_all(request).await;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!(
                    "the connection closed before an answer: {:?}",
                    String::from_utf8_lossy(&buffer)
                ),
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        });
        let mut body = buffer[head_end..].to_vec();
        while length.is_none_or(|len| body.len() < len) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Answer { status, head, body }
    };
    tokio::time::timeout(EXCHANGE_WITHIN, run)
        .await
        .unwrap_or_else(|_| panic!("no answer within {EXCHANGE_WITHIN:?}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request head with the admin token, `Connection: close` and `extra` header lines.
fn head(edge: &EdgeProcess, method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {}\r\nConnection: close\r\n{extra}\r\n",
        edge.admin_token
    )
    .into_bytes()
}

/// A request with a body and `Content-Length`.
fn with_body(
    edge: &EdgeProcess,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut request = head(
        edge,
        method,
        path,
        &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ),
    );
    request.extend_from_slice(body);
    request
}

/// Checks an answer of the API (not of hyper) against openapi.json.
fn check_contract(method: &str, path: &str, answer: &Answer) {
    let contract = ApiContract::load().expect("openapi.json loads");
    if let Err(problem) = contract.check_response(method, path, answer.status, &answer.body) {
        panic!("the edge broke its contract: {problem}");
    }
}

async fn count(api: &Api, path: &str) -> usize {
    let response = api.get(path).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body["items"].as_array().map_or(0, Vec::len)
}

/// What the API holds, to show that a hostile request changed nothing.
async fn inventory(api: &Api) -> [usize; 3] {
    [
        count(api, "/v1/tunnels").await,
        count(api, "/v1/policies").await,
        count(api, "/v1/hostnames").await,
    ]
}

/// A normal write and read still work, and the edge logged no panic.
async fn still_serving(edge: &EdgeProcess, api: &Api, name: &str) {
    let created = api.post("/v1/tunnels", &json!({"name": name})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id");
    let read = api.get(&format!("/v1/tunnels/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let deleted = api.delete(&format!("/v1/tunnels/{id}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(api.get("/healthz").await.status, 200);
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

// === bodies ===

/// A body and its answer: (path, content type, body, status, error path of a 400).
type BodyCase<'a> = (&'a str, &'a str, Vec<u8>, u16, Option<&'a str>);

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_change_nothing() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let tunnel = api.post("/v1/tunnels", &json!({"name": "web"})).await;
    assert_eq!(tunnel.status, 201, "{}", tunnel.text);
    let tunnel_id = tunnel.body["id"].as_str().expect("id").to_string();
    let before = inventory(&api).await;

    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage[0] = 0x9f;
    let just_under = format!("\"{}\"", "a".repeat(MAX_BODY - 2));
    let bodies: Vec<BodyCase> = vec![
        ("/v1/tunnels", "application/json", garbage, 400, Some("")),
        ("/v1/tunnels", "application/json", b"{\"name\":\"web".to_vec(), 400, Some("")),
        ("/v1/tunnels", "application/json", b"".to_vec(), 400, Some("")),
        ("/v1/tunnels", "application/json", deep_arrays.into_bytes(), 400, Some("")),
        ("/v1/policies", "application/json", deep_objects.into_bytes(), 400, Some("")),
        ("/v1/tunnels", "application/json", vec![b' '; MAX_BODY + 1], 413, None),
        ("/v1/tunnels", "application/json", just_under.into_bytes(), 400, Some("")),
        ("/v1/tunnels", "application/json", b"{\"name\":1e999999}".to_vec(), 400, Some("")),
        ("/v1/tunnels", "application/json", b"{\"name\":123456789012345678901234567890}".to_vec(), 400, Some("/name")),
        (
            "/v1/policies",
            "application/json",
            br#"{"name":"p","rate_limit":{"requests_per_second":1e308,"burst":1}}"#.to_vec(),
            400,
            Some("/rate_limit/requests_per_second"),
        ),
        (
            "/v1/policies",
            "application/json",
            br#"{"name":"p","rate_limit":{"requests_per_second":1,"burst":18446744073709551616}}"#.to_vec(),
            400,
            Some("/rate_limit/burst"),
        ),
        ("/v1/tunnels", "application/json", b"{\"name\":\"w\xffb\"}".to_vec(), 400, Some("")),
        ("/v1/tunnels", "application/json", b"\xef\xbb\xbf{\"name\":\"web2\"}".to_vec(), 400, Some("")),
        ("/v1/tunnels", "application/json", b"{\"name\":\"we\\u0000b\"}".to_vec(), 400, Some("/name")),
        ("/v1/tunnels", "application/json", b"{\"name\":\"we\x00b\"}".to_vec(), 400, Some("")),
        (
            "/v1/tunnels",
            "application/json",
            b"{\"name\":\"n\",\"labels\":{\"k\":\"v\\u0000\"}}".to_vec(),
            400,
            Some("/labels/k"),
        ),
        (
            "/v1/hostnames",
            "application/json",
            format!(r#"{{"hostname":"app\u0000.example.com","service":"http://localhost:4000","tunnel_id":"{tunnel_id}"}}"#).into_bytes(),
            400,
            Some("/hostname"),
        ),
        (
            "/v1/hostnames",
            "application/json",
            format!(r#"{{"hostname":"app.example.com","service":"http://local\u0000host","tunnel_id":"{tunnel_id}"}}"#).into_bytes(),
            400,
            Some("/service"),
        ),
        (
            "/v1/hostnames",
            "application/json",
            format!(r#"{{"hostname":"app.example.com","service":"http://localhost:4000","tunnel_id":"{tunnel_id}","origin":{{"http_host_header":"a\u0000b"}}}}"#).into_bytes(),
            400,
            Some("/origin/http_host_header"),
        ),
        ("/v1/tunnels", "application/json", br#"{"name":"Bad","name":"web2"}"#.to_vec(), 400, Some("/name")),
        (
            "/v1/tunnels",
            "application/json",
            br#"{"name":"web2","labels":{"k":"a","k":"b"}}"#.to_vec(),
            400,
            Some("/labels/k"),
        ),
        ("/v1/tunnels", "text/plain", br#"{"name":"web2"}"#.to_vec(), 415, None),
        ("/v1/tunnels", "application/jsonx", br#"{"name":"web2"}"#.to_vec(), 415, None),
    ];
    for (path, content_type, body, status, pointer) in bodies {
        let len = body.len();
        let answer = api.send_raw(Method::POST, path, content_type, body).await;
        assert_eq!(
            answer.status, status,
            "POST {path} ({len} bytes): {}",
            answer.text
        );
        if let Some(pointer) = pointer {
            assert_eq!(answer.error_code(), Some("invalid"), "{}", answer.text);
            assert_eq!(answer.error_path(), Some(pointer), "{}", answer.text);
        }
    }
    // A replace is read the same way.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let answer = api
        .send_raw(
            Method::PUT,
            &format!("/v1/tunnels/{tunnel_id}"),
            "application/json",
            nested.into_bytes(),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);

    assert_eq!(
        inventory(&api).await,
        before,
        "a hostile body changed what is stored"
    );
    still_serving(&edge, &api, "after-bodies").await;
}

// === the HTTP layer ===

#[tokio::test]
async fn hostile_requests_get_a_clear_4xx_from_the_api_or_from_hyper() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let addr = edge.addrs.api;
    let before = inventory(&api).await;

    // Unknown and unsupported methods: 405 with the contract's error body.
    for method in ["FOO", "PATCH", "TRACE", "PROPFIND"] {
        let answer = exchange(addr, &head(&edge, method, "/v1/tunnels", "")).await;
        assert_eq!(answer.status, 405, "{method}: {answer:?}");
        assert_eq!(answer.error_code().as_deref(), Some("method_not_allowed"));
    }

    // A long id is an id that does not exist; a path too long for hyper is 414.
    let long_id = format!("/v1/tunnels/{}", "a".repeat(8_000));
    let answer = exchange(addr, &head(&edge, "GET", &long_id, "")).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    check_contract("GET", &long_id, &answer);
    let too_long = format!("/v1/tunnels/{}", "a".repeat(100_000));
    let answer = exchange(addr, &head(&edge, "GET", &too_long, "")).await;
    assert_eq!(answer.status, 414, "{}", answer.head);

    // Request heads larger than hyper's buffer, or with too many fields: 431.
    let huge_header = format!("X-Filler: {}\r\n", "a".repeat(1024 * 1024));
    let answer = exchange(addr, &head(&edge, "GET", "/v1/tunnels", &huge_header)).await;
    assert_eq!(answer.status, 431, "{}", answer.head);
    let many: String = (0..200).map(|i| format!("X-Field-{i}: v\r\n")).collect();
    let answer = exchange(addr, &head(&edge, "GET", "/v1/tunnels", &many)).await;
    assert_eq!(answer.status, 431, "{}", answer.head);

    // A body announced larger than the limit is refused before it is sent.
    let started = Instant::now();
    let answer = exchange(
        addr,
        &head(
            &edge,
            "POST",
            "/v1/tunnels",
            "Content-Type: application/json\r\nContent-Length: 10737418240\r\n",
        ),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    check_contract("POST", "/v1/tunnels", &answer);

    // A chunked body that grows past the limit.
    let mut chunked = head(
        &edge,
        "POST",
        "/v1/tunnels",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    );
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 64 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = exchange(addr, &chunked).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    check_contract("POST", "/v1/tunnels", &answer);

    // Framing that could smuggle a second request: Transfer-Encoding wins over Content-Length
    // (the chunked body is empty, so not JSON), and differing lengths are refused by hyper.
    let mut both = head(
        &edge,
        "POST",
        "/v1/tunnels",
        "Content-Type: application/json\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n",
    );
    both.extend_from_slice(b"0\r\n\r\nPOST /v1/tunnels HTTP/1.1\r\nHost: api\r\n\r\n");
    let answer = exchange(addr, &both).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    check_contract("POST", "/v1/tunnels", &answer);
    let twice = String::from_utf8(with_body(
        &edge,
        "POST",
        "/v1/tunnels",
        "application/json",
        b"{}",
    ))
    .expect("ascii")
    .replace(
        "Content-Length: 2\r\n",
        "Content-Length: 2\r\nContent-Length: 3\r\n",
    );
    let answer = exchange(addr, twice.as_bytes()).await;
    assert_eq!(answer.status, 400, "{answer:?}");

    // Bytes that are not HTTP at all: a NUL in the request line, a TLS ClientHello.
    let answer = exchange(addr, b"GET /v1/tun\x00nels HTTP/1.1\r\nHost: api\r\n\r\n").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let answer = exchange(
        addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");

    // Tokens that are not text, or absurdly long: 401.
    let answer = exchange(
        addr,
        b"GET /v1/tunnels HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    check_contract("GET", "/v1/tunnels", &answer);
    let long_token = format!(
        "GET /v1/tunnels HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        "t".repeat(64 * 1024)
    );
    let answer = exchange(addr, long_token.as_bytes()).await;
    assert_eq!(answer.status, 401, "{answer:?}");

    // A malformed If-Match and a malformed query string: the contract's 400 (a malformed
    // condition is not a stale version).
    let mut if_match = head(
        &edge,
        "DELETE",
        "/v1/tunnels/00000000-0000-4000-8000-000000000000",
        "If-Match: \"",
    );
    let at = find(&if_match, b"If-Match: \"").expect("header") + 11;
    if_match.splice(at..at, b"\xff\"\r\n".iter().copied());
    let answer = exchange(addr, &if_match).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    check_contract(
        "DELETE",
        "/v1/tunnels/00000000-0000-4000-8000-000000000000",
        &answer,
    );
    for query in [
        "?selector=a=b&selector=c=d",
        "?selector=%ff%00",
        "?selector=Bad%20Key=x",
    ] {
        let path = format!("/v1/tunnels{query}");
        let answer = exchange(addr, &head(&edge, "GET", &path, "")).await;
        assert_eq!(answer.status, 400, "{query}: {answer:?}");
        check_contract("GET", &path, &answer);
    }

    assert_eq!(
        inventory(&api).await,
        before,
        "a hostile request changed what is stored"
    );
    still_serving(&edge, &api, "after-requests").await;
}

// === ids ===

#[tokio::test]
async fn percent_encoded_ids_reach_only_what_they_name() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let addr = edge.addrs.api;
    let tunnel = api.post("/v1/tunnels", &json!({"name": "web"})).await;
    assert_eq!(tunnel.status, 201, "{}", tunnel.text);
    let id = tunnel.body["id"].as_str().expect("id").to_string();
    let hostname = json!({
        "hostname": "app.example.com",
        "service": "http://localhost:4000",
        "tunnel_id": id,
    });
    assert_eq!(api.post("/v1/hostnames", &hostname).await.status, 201);
    let before = inventory(&api).await;

    // Encoded slashes and dots stay inside the id: they never reach another route (such as
    // the token) nor anything outside the API.
    let not_found = [
        format!("/v1/tunnels/{id}%2Ftoken"),
        format!("/v1/tunnels/{id}%2ftoken"),
        format!("/v1/tunnels/{id}%252Ftoken"),
        "/v1/tunnels/%2e%2e".to_string(),
        "/v1/tunnels/..%2F..%2Fadmin-token".to_string(),
        "/v1/tunnels/%00".to_string(),
        format!("/v1/tunnels/{id}%00"),
        "/v1/hostnames/app.example.com%00".to_string(),
        "/v1/hostnames/app.example.com%2F..%2F..%2Fadmin-token".to_string(),
        "/v1/hostnames/%2e%2e%2fadmin-token".to_string(),
        "/v1/hostnames/%ff".to_string(),
        "/v1/hostnames/%c0%ae%c0%ae".to_string(),
        "/v1/hostnames/APP.example.com".to_string(),
        "/v1/hostnames/app.example.com.".to_string(),
        "/v1/policies/%2e%2e".to_string(),
    ];
    for path in &not_found {
        for method in ["GET", "DELETE"] {
            let answer = exchange(addr, &head(&edge, method, path, "")).await;
            assert_eq!(answer.status, 404, "{method} {path}: {answer:?}");
            check_contract(method, path, &answer);
        }
    }
    let token_route = exchange(
        addr,
        &head(&edge, "GET", &format!("/v1/tunnels/{id}%2Ftoken"), ""),
    )
    .await;
    assert!(!String::from_utf8_lossy(&token_route.body).contains("postern1."));

    // Percent-encoded unreserved characters are the characters themselves (RFC 3986).
    let encoded_dots = "/v1/hostnames/app%2Eexample%2Ecom";
    let answer = exchange(addr, &head(&edge, "GET", encoded_dots, "")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["hostname"], "app.example.com");

    // PUT with an encoded id is read the same way: a different name in the body is refused.
    let renamed = with_body(
        &edge,
        "PUT",
        encoded_dots,
        "application/json",
        serde_json::to_vec(&json!({
            "hostname": "other.example.com",
            "service": "http://localhost:4000",
            "tunnel_id": id,
        }))
        .expect("json")
        .as_slice(),
    );
    let answer = exchange(addr, &renamed).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    check_contract("PUT", encoded_dots, &answer);

    assert_eq!(
        inventory(&api).await,
        before,
        "an encoded id changed what is stored"
    );
    still_serving(&edge, &api, "after-ids").await;
}

// === metrics cardinality (issue 23) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_method_names_leave_metrics_and_memory_bounded() {
    use acceptance::process::rss;
    const REQUESTS: usize = 10_000;
    const CLIENTS: usize = 8;
    let edge = EdgeProcess::start();
    let api = edge.api();
    let series = |text: &str| {
        text.lines()
            .filter(|line| line.starts_with("postern_edge_api_requests_total{"))
            .count()
    };
    assert_eq!(api.get("/healthz").await.status, 200);
    let rss_before = rss(edge.pid());
    let url = edge.api_url();
    let token = edge.admin_token.clone();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let url = url.clone();
        let token = token.clone();
        clients.spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            // xorshift64, seeded per client: a fresh method name for every request.
            let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (client as u64 + 1);
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in 0..REQUESTS / CLIENTS {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let name: String = (0..12)
                    .map(|k| char::from(b'A' + ((state >> (k * 5)) % 26) as u8))
                    .collect();
                let method = Method::from_bytes(name.as_bytes()).expect("a method token");
                let path = ["/v1/tunnels", "/healthz", "/nowhere"][i % 3];
                let mut request = http.request(method, format!("{url}{path}"));
                if i % 2 == 0 {
                    // Half with the token: counted after authentication too.
                    request = request.bearer_auth(&token);
                }
                let response = request.send().await.expect("an answer");
                *statuses.entry(response.status().as_u16()).or_default() += 1;
            }
            statuses
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(result) = clients.join_next().await {
        for (status, count) in result.expect("task") {
            *statuses.entry(status).or_default() += count;
        }
    }
    let took = started.elapsed();
    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let rss_after = rss(edge.pid());
    let count = series(&metrics.text);
    let other = metrics
        .text
        .lines()
        .filter(|line| line.starts_with("postern_edge_api_requests_total{method=\"other\""))
        .map(|line| line.to_string())
        .collect::<Vec<_>>();
    println!(
        "metrics cardinality: {REQUESTS} API requests with random method names in {took:?} (statuses {statuses:?}); \
         /metrics shows {count} series of postern_edge_api_requests_total ({other:?}); RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(count <= 20, "{count} series");
    assert!(!other.is_empty(), "unknown methods are counted as `other`");
    // The edge's memory stays put: under 4 MiB more for the whole run (a series per method
    // name would cost a few hundred bytes each, forever).
    assert!(
        rss_after < rss_before + 4 * 1024 * 1024,
        "RSS grew from {} to {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    still_serving(&edge, &api, "after-methods").await;
}
