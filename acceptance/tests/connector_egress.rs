//! The connector on a locked-down host (issue 27, must show 6): it reaches the edge through an
//! HTTP CONNECT proxy the test starts (named by `--proxy`, or by `HTTPS_PROXY` as other tools
//! read it), and with `--allow-origin` it refuses a hostname pointed at any other origin:
//! the request never reaches that origin, and `terraform apply` fails naming the connector and
//! the reason at once, not after its `rollout_timeout`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acceptance::fixture::web_hostname_tf;
use acceptance::provider::{expect_clean_failure, squash, tunnel_id};
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{
    ConnectorOptions, ConnectorProcess, EdgeProcess, Terraform, TestOrigin, eventually,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.example.com";

/// A forward proxy that only speaks `CONNECT` and counts the tunnels it opened, by target.
struct ConnectProxy {
    url: String,
    targets: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl ConnectProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let targets = Arc::new(Mutex::new(BTreeMap::new()));
        let seen = targets.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = tunnel(client, seen).await;
                });
            }
        });
        Self { url, targets }
    }

    fn tunnels_to(&self, target: &str) -> usize {
        self.targets
            .lock()
            .expect("lock")
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

/// Reads `CONNECT host:port HTTP/1.1` and its headers, dials the target, answers 200 and
/// splices.
async fn tunnel(
    mut client: TcpStream,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await?;
        return Ok(());
    };
    let target = target.to_string();
    *seen
        .lock()
        .expect("lock")
        .entry(target.clone())
        .or_default() += 1;
    let mut upstream = TcpStream::connect(&target).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connector_goes_through_a_connect_proxy_and_refuses_origins_outside_its_list() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let allowed = TestOrigin::start().await;
    let forbidden = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &web_hostname_tf(HOST, &allowed.url(), "30s"));
    tf.init();
    tf.apply().success();
    let tunnel = tunnel_id(&tf, "postern_tunnel.web");
    let token = tf.output_raw("token");
    let tunnel_address = edge.addrs.tunnel.to_string();

    // Through --proxy, allowed to reach only the first origin.
    let proxy = ConnectProxy::start().await;
    let origin_address = allowed.url().trim_start_matches("http://").to_string();
    let by_flag = ConnectorProcess::run(
        &token,
        2,
        &["--proxy", &proxy.url, "--allow-origin", &origin_address],
    );
    eventually(Duration::from_secs(20), "two connections", || async {
        (client.tunnel_connections(tunnel).await.ok()?.len() == 2).then_some(())
    })
    .await;
    assert!(
        proxy.tunnels_to(&tunnel_address) >= 2,
        "the enrolment and both tunnel connections went through the proxy: {:?}",
        proxy.targets.lock().expect("lock")
    );
    let http = edge_http_client(&edge, HOST);
    let url = http_url(&edge, HOST, "/hello");
    let answer = http.get(&url).send().await.expect("request");
    assert_eq!(answer.status(), 200);
    assert_eq!(allowed.hits(), 1, "served through the proxied tunnel");

    // HTTPS_PROXY, as curl and the Go tools read it, does the same for a second connector.
    let env_proxy = ConnectProxy::start().await;
    let by_env = ConnectorProcess::start(ConnectorOptions {
        args: [
            "tunnel",
            "run",
            "--token",
            &token,
            "--connections",
            "1",
            "--allow-origin",
            &origin_address,
        ]
        .map(str::to_string)
        .to_vec(),
        env: vec![("HTTPS_PROXY".into(), env_proxy.url.clone())],
        ..ConnectorOptions::default()
    });
    eventually(Duration::from_secs(20), "three connections", || async {
        (client.tunnel_connections(tunnel).await.ok()?.len() == 3).then_some(())
    })
    .await;
    assert!(env_proxy.tunnels_to(&tunnel_address) >= 1);

    // The hostname pointed at an origin outside the list: the apply fails at once, naming
    // both connectors and the reason, long before the 30 s rollout_timeout.
    let ids = [by_flag.connector_id().await, by_env.connector_id().await];
    tf.write("main.tf", &web_hostname_tf(HOST, &forbidden.url(), "30s"));
    let started = Instant::now();
    let apply = tf.run(&["apply", "-no-color", "-auto-approve"]);
    let took = started.elapsed();
    expect_clean_failure(&apply);
    let text = squash(&apply.all());
    assert!(text.contains("A connector refused the change"), "{text}");
    for id in &ids {
        assert!(
            text.contains(&format!("connector {id} of tunnel \"web\" refused {HOST}")),
            "{text}"
        );
    }
    assert!(text.contains("--allow-origin"), "{text}");
    assert!(text.contains(&forbidden.url()), "{text}");
    assert!(
        took < Duration::from_secs(20),
        "refused at once, not after the rollout_timeout: {took:?}"
    );
    // Nothing reaches the forbidden origin: the connectors do not serve the hostname.
    for _ in 0..20 {
        let answer = http.get(&url).send().await.expect("request");
        assert_ne!(answer.status(), 200, "a refused hostname is not served");
    }
    assert_eq!(
        forbidden.hits(),
        0,
        "the forbidden origin was never reached"
    );

    // Back to the allowed origin: the apply succeeds and the hostname is served again.
    tf.write("main.tf", &web_hostname_tf(HOST, &allowed.url(), "30s"));
    tf.apply().success();
    let answer = http.get(&url).send().await.expect("request");
    assert_eq!(answer.status(), 200);
}
