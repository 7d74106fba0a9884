//! The tunnel, end to end (issue 5's "must show"): the real `postern-edge` and `postern`
//! binaries, real origins, real TLS and HTTP/2, on loopback with port 0.

use std::time::{Duration, Instant};

use acceptance::fixture::{
    add_hostname, connections, connections_within, connector_id, token, tunnel_for,
};
use acceptance::origin::{PatternBody, hex, pattern_sha256};
use acceptance::process::peak_rss;
use acceptance::visitor::{
    TcpRelay, edge_http_client, get_with_host, http_url, https_client, https_url, stream_request,
};
use acceptance::{
    ConnectorProcess, EdgeOptions, EdgeProcess, Load, TestOrigin, eventually, websocket,
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use nix::sys::signal::Signal;
use postern_schema::api::HostnameSpec;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

/// Runs the tests of this file one at a time: several assert timings (revocation within 1 s,
/// back within 5 s after an edge restart), which two cores shared by a dozen edges and
/// connectors would blur.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn get_text(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostname_is_served_through_the_tunnel_byte_for_byte() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "app.example.com";
    let tunnel = tunnel_for(&client, "web", host, &origin.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &["--metrics", "127.0.0.1:0"]);
    connections(&client, tunnel.id, 2).await;

    // The connector is ready and says so.
    let metrics = connector.metrics_addr().await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let (status, _) = get_text(&plain, &format!("http://{metrics}/ready")).await;
    assert_eq!(status, 200);
    let (_, text) = get_text(&plain, &format!("http://{metrics}/metrics")).await;
    assert!(text.contains("postern_connector_connections 2"), "{text}");

    // GET and POST over HTTP and HTTPS: exactly what the origin answers.
    let direct = get_text(&plain, &format!("{}/hello", origin.url())).await;
    let http = edge_http_client(&edge, host);
    let https = https_client(&edge, host).await;
    assert_eq!(
        get_text(&http, &http_url(&edge, host, "/hello")).await,
        direct
    );
    assert_eq!(
        get_text(&https, &https_url(&edge, host, "/hello")).await,
        direct
    );
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 256) as u8).collect();
    for (client, url) in [
        (&http, http_url(&edge, host, "/echo")),
        (&https, https_url(&edge, host, "/echo")),
    ] {
        let response = client
            .post(url)
            .body(payload.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.bytes().await.expect("body").as_ref(),
            payload.as_slice()
        );
    }

    // The forwarding headers and the request id.
    let response = https
        .get(https_url(&edge, host, "/headers"))
        .send()
        .await
        .expect("headers");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("x-request-id on the response");
    let seen: serde_json::Value = response.json().await.expect("json");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-request-id"], request_id.as_str());
    assert_eq!(seen["host"], host);

    // Trailers pass.
    let request = Request::get("/trailers")
        .header("host", host)
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let trailers = fetch_trailers(edge.addrs.http, request).await;
    assert_eq!(
        trailers
            .as_ref()
            .and_then(|t| t.get("x-checksum"))
            .map(|v| v.as_bytes()),
        Some(&b"abc"[..]),
        "{trailers:?}"
    );

    // 64 MiB down and up, streamed, checked by SHA-256.
    let size = 64 * MIB;
    let baseline = (peak_rss(edge.pid()), peak_rss(connector.pid()));
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let request = Request::get(format!("/download?bytes={size}"))
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let status = stream_request(edge.addrs.http, request, |chunk| {
        hasher.update(chunk);
        received += chunk.len() as u64;
    })
    .await;
    assert_eq!((status, received), (200, size));
    assert_eq!(hex(&hasher.finalize()), pattern_sha256(size));

    let mut answer = Vec::new();
    let request = Request::post("/upload")
        .header("host", host)
        .body(PatternBody::new(size))
        .expect("request");
    let status = stream_request(edge.addrs.http, request, |chunk| {
        answer.extend_from_slice(chunk)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("{} {size}", pattern_sha256(size))
    );
    let (edge_rss, connector_rss) = (peak_rss(edge.pid()), peak_rss(connector.pid()));
    // Bodies stream: moving 128 MiB through adds only flow-control windows' worth of memory.
    let grown = (
        edge_rss.saturating_sub(baseline.0),
        connector_rss.saturating_sub(baseline.1),
    );
    assert!(
        edge_rss < size && connector_rss < size && grown.0 < size / 8 && grown.1 < size / 8,
        "peak RSS edge {edge_rss} connector {connector_rss} (grew {grown:?}) for a body of {size}"
    );

    // A WebSocket echo.
    let (status, ws) = websocket::connect(edge.addrs.http, host, "/ws")
        .await
        .expect("websocket");
    assert_eq!(status, 101);
    let mut ws = ws.expect("upgraded");
    assert_eq!(ws.accept, websocket::accept_key("dGhlIHNhbXBsZSBub25jZQ=="));
    for text in ["hello over the tunnel", &"x".repeat(70_000)] {
        ws.send_text(text).await.expect("send");
        let frame = ws.receive().await.expect("echo");
        assert_eq!(
            (frame.opcode, frame.payload.as_slice()),
            (1, text.as_bytes())
        );
    }
    ws.close().await.expect("close");

    // 200 concurrent requests all succeed.
    let hello = http_url(&edge, host, "/hello");
    Load::get_each(&http, move |i| format!("{hello}?i={i}"))
        .requests(200)
        .concurrency(200)
        .expect_body("hello from the origin")
        .run()
        .await
        .expect_all_ok();

    // The edge counts requests by hostname and status, and connectors by tunnel.
    let text = edge.api().get("/metrics").await.text;
    assert!(
        text.contains("postern_edge_requests_total{hostname=\"app.example.com\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "postern_edge_connectors{{tunnel=\"web\",tunnel_id=\"{}\"}} 2",
            tunnel.id
        )),
        "{text}"
    );
}

/// Sends `request` over HTTP/1.1 and returns the response's trailers.
async fn fetch_trailers(
    addr: std::net::SocketAddr,
    request: Request<Empty<Bytes>>,
) -> Option<http::HeaderMap> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("body");
    collected.trailers().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_change_reaches_the_running_connector_within_two_seconds() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let (first, second) = (TestOrigin::start().await, TestOrigin::start().await);
    let host = "svc.example.com";
    let tunnel = tunnel_for(&client, "svc", host, &first.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    let before = connections(&client, tunnel.id, 2).await;
    let http = edge_http_client(&edge, host);
    assert_eq!(
        get_text(&http, &http_url(&edge, host, "/hello")).await.0,
        200
    );
    assert_eq!((first.hits(), second.hits()), (1, 0));

    let mut spec = client.hostname(host).await.expect("hostname").spec;
    spec.service = second.url();
    let changed = Instant::now();
    client.replace_hostname(&spec, None).await.expect("replace");
    eventually(
        Duration::from_secs(2),
        "the new service to answer",
        || async {
            get_text(&http, &http_url(&edge, host, "/hello")).await;
            (second.hits() > 0).then_some(())
        },
    )
    .await;
    assert!(changed.elapsed() < Duration::from_secs(2));

    let old_version = before[0].config_version;
    let after = eventually(Duration::from_secs(2), "the new config version", || async {
        let list = client.tunnel_connections(tunnel.id).await.ok()?;
        (list.len() == 2 && list.iter().all(|c| c.config_version > old_version)).then_some(list)
    })
    .await;
    assert_eq!(after[0].config_version, after[1].config_version);
    assert!(connector.log().contains("applied configuration"));

    // A hostname added to the running tunnel answers from the moment the API acknowledged it.
    let tunnel = client.tunnel(tunnel.id).await.expect("tunnel");
    add_hostname(&client, &tunnel, "svc2.example.com", &second.url()).await;
    let http2 = edge_http_client(&edge, "svc2.example.com");
    let (status, body) = get_text(&http2, &http_url(&edge, "svc2.example.com", "/hello")).await;
    assert_eq!((status, body.as_str()), (200, "hello from the origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_survives_a_cut_connection_and_an_edge_restart() {
    let _serial = serial().await;
    let relay = TcpRelay::start().await;
    let mut edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--advertise-tunnel".into(), relay.addr.to_string()],
        ..EdgeOptions::default()
    });
    relay.set_target(edge.addrs.tunnel);
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "resilient.example.com";
    let tunnel = tunnel_for(&client, "resilient", host, &origin.url()).await;
    let mut connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;
    let http = edge_http_client(&edge, host);

    // One connection cut: the other keeps serving.
    assert!(relay.cut_one());
    connections(&client, tunnel.id, 1).await;
    for i in 0..20 {
        let (status, _) = get_text(&http, &http_url(&edge, host, &format!("/hello?cut={i}"))).await;
        assert_eq!(status, 200);
    }
    connections(&client, tunnel.id, 2).await;

    // The edge restarts; the connector is back and serving within 5 s, without a restart.
    edge.restart();
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(5),
        "serving again after the edge restart",
        || async {
            let response = http
                .get(http_url(&edge, host, "/hello"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    assert!(restarted.elapsed() < Duration::from_secs(5));
    assert!(
        connector.wait_exit(Duration::ZERO).is_none(),
        "the connector exited"
    );
    connector.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connectors_share_a_tunnel_and_fail_over() {
    let _serial = serial().await;
    // More workers than one connector has connections: each connector's connections live
    // on workers of their own, and a visitor's connection on any one worker still reaches
    // both connectors.
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--workers".into(), "4".into()],
        ..EdgeOptions::default()
    });
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "pair.example.com";
    let tunnel = tunnel_for(&client, "pair", host, &origin.url()).await;
    let mut first = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    let second = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 4).await;
    let (first_id, second_id) = (connector_id(&first), connector_id(&second));
    let http = edge_http_client(&edge, host);

    // Traffic reaches both.
    for i in 0..40 {
        assert_eq!(
            get_text(&http, &http_url(&edge, host, &format!("/hello?{i}")))
                .await
                .0,
            200
        );
    }
    let hits = origin.hits_by_connector();
    assert!(hits.get(&first_id).copied().unwrap_or(0) > 0, "{hits:?}");
    assert!(hits.get(&second_id).copied().unwrap_or(0) > 0, "{hits:?}");

    // SIGKILL one: once the edge noticed, every request succeeds on the other.
    first.kill();
    let left = connections(&client, tunnel.id, 2).await;
    assert!(left.iter().all(|c| c.connector_id == second_id));
    let before = origin.hits_by_connector();
    for i in 0..30 {
        assert_eq!(
            get_text(&http, &http_url(&edge, host, &format!("/hello?k{i}")))
                .await
                .0,
            200
        );
    }
    let after = origin.hits_by_connector();
    assert_eq!(after.get(&first_id), before.get(&first_id));

    // SIGTERM one with a slow request in flight: it completes, nothing new goes there, exit 0.
    let mut third = ConnectorProcess::run(&token(&tunnel), 2, &["--grace-period", "10s"]);
    connections(&client, tunnel.id, 4).await;
    let third_id = connector_id(&third);
    let mut second = second;
    let slow = {
        let http = http.clone();
        let url = http_url(&edge, host, "/slow?ms=2000");
        tokio::spawn(async move { get_text(&http, &url).await })
    };
    // Whichever connector took the slow request is the one stopped.
    let target = eventually(
        Duration::from_secs(5),
        "the slow request at the origin",
        || async {
            let now = origin.hits_by_connector();
            [&second_id, &third_id].into_iter().find_map(|id| {
                let grew = now.get(id).copied().unwrap_or(0) > after.get(id).copied().unwrap_or(0);
                grew.then(|| id.clone())
            })
        },
    )
    .await;
    let (stopping, staying_id) = if target == second_id {
        (&mut second, third_id.clone())
    } else {
        (&mut third, second_id.clone())
    };
    let stopping_id = target;
    stopping.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    eventually(
        Duration::from_secs(5),
        "the edge to stop routing to it",
        || async {
            let list = client.tunnel_connections(tunnel.id).await.ok()?;
            list.iter()
                .all(|c| c.connector_id != stopping_id || c.draining)
                .then_some(())
        },
    )
    .await;
    // The connector tells the edge at once, before it stops taking streams.
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "draining took {:?}",
        signalled.elapsed()
    );
    let before_new = origin.hits_by_connector();
    for i in 0..20 {
        assert_eq!(
            get_text(&http, &http_url(&edge, host, &format!("/hello?t{i}")))
                .await
                .0,
            200
        );
    }
    let after_new = origin.hits_by_connector();
    assert_eq!(after_new.get(&stopping_id), before_new.get(&stopping_id));
    assert_eq!(
        after_new.get(&staying_id).copied().unwrap_or(0),
        before_new.get(&staying_id).copied().unwrap_or(0) + 20
    );
    let (status, body) = slow.await.expect("slow request");
    assert_eq!((status, body.as_str()), (200, "slow done"));
    let exit = stopping
        .wait_exit(Duration::from_secs(15))
        .expect("the stopped connector exits");
    assert!(exit.success(), "exit status {exit:?}:\n{}", stopping.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_get_the_status_of_the_design() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let url = |host: &str, path: &str| {
        (
            format!("http://{}{path}", edge.addrs.http),
            host.to_string(),
        )
    };
    let status = |host: &'static str, path: &'static str| {
        let http = http.clone();
        let (target, host) = url(host, path);
        async move {
            let started = Instant::now();
            let response = http
                .get(target)
                .header("host", host)
                .send()
                .await
                .expect("request");
            (response.status().as_u16(), started.elapsed())
        }
    };

    // Unknown host: 404.
    assert_eq!(status("nowhere.example.com", "/").await.0, 404);

    // A hostname whose tunnel has no connector: 503 at once.
    tunnel_for(&client, "idle", "idle.example.com", &origin.url()).await;
    let (code, took) = status("idle.example.com", "/hello").await;
    assert_eq!(code, 503);
    assert!(took < Duration::from_secs(1), "503 took {took:?}");

    // Origin down: 502. Origin slower than the timeout: 504.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let tunnel = tunnel_for(
        &client,
        "busy",
        "down.example.com",
        &format!("http://{closed}"),
    )
    .await;
    add_hostname(&client, &tunnel, "slow.example.com", &origin.url()).await;
    let _connector = ConnectorProcess::run(&token(&tunnel), 1, &["--origin-timeout", "1s"]);
    connections(&client, tunnel.id, 1).await;
    assert_eq!(status("down.example.com", "/").await.0, 502);
    let (code, took) = status("slow.example.com", "/slow?ms=3000").await;
    assert_eq!(code, 504);
    assert!(took < Duration::from_millis(2500), "504 took {took:?}");
    assert_eq!(status("slow.example.com", "/hello").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tunnel_closes_its_connections_and_stops_its_connector() {
    let _serial = serial().await;
    let relay = TcpRelay::start().await;
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--advertise-tunnel".into(), relay.addr.to_string()],
        ..EdgeOptions::default()
    });
    relay.set_target(edge.addrs.tunnel);
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "doomed", "doomed.example.com", &origin.url()).await;
    let mut connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;
    assert_eq!(relay.live(), 2);

    client
        .delete_hostname("doomed.example.com", None)
        .await
        .expect("delete hostname");
    let deleted = Instant::now();
    client
        .delete_tunnel(tunnel.id, None)
        .await
        .expect("delete tunnel");
    eventually(
        Duration::from_secs(1),
        "the tunnel's connections to close",
        || async { (relay.live() == 0).then_some(()) },
    )
    .await;
    assert!(
        deleted.elapsed() < Duration::from_secs(1),
        "took {:?}",
        deleted.elapsed()
    );

    let exit = connector
        .wait_exit(Duration::from_secs(5))
        .expect("the connector stops instead of retrying");
    assert_eq!(exit.code(), Some(3), "{}", connector.log());
    assert!(
        connector
            .log()
            .contains(&format!("tunnel {} was deleted", tunnel.id)),
        "{}",
        connector.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_serves_its_hostname_and_cleans_up_on_sigint() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "quick.example.com";
    let mut quick = ConnectorProcess::start(acceptance::ConnectorOptions {
        args: vec![
            "--hostname".into(),
            host.into(),
            origin.url(),
            "--api".into(),
            edge.api_url(),
            "--connections".into(),
            "1".into(),
        ],
        env: vec![("POSTERN_API_TOKEN".into(), edge.admin_token.clone())],
        ..acceptance::ConnectorOptions::default()
    });
    let http = edge_http_client(&edge, host);
    eventually(Duration::from_secs(20), "quick mode to serve", || async {
        let (status, body) = get_text(&http, &http_url(&edge, host, "/hello")).await;
        (status == 200 && body == "hello from the origin").then_some(())
    })
    .await;
    let tunnels = client.list_tunnels(None).await.expect("tunnels");
    assert_eq!(tunnels.len(), 1);
    assert!(tunnels[0].spec.name.starts_with("quick-"));
    assert!(client.hostname(host).await.is_ok());

    quick.signal(Signal::SIGINT);
    let exit = quick
        .wait_exit(Duration::from_secs(20))
        .expect("quick mode exits");
    assert!(exit.success(), "{exit:?}\n{}", quick.log());
    assert!(client.hostname(host).await.is_err_and(|e| e.is_not_found()));
    assert!(client.list_tunnels(None).await.expect("tunnels").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let _serial = serial().await;
    for (args, expected) in [
        (
            vec!["tunnel", "run", "--token", "nonsense"],
            "not a postern tunnel token",
        ),
        (vec![], "nothing to do"),
        (
            vec!["--hostname", "Bad Name", "http://127.0.0.1:1"],
            "--hostname",
        ),
        (
            vec!["--hostname", "a.example.com"],
            "quick mode needs the service",
        ),
        (
            vec!["tunnel", "run", "--token", "t", "--connections", "0"],
            "--connections",
        ),
    ] {
        let mut process = ConnectorProcess::start(acceptance::ConnectorOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..acceptance::ConnectorOptions::default()
        });
        let exit = process.wait_exit(Duration::from_secs(10)).expect("exits");
        let log = process.log();
        assert!(!exit.success(), "{args:?} succeeded");
        assert!(log.contains(expected), "{args:?}: {log}");
        assert!(!log.contains("panicked"), "{args:?}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_renews_its_certificate_over_the_tunnel_before_it_expires() {
    let _serial = serial().await;
    let edge = EdgeProcess::start_with(EdgeOptions {
        env: vec![("POSTERN_EDGE_CLIENT_CERT_LIFETIME_SECS".into(), "15".into())],
        ..EdgeOptions::default()
    });
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "renew.example.com";
    let tunnel = tunnel_for(&client, "renew", host, &origin.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    connections(&client, tunnel.id, 1).await;
    let cert = connector
        .state_dir()
        .join("tunnels")
        .join(tunnel.id.to_string())
        .join("cert.pem");
    let first = std::fs::read(&cert).expect("cert.pem");
    // Due two thirds into 15 s; well before the end, the certificate is replaced.
    eventually(Duration::from_secs(14), "a renewed certificate", || async {
        (std::fs::read(&cert).ok()? != first).then_some(())
    })
    .await;
    // The edge logs the renewal once the connector acknowledged it, just after it stored it.
    eventually(
        Duration::from_secs(2),
        "the edge logging the renewal",
        || async {
            edge.log()
                .contains("renewed the connector's client certificate")
                .then_some(())
        },
    )
    .await;
    let enrolments = connector.log().matches("enrolling with the edge").count();
    assert_eq!(
        enrolments,
        1,
        "renewal fell back to enrolment:\n{}",
        connector.log()
    );
    let http = edge_http_client(&edge, host);
    assert_eq!(
        get_text(&http, &http_url(&edge, host, "/hello")).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origins_honour_their_origin_settings() {
    let _serial = serial().await;
    use postern_schema::api::OriginSettings;

    // An HTTPS origin whose certificate names origin.internal, from a CA of the test's own.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["origin.internal".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let origin = TestOrigin::start_tls(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .await;
    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), ca.pem()).expect("write CA");

    let edge = EdgeProcess::start();
    let client = edge.client();
    let tunnel = tunnel_for(&client, "tls", "verified.example.com", &origin.https_url()).await;
    let with = |hostname: &str, origin_settings: OriginSettings| HostnameSpec {
        tls_passthrough: None,
        hostname: hostname.into(),
        service: format!("https://{}", origin.addr),
        tunnel_id: Some(tunnel.id),
        routes: None,
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: Some(origin_settings),
    };
    let mut spec = with(
        "verified.example.com",
        OriginSettings {
            origin_server_name: Some("origin.internal".into()),
            http_host_header: Some("internal.example".into()),
            ..OriginSettings::default()
        },
    );
    client.replace_hostname(&spec, None).await.expect("replace");
    client
        .create_hostname(&with(
            "insecure.example.com",
            OriginSettings {
                no_tls_verify: Some(true),
                ..OriginSettings::default()
            },
        ))
        .await
        .expect("create");
    add_hostname(
        &client,
        &tunnel,
        "unverified.example.com",
        &origin.https_url(),
    )
    .await;
    let ca_path = ca_file.path().to_string_lossy().to_string();
    let _connector = ConnectorProcess::run(&token(&tunnel), 1, &["--origin-ca", &ca_path]);
    connections(&client, tunnel.id, 1).await;

    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let fetch = |host, path| get_with_host(&plain, edge.addrs.http, host, path);
    // Verified against --origin-ca under origin_server_name, with the Host it asks for.
    let (status, body) = fetch("verified.example.com", "/headers").await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["host"], "internal.example");
    // Not verifiable by its address: 502, unless no_tls_verify says otherwise.
    assert_eq!(fetch("unverified.example.com", "/hello").await.0, 502);
    assert_eq!(
        fetch("insecure.example.com", "/hello").await,
        (200, "hello from the origin".to_string())
    );
    spec.origin = None;
    client.replace_hostname(&spec, None).await.expect("replace");
    assert_eq!(fetch("verified.example.com", "/hello").await.0, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_request_for_another_host_than_its_sni_is_misdirected() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "sni", "one.example.com", &origin.url()).await;
    add_hostname(&client, &tunnel, "two.example.com", &origin.url()).await;
    let _connector = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    connections(&client, tunnel.id, 1).await;
    let info = client.edge().await.expect("edge");
    let https = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(info.visitor_ca_cert_pem.as_bytes()).expect("ca"),
        ])
        .resolve("one.example.com", edge.addrs.https)
        .http1_only()
        .no_proxy()
        .build()
        .expect("client");
    let url = https_url(&edge, "one.example.com", "/hello");
    let response = https.get(&url).send().await.expect("get");
    assert_eq!(response.status(), 200);
    let response = https
        .get(&url)
        .header("host", "two.example.com")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 421);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_connector_is_noticed_within_seconds() {
    let _serial = serial().await;
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "frozen.example.com";
    let tunnel = tunnel_for(&client, "frozen", host, &origin.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;

    // SIGSTOP: the sockets stay open, only the keep-alive pings go unanswered.
    connector.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    // The edge drops the frozen connector.
    connections_within(&client, tunnel.id, 0, Duration::from_secs(8)).await;
    assert!(frozen.elapsed() < Duration::from_secs(8));
    let http = edge_http_client(&edge, host);
    assert_eq!(
        get_text(&http, &http_url(&edge, host, "/hello")).await.0,
        503
    );

    // Thawed, it reconnects by itself.
    connector.signal(Signal::SIGCONT);
    connections(&client, tunnel.id, 2).await;
    assert_eq!(
        get_text(&http, &http_url(&edge, host, "/hello")).await.0,
        200
    );
}
