//! Several edge nodes on one PostgreSQL database (`--store postgres://…`), as real processes on
//! a throwaway PostgreSQL server: what one node writes, every node serves; `If-Match` holds
//! across nodes; an outage of the database fails the API fast with 503 while the data plane
//! keeps serving its last snapshot (proxied traffic through connectors, forwarded between the
//! nodes too), and everything works again once the database is back. The data plane across
//! nodes (forwarding, spreading connections, a node killed) is in `cluster.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use acceptance::load::{Running, stop_all};
use acceptance::{
    Api, ApiResponse, ConnectorProcess, EdgeOptions, EdgeProcess, Load, PostgresServer, TestOrigin,
    binary,
};
use postern_schema::token::TunnelToken;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How fast a change on one node must reach another node's data plane.
const PROPAGATION: Duration = Duration::from_secs(1);

/// How fast the API must fail while the database is down.
const FAIL_FAST: Duration = Duration::from_secs(3);

// === helpers ===

/// An edge node on the shared database; with `admin_token`, started with `POSTERN_ADMIN_TOKEN`.
fn start_node(postgres: &PostgresServer, admin_token: Option<&str>) -> EdgeProcess {
    let mut env = Vec::new();
    if let Some(token) = admin_token {
        env.push(("POSTERN_ADMIN_TOKEN".to_string(), token.to_string()));
    }
    EdgeProcess::start_with(EdgeOptions {
        args: vec!["--store".into(), postgres.url()],
        env,
        ..EdgeOptions::default()
    })
}

/// Runs `request` with a deadline, so a hanging edge fails the test instead of stalling it.
async fn within<T>(limit: Duration, what: &str, request: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

async fn created(response: ApiResponse, what: &str) -> Value {
    assert_eq!(response.status, 201, "{what}: {}", response.text);
    response.body
}

/// Polls `probe` every 20 ms until it returns true; returns how long that took, or panics after
/// `limit` naming `what`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status a node's public HTTP listener answers for `host` (404: unknown hostname; 503: a
/// known hostname without a connector). Plain HTTP/1.1 over TCP.
async fn public_status(http: SocketAddr, host: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(http)
        .await
        .expect("connecting to the public listener");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("writing the request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The response code and answer count of an `A` query for `name` to a node's DNS over UDP.
async fn dns_a(dns: SocketAddr, name: &str) -> (u8, u16) {
    let mut query = vec![0x50, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).expect("short label"));
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp socket");
    socket.send_to(&query, dns).await.expect("dns query");
    let mut answer = [0u8; 1500];
    let (len, _) = within(
        Duration::from_secs(2),
        "a DNS answer",
        socket.recv_from(&mut answer),
    )
    .await
    .expect("dns answer");
    assert!(
        len >= 12 && answer[..2] == query[..2],
        "not an answer to our query"
    );
    (answer[3] & 0x0f, u16::from_be_bytes([answer[6], answer[7]]))
}

const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

/// Whether `metrics` (the Prometheus text of `/metrics`) lists a tunnel named `name`.
async fn metrics_list_tunnel(api: &Api, name: &str) -> bool {
    let response = api.get("/metrics").await;
    response.status == 200 && response.text.contains(&format!("tunnel=\"{name}\""))
}

/// A process killed when dropped, even when the test fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `postern-edge` on the shared database without `POSTERN_ADMIN_TOKEN`, as an operator
/// adding a node would; returns the process and its ready line once it is ready.
fn spawn_bare_node(postgres: &PostgresServer, data_dir: &Path) -> (KillOnDrop, Value) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary("postern-edge"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--store", &postgres.url()])
        .args(["--api-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--https-listen", "127.0.0.1:0"])
        .args(["--tunnel-listen", "127.0.0.1:0"])
        .args(["--dns-listen", "127.0.0.1:0"])
        .env_remove("POSTERN_ADMIN_TOKEN")
        .env_remove("POSTERN_EDGE_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning postern-edge");
    let stdout = child.stdout.take().expect("stdout");
    let child = KillOnDrop(child);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = sender.send(line);
        }
        for _ in lines {}
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the node without an admin token did not get ready");
    let ready: Value = serde_json::from_str(&line).expect("ready line");
    (child, ready)
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_node_is_served_by_another_within_a_second() {
    let postgres = PostgresServer::start();
    let node_a = start_node(&postgres, None);
    // Operators give every node the same admin token; it is stored once.
    let node_b = start_node(&postgres, Some(&node_a.admin_token));
    assert!(
        !node_b.data_dir().join("admin-token").exists(),
        "node B minted an admin token although the store has one"
    );
    let (api_a, api_b) = (node_a.api(), node_b.api());

    // A node started with neither a token file nor POSTERN_ADMIN_TOKEN still starts, mints
    // nothing, and accepts the token the first node made.
    let bare_dir = tempfile::tempdir().expect("temp dir");
    let (bare, ready) = spawn_bare_node(&postgres, &bare_dir.path().join("data"));
    assert!(!bare_dir.path().join("data/admin-token").exists());
    let bare_api = Api::new(
        &format!("http://{}", ready["api"].as_str().expect("api address")),
        Some(&node_a.admin_token),
    );
    assert_eq!(bare_api.get("/v1/tunnels").await.status, 200);
    drop(bare);

    // One CA for all nodes.
    let ca_a = api_a.get("/v1/edge").await.body["ca_cert_pem"].clone();
    let ca_b = api_b.get("/v1/edge").await.body["ca_cert_pem"].clone();
    assert!(ca_a.is_string());
    assert_eq!(ca_a, ca_b, "the nodes made different CAs");

    let host = "app.example.com";
    assert_eq!(public_status(node_b.addrs.http, host).await, 404);
    assert_eq!(dns_a(node_b.addrs.dns, host).await.0, NXDOMAIN);

    let tunnel = created(
        api_a
            .post(
                "/v1/tunnels",
                &json!({"name": "web", "labels": {"release": "stable"}}),
            )
            .await,
        "tunnel",
    )
    .await;
    let tunnel_id = tunnel["id"].as_str().expect("tunnel id").to_string();
    let hostname = created(
        api_a
            .post(
                "/v1/hostnames",
                &json!({"hostname": host, "service": "http://localhost:4000", "tunnel_id": tunnel_id}),
            )
            .await,
        "hostname",
    )
    .await;

    // Node B's API reads the shared store: visible at once.
    let read = api_b.get(&format!("/v1/tunnels/{tunnel_id}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["name"], "web");
    let read = api_b.get(&format!("/v1/hostnames/{host}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["version"], hostname["version"]);
    assert_eq!(read.body["tunnel_id"], tunnel["id"]);

    // Node B's data plane follows its catalog: DNS answers, the proxy knows the hostname (503:
    // no connector yet, instead of 404), and the tunnel is in its metrics.
    let took = wait_until(
        PROPAGATION,
        "B's DNS answering for the hostname",
        || async { dns_a(node_b.addrs.dns, host).await == (NOERROR, 1) },
    )
    .await;
    println!("hostname reached B's DNS after {took:?}");
    wait_until(PROPAGATION, "B's proxy knowing the hostname", || async {
        public_status(node_b.addrs.http, host).await == 503
    })
    .await;
    assert!(metrics_list_tunnel(&api_b, "web").await);

    // An update and a delete through A travel the same way.
    let renamed = api_a
        .put(
            &format!("/v1/tunnels/{tunnel_id}"),
            &json!({"name": "web-renamed", "labels": {"release": "stable"}}),
            Some("1"),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let took = wait_until(PROPAGATION, "the rename reaching B's catalog", || {
        metrics_list_tunnel(&api_b, "web-renamed")
    })
    .await;
    println!("rename reached B's catalog after {took:?}");
    let deleted = api_a.delete(&format!("/v1/hostnames/{host}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    wait_until(
        PROPAGATION,
        "the delete reaching B's DNS and proxy",
        || async {
            dns_a(node_b.addrs.dns, host).await.0 == NXDOMAIN
                && public_status(node_b.addrs.http, host).await == 404
        },
    )
    .await;

    // And the other way round: B writes, A serves.
    created(
        api_b
            .post(
                "/v1/hostnames",
                &json!({"hostname": "b.example.com", "service": "http_status:204", "tunnel_id": tunnel_id}),
            )
            .await,
        "hostname through B",
    )
    .await;
    wait_until(PROPAGATION, "B's write reaching A's DNS", || async {
        dns_a(node_a.addrs.dns, "b.example.com").await == (NOERROR, 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replaces_through_two_nodes_with_one_if_match_have_one_winner() {
    let postgres = PostgresServer::start();
    let node_a = start_node(&postgres, None);
    let node_b = start_node(&postgres, Some(&node_a.admin_token));
    let (api_a, api_b) = (node_a.api(), node_b.api());
    let tunnel = created(
        api_a.post("/v1/tunnels", &json!({"name": "shared"})).await,
        "tunnel",
    )
    .await;
    let path = format!("/v1/tunnels/{}", tunnel["id"].as_str().expect("id"));

    for round in 1..=10u64 {
        let version = round.to_string();
        let body_a = json!({"name": "shared", "labels": {"writer": "a", "round": version}});
        let body_b = json!({"name": "shared", "labels": {"writer": "b", "round": version}});
        let (a, b) = tokio::join!(
            api_a.put(&path, &body_a, Some(&version)),
            api_b.put(&path, &body_b, Some(&version)),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 412],
            "round {round}: A answered {} {}, B answered {} {}",
            a.status,
            a.text,
            b.status,
            b.text
        );
        let (winner, loser) = if a.status == 200 { (&a, &b) } else { (&b, &a) };
        assert_eq!(
            loser.error_code(),
            Some("precondition_failed"),
            "{}",
            loser.text
        );
        assert_eq!(winner.body["version"], round + 1);
        // Both nodes now read the winner's write.
        for api in [&api_a, &api_b] {
            let read = api.get(&path).await;
            assert_eq!(read.body["labels"], winner.body["labels"]);
            assert_eq!(read.body["version"], round + 1);
        }
    }

    // One name created through both nodes at once: one 201, one 409.
    let policy = json!({"name": "same"});
    let (a, b) = tokio::join!(
        api_a.post("/v1/policies", &policy),
        api_b.post("/v1/policies", &policy),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", a.text, b.text);
}

/// Visitor requests (`GET /hello`) for `host` to `node`'s public HTTP listener, back to back
/// until stopped, each with a deadline.
fn proxied_load(node: &EdgeProcess, host: &str) -> Running {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(host, node.addrs.http)
        .timeout(FAIL_FAST)
        .build()
        .expect("client");
    let url = format!("http://{host}:{}/hello", node.addrs.http.port());
    Load::get(&client, &url)
        .expect_body("hello from the origin")
        .pause_after_failure(Duration::from_millis(20))
        .start()
}

/// What the API load saw.
#[derive(Default)]
struct LoadCounts {
    /// Successful answers (200, 201).
    ok: AtomicUsize,
    /// 503 `unavailable` answers.
    unavailable: AtomicUsize,
}

/// One API client hammering a node until `stop` (or its bound on requests): reads of a tunnel
/// and creates of new ones, each with a deadline. Panics on any answer other than success or
/// 503 `unavailable`; returns the slowest answer of each kind.
async fn api_load(
    api: Api,
    worker: usize,
    tunnel_path: String,
    counts: Arc<LoadCounts>,
    stop: Arc<AtomicBool>,
) -> (Duration, Duration) {
    let (mut slowest_ok, mut slowest_unavailable) = (Duration::ZERO, Duration::ZERO);
    for i in 0..5_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let response = if i % 2 == 0 {
            within(FAIL_FAST * 2, "a read", api.get(&tunnel_path)).await
        } else {
            let body = json!({"name": format!("load-{worker}-{i}")});
            within(FAIL_FAST * 2, "a create", api.post("/v1/tunnels", &body)).await
        };
        let took = started.elapsed();
        match response.status {
            200 | 201 => {
                slowest_ok = slowest_ok.max(took);
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            503 => {
                assert_eq!(
                    response.error_code(),
                    Some("unavailable"),
                    "{}",
                    response.text
                );
                slowest_unavailable = slowest_unavailable.max(took);
                counts.unavailable.fetch_add(1, Ordering::Relaxed);
                // Do not spin on a down database.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("the API answered {other} under load: {}", response.text),
        }
    }
    (slowest_ok, slowest_unavailable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_the_api_fast_keeps_the_data_plane_and_recovers() {
    let mut postgres = PostgresServer::start();
    let node_a = start_node(&postgres, None);
    let node_b = start_node(&postgres, Some(&node_a.admin_token));
    let (api_a, api_b) = (node_a.api(), node_b.api());
    let origin = TestOrigin::start().await;
    let tunnel = created(
        api_a.post("/v1/tunnels", &json!({"name": "web"})).await,
        "tunnel",
    )
    .await;
    let tunnel_id = tunnel["id"].as_str().expect("id").to_string();
    let host = "app.example.com";
    created(
        api_a
            .post(
                "/v1/hostnames",
                &json!({"hostname": host, "service": origin.url(), "tunnel_id": tunnel_id}),
            )
            .await,
        "hostname",
    )
    .await;
    for node in [&node_a, &node_b] {
        wait_until(PROPAGATION, "the hostname reaching every node", || async {
            dns_a(node.addrs.dns, host).await == (NOERROR, 1)
        })
        .await;
    }

    // Real traffic through connectors: "web" has one connection on each node (its token names
    // both); "solo" one connection on node A only, so B serves it by forwarding to A.
    let token = tunnel["token"].as_str().expect("token");
    let _web = ConnectorProcess::run(token, 2, &[]);
    let solo = created(
        api_a.post("/v1/tunnels", &json!({"name": "solo"})).await,
        "solo tunnel",
    )
    .await;
    let solo_id = solo["id"].as_str().expect("id").to_string();
    let solo_host = "solo.example.com";
    created(
        api_a
            .post(
                "/v1/hostnames",
                &json!({"hostname": solo_host, "service": origin.url(), "tunnel_id": solo_id}),
            )
            .await,
        "solo hostname",
    )
    .await;
    let solo_token = TunnelToken {
        edge_addresses: vec![node_a.addrs.tunnel.to_string()],
        ..TunnelToken::parse(solo["token"].as_str().expect("token")).expect("token")
    };
    let _solo = ConnectorProcess::run(&solo_token.encode(), 1, &[]);
    // Every node lists every node's connections, each naming the node holding it.
    for (api, node, id, count) in [
        (&api_a, &node_a, &tunnel_id, 1),
        (&api_b, &node_b, &tunnel_id, 1),
        (&api_a, &node_a, &solo_id, 1),
    ] {
        let edge = node.addrs.tunnel.to_string();
        wait_until(
            Duration::from_secs(20),
            "the connectors registering",
            || async {
                let list = api.get(&format!("/v1/tunnels/{id}/connections")).await;
                let held = list.body["items"]
                    .as_array()
                    .map(|items| items.iter().filter(|c| c["edge"] == edge.as_str()).count());
                held == Some(count)
            },
        )
        .await;
    }
    wait_until(PROPAGATION, "B learning that A holds solo", || async {
        api_b.get(&format!("/v1/tunnels/{solo_id}")).await.body["connections"] == 1
    })
    .await;
    let mut traffic = Vec::new();
    for node in [&node_a, &node_b] {
        for name in [host, solo_host] {
            traffic.push(proxied_load(node, name));
        }
    }
    let proxied_ok = |traffic: &[Running]| traffic.iter().map(Running::ok).sum::<usize>();
    wait_until(
        Duration::from_secs(10),
        "proxied traffic flowing",
        || async { proxied_ok(&traffic) >= 100 },
    )
    .await;

    // API load on both nodes, running across the outage and the recovery.
    let counts = Arc::new(LoadCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let api = if worker % 2 == 0 {
            api_a.clone()
        } else {
            api_b.clone()
        };
        load.spawn(api_load(
            api,
            worker,
            format!("/v1/tunnels/{tunnel_id}"),
            counts.clone(),
            stop.clone(),
        ));
    }
    let ok_before = || counts.ok.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(10),
        "the load getting answers",
        || async { ok_before() >= 20 },
    )
    .await;

    postgres.stop();
    let stopped = Instant::now();
    wait_until(Duration::from_secs(10), "the API answering 503", || async {
        counts.unavailable.load(Ordering::Relaxed) >= 40
    })
    .await;

    // The processes are up, and the data plane serves the last snapshot: DNS, and proxied
    // traffic through the connectors, forwarded between the nodes too.
    for node in [&node_a, &node_b] {
        let health = within(FAIL_FAST, "healthz", node.api().get("/healthz")).await;
        assert_eq!(health.status, 200);
        assert_eq!(dns_a(node.addrs.dns, host).await, (NOERROR, 1));
    }
    let ok_in_outage = proxied_ok(&traffic);
    wait_until(
        Duration::from_secs(10),
        "proxied traffic during the outage",
        || async { proxied_ok(&traffic) >= ok_in_outage + 200 },
    )
    .await;
    println!(
        "database down for {:?}; proxied requests answered so far: {}",
        stopped.elapsed(),
        proxied_ok(&traffic)
    );

    // The database comes back: the same load succeeds again, without restarting the edges.
    postgres.restart();
    let restarted = Instant::now();
    let ok_at_restart = ok_before();
    let took = wait_until(
        Duration::from_secs(10),
        "writes succeeding again",
        || async { ok_before() >= ok_at_restart + 20 },
    )
    .await;
    println!("the API recovered {took:?} after the restart");
    stop.store(true, Ordering::Relaxed);
    let traffic = stop_all(traffic).await;
    let failed: Vec<String> = traffic
        .iter()
        .flat_map(|report| report.failures.iter().map(ToString::to_string))
        .collect();
    println!(
        "proxied requests across the outage: {} answered, {} failed",
        traffic.iter().map(|report| report.ok).sum::<usize>(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "proxied requests failed across the outage:\n{}",
        failed.join("\n")
    );
    let (mut slowest_ok, mut slowest_unavailable) = (Duration::ZERO, Duration::ZERO);
    while let Some(worker) = load.join_next().await {
        let (ok, unavailable) = worker.expect("a load worker failed");
        slowest_ok = slowest_ok.max(ok);
        slowest_unavailable = slowest_unavailable.max(unavailable);
    }
    println!(
        "load: {} answered, {} unavailable; slowest 503 {slowest_unavailable:?}, slowest success {slowest_ok:?}",
        counts.ok.load(Ordering::Relaxed),
        counts.unavailable.load(Ordering::Relaxed)
    );
    assert!(
        slowest_unavailable < FAIL_FAST,
        "a 503 took {slowest_unavailable:?}"
    );
    for node in [&node_a, &node_b] {
        assert!(
            !node.log().contains("panicked"),
            "an edge panicked:\n{}",
            node.log()
        );
    }

    // Changes travel between the nodes again: each change feed reconnects with backoff (at most
    // ~2.5 s after the restart), with the periodic resync as the net behind it.
    created(
        api_a
            .post(
                "/v1/hostnames",
                &json!({"hostname": "after.example.com", "service": "http_status:204", "tunnel_id": tunnel_id}),
            )
            .await,
        "hostname through A",
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "A's write reaching B after the outage",
        || async { dns_a(node_b.addrs.dns, "after.example.com").await == (NOERROR, 1) },
    )
    .await;
    created(
        api_b
            .post(
                "/v1/hostnames",
                &json!({"hostname": "late.example.com", "service": "http_status:204", "tunnel_id": tunnel_id}),
            )
            .await,
        "hostname through B",
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "B's write reaching A after the outage",
        || async { dns_a(node_a.addrs.dns, "late.example.com").await == (NOERROR, 1) },
    )
    .await;
    println!(
        "changes travel again {:?} after the restart",
        restarted.elapsed()
    );
}

// === PostgreSQL over TLS ===

/// `postern-edge` with `store` in a file (`--store-file`: the URL is not on the command line)
/// and every listener on port 0; runs until it prints its ready line or exits. Returns the
/// process when it got ready, or its exit code and stderr when it did not.
fn start_on_file(store: &str, dir: &Path) -> Result<KillOnDrop, (Option<i32>, String)> {
    let url_file = dir.join("store-url");
    std::fs::write(&url_file, format!("{store}\n")).expect("store file");
    let mut child = Command::new(binary("postern-edge"))
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .args(["--store-file", &url_file.display().to_string()])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--tunnel-listen",
            "127.0.0.1:0",
        ])
        .args(["--dns-listen", "127.0.0.1:0"])
        .env_remove("POSTERN_ADMIN_TOKEN")
        .env_remove("POSTERN_EDGE_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning postern-edge");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    if line.contains("\"ready\":true") {
        return Ok(KillOnDrop(child));
    }
    let status = child.wait().expect("exit status");
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr);
    Err((status.code(), stderr))
}

#[test]
fn the_edge_reaches_postgres_over_tls_with_verify_full_and_refuses_what_it_cannot_trust() {
    let ca = acceptance::pki::TestCa::new("database CA");
    let postgres = PostgresServer::start_tls(&ca.server_cert(&["127.0.0.1", "localhost"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("db-ca.pem");
    std::fs::write(&root, &ca.cert_pem).expect("root");
    let other_root = dir.path().join("other-ca.pem");
    std::fs::write(
        &other_root,
        acceptance::pki::TestCa::new("other CA").cert_pem,
    )
    .expect("root");
    let with = |query: &str| format!("{}?{query}", postgres.url());

    // verify-full with the CA that signed the server's certificate: the edge starts and its
    // store works (the schema was migrated over TLS).
    let node = dir.path().join("good");
    std::fs::create_dir_all(&node).expect("dir");
    let verified = format!("sslmode=verify-full&sslrootcert={}", root.display());
    let started = start_on_file(&with(&verified), &node);
    let edge = started.unwrap_or_else(|(code, stderr)| {
        panic!(
            "the edge did not start ({code:?}):\n{stderr}\n{}",
            postgres.log()
        )
    });
    drop(edge);
    assert!(
        !postgres.log().contains("no pg_hba.conf entry"),
        "{}",
        postgres.log()
    );

    // Another root: the edge refuses to start and says the certificate is not trusted.
    let node = dir.path().join("wrong-root");
    std::fs::create_dir_all(&node).expect("dir");
    let wrong = format!("sslmode=verify-full&sslrootcert={}", other_root.display());
    let (code, stderr) = start_on_file(&with(&wrong), &node).err().expect("refused");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("certificate is not trusted") && stderr.contains("sslrootcert"),
        "{stderr}"
    );

    // Without TLS the hostssl-only server refuses, and the edge says to turn TLS on.
    let node = dir.path().join("plain");
    std::fs::create_dir_all(&node).expect("dir");
    let (code, stderr) = start_on_file(&with("sslmode=disable"), &node)
        .err()
        .expect("refused");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("refused a connection without TLS") && stderr.contains("verify-full"),
        "{stderr}"
    );

    // verify-full without a root is refused before anything starts.
    let node = dir.path().join("no-root");
    std::fs::create_dir_all(&node).expect("dir");
    let (code, stderr) = start_on_file(&with("sslmode=verify-full"), &node)
        .err()
        .expect("refused");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("sslrootcert=FILE"), "{stderr}");
    // The URL was read from a file and its password never shown.
    assert!(!stderr.contains("postern@127.0.0.1"), "{stderr}");
}
