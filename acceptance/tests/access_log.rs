//! The access log (issue 27, must show 5): `--access-log FILE` gets one valid JSON line per
//! visitor request with the fields an operator reads (checked over a 1,000-request run, refused
//! requests included), the file is reopened on SIGHUP after a rotation, and a viewer following
//! `GET /v1/requests?follow=true&hostname=` sees a new request's line within a second, and only
//! its hostname's.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use acceptance::fixture::{add_hostname, served_with};
use acceptance::{EdgeOptions, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const HOST: &str = "logged.example.com";
const OTHER: &str = "other.example.com";
const REQUESTS: usize = 1_000;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

async fn wait_for_lines(path: &Path, count: usize) -> Vec<Value> {
    eventually(Duration::from_secs(20), "the access log lines", || async {
        let lines = lines(path);
        (lines.len() >= count).then_some(lines)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_one_json_line_and_followers_see_new_ones_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("access.log");
    let served = served_with(
        HOST,
        EdgeOptions {
            args: vec![
                "--access-log".into(),
                log_path.to_string_lossy().into_owned(),
            ],
            ..EdgeOptions::default()
        },
    )
    .await;
    let edge = &served.edge;
    let client = edge.client();
    add_hostname(&client, &served.tunnel, OTHER, &served.origin.url()).await;
    // A policy that lets only GET through, on HOST: POSTs are refused at the edge.
    let api = edge.api();
    let policy = api
        .post(
            "/v1/policies",
            &json!({"name": "get-only", "allow_methods": ["GET"]}),
        )
        .await;
    assert_eq!(policy.status, 201, "{}", policy.text);
    let current = api.get(&format!("/v1/hostnames/{HOST}")).await;
    let version = current.etag().expect("etag");
    let spec = json!({
        "hostname": HOST,
        "service": served.origin.url(),
        "tunnel_id": served.tunnel.id,
        "policy_ids": [policy.body["id"]],
    });
    let updated = api
        .put(&format!("/v1/hostnames/{HOST}"), &spec, Some(&version))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);

    let visitor = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, edge.addrs.http)
        .resolve(OTHER, edge.addrs.http)
        .build()
        .expect("client");
    let url = |host: &str, path: &str| format!("http://{host}:{}{path}", edge.addrs.http.port());

    // 1,000 requests: every tenth a refused POST with a body, the rest GETs.
    let mut ids = HashSet::new();
    for n in 0..REQUESTS {
        let response = if n % 10 == 0 {
            visitor
                .post(url(HOST, &format!("/form/{n}?secret=hidden")))
                .body("x".repeat(100))
                .send()
                .await
        } else {
            visitor
                .get(url(HOST, &format!("/hello?n={n}&secret=hidden")))
                .send()
                .await
        }
        .expect("request");
        let expected = if n % 10 == 0 { 403 } else { 200 };
        assert_eq!(response.status().as_u16(), expected, "request {n}");
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_string();
        response.bytes().await.expect("body");
        ids.insert(id);
    }
    let logged = wait_for_lines(&log_path, REQUESTS).await;
    assert_eq!(logged.len(), REQUESTS, "one line per request, no more");
    let logged_ids: HashSet<String> = logged
        .iter()
        .map(|line| line["request_id"].as_str().expect("request_id").to_string())
        .collect();
    assert_eq!(
        logged_ids, ids,
        "the lines are the requests the visitor made"
    );
    let (mut allowed, mut denied) = (0, 0);
    for line in &logged {
        for field in ["time", "client_ip", "method", "host", "path", "status"] {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
        assert_eq!(line["host"], HOST);
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert!(line["duration_ms"].as_f64().expect("duration") >= 0.0);
        let path = line["path"].as_str().expect("path");
        assert!(
            !path.contains("secret"),
            "the query is never logged: {line}"
        );
        match line["status"].as_u64() {
            Some(200) => {
                allowed += 1;
                assert_eq!(line["method"], "GET");
                assert_eq!(line["decision"], "allow");
                assert_eq!(line["tunnel_id"], served.tunnel.id.to_string());
                assert!(line["connection_id"].is_string(), "{line}");
                assert!(line["connector"].is_string(), "{line}");
                assert!(line["bytes_out"].as_u64().expect("bytes_out") > 0, "{line}");
                assert_eq!(path, "/hello");
            }
            Some(403) => {
                denied += 1;
                assert_eq!(line["method"], "POST");
                assert_eq!(line["decision"], "deny");
                assert_eq!(line["policy"], "get-only");
                assert_eq!(line["reason"], "method");
                assert!(line.get("tunnel_id").is_none(), "refused before the tunnel");
            }
            other => panic!("unexpected status {other:?}: {line}"),
        }
    }
    assert_eq!((allowed, denied), (900, 100));
    // A request's body bytes are counted: an allowed POST elsewhere.
    let posted = visitor
        .post(url(OTHER, "/upload"))
        .body(vec![7u8; 4096])
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 200);
    let lines_now = wait_for_lines(&log_path, REQUESTS + 1).await;
    let upload = lines_now.last().expect("line");
    assert_eq!(upload["host"], OTHER);
    assert_eq!(upload["bytes_in"], 4096);
    assert!(upload.get("decision").is_none(), "no policies, no decision");

    // Rotation: the file is moved away, SIGHUP, and new lines go to a new file at the path.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).expect("rotate");
    kill(Pid::from_raw(edge.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    eventually(
        Duration::from_secs(10),
        "a new file after SIGHUP",
        || async {
            visitor.get(url(OTHER, "/after")).send().await.ok()?;
            (!lines(&log_path).is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(
        lines(&rotated).len(),
        REQUESTS + 1,
        "the old file kept its lines"
    );
    assert!(
        lines(&log_path).iter().all(|line| line["path"] == "/after"),
        "only new requests go to the new file"
    );

    // A viewer follows one hostname's requests live.
    let viewer = api
        .post("/v1/tokens", &json!({"name": "tail", "role": "viewer"}))
        .await;
    assert_eq!(viewer.status, 201, "{}", viewer.text);
    let viewer_api = api.with_token(viewer.body["secret"].as_str());
    let mut stream = viewer_api
        .open_stream(&format!("/v1/requests?follow=true&hostname={OTHER}"))
        .await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"],
        "application/x-ndjson",
        "lines of JSON"
    );
    // The stream is open before the request is sent: its line must come within a second.
    visitor
        .get(url(HOST, "/not-followed"))
        .send()
        .await
        .expect("get");
    let sent = Instant::now();
    let followed = visitor
        .get(url(OTHER, "/followed"))
        .send()
        .await
        .expect("get");
    let id = followed.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    followed.bytes().await.expect("body");
    let chunk = tokio::time::timeout(Duration::from_secs(1), stream.chunk())
        .await
        .expect("a line within a second")
        .expect("stream")
        .expect("a chunk");
    let waited = sent.elapsed();
    let line: Value = serde_json::from_slice(&chunk).expect("one JSON line");
    assert_eq!(
        line["request_id"], id,
        "the other hostname's line was filtered out"
    );
    assert_eq!(line["path"], "/followed");
    assert!(waited < Duration::from_secs(1), "{waited:?}");

    // Without follow: the recent lines, filtered.
    let recent = viewer_api
        .get(&format!("/v1/requests?hostname={OTHER}"))
        .await;
    assert_eq!(recent.status, 200);
    let recent: Vec<Value> = recent
        .text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert!(recent.iter().all(|line| line["host"] == OTHER));
    assert_eq!(
        recent.last().expect("a line")["path"],
        "/followed",
        "newest last"
    );
}
