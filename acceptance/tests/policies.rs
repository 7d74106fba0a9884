//! Edge policies on real traffic (issue 6, must show 1–4): IP allow lists, methods, paths, JWT
//! (HS256, RS256, ES256), token-bucket rate limits and report mode, through the real edge, a
//! real connector and a test origin whose hit counter proves that refused requests never
//! reached it. Different 127.x.y.z source addresses stand in for different clients.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acceptance::fixture::create_tunnel;
use acceptance::{ConnectorProcess, EdgeProcess, Load, TestOrigin, eventually};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postern_schema::api::{HostnameSpec, Policy, Tunnel};
use postern_schema::client::Client;
use serde_json::{Value, json};

/// An edge, a tunnel with a connected connector, and an origin.
struct Stage {
    edge: EdgeProcess,
    client: Client,
    origin: TestOrigin,
    tunnel: Tunnel,
    _connector: ConnectorProcess,
}

impl Stage {
    async fn start() -> Self {
        let edge = EdgeProcess::start();
        let client = edge.client();
        let origin = TestOrigin::start().await;
        let tunnel = create_tunnel(&client, "api", &[]).await;
        let connector = ConnectorProcess::run(tunnel.token.as_deref().expect("token"), 1, &[]);
        eventually(Duration::from_secs(20), "the connector", || async {
            (!client.tunnel_connections(tunnel.id).await.ok()?.is_empty()).then_some(())
        })
        .await;
        Self {
            edge,
            client,
            origin,
            tunnel,
            _connector: connector,
        }
    }

    /// Creates a policy from JSON through the raw API (so every field is exercised as sent).
    async fn policy(&self, body: Value) -> Policy {
        let response = self.edge.api().post("/v1/policies", &body).await;
        assert_eq!(response.status, 201, "{}", response.text);
        serde_json::from_value(response.body).expect("policy")
    }

    /// Declares `hostname` behind `policies`, served by the stage's tunnel.
    async fn hostname(&self, hostname: &str, policies: &[&Policy]) {
        self.client
            .create_hostname(&HostnameSpec {
                tls_passthrough: None,
                hostname: hostname.into(),
                service: self.origin.url(),
                tunnel_id: Some(self.tunnel.id),
                routes: None,
                policy_ids: policies.iter().map(|p| p.id).collect(),
                paths: Vec::new(),
                origin: None,
            })
            .await
            .expect("hostname");
    }

    /// A visitor from `source` (a 127.x.y.z address).
    fn visitor(&self, hostname: &str, source: &str) -> Visitor {
        let source: IpAddr = source.parse().expect("source address");
        let http = reqwest::Client::builder()
            .no_proxy()
            .local_address(source)
            .resolve(hostname, self.edge.addrs.http)
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Visitor {
            http,
            base: format!("http://{hostname}:{}", self.edge.addrs.http.port()),
        }
    }
}

struct Visitor {
    http: reqwest::Client,
    base: String,
}

impl Visitor {
    async fn send(&self, method: &str, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    async fn status(&self, method: &str, path: &str, bearer: Option<&str>) -> u16 {
        self.send(method, path, bearer).await.status().as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_method_and_path_rules_stop_requests_before_the_tunnel() {
    let stage = Stage::start().await;
    let office = stage
        .policy(json!({"name": "office", "allow_ips": ["127.0.0.2/32"], "deny_ips": ["127.0.0.9"]}))
        .await;
    let read_only = stage
        .policy(json!({"name": "read-only", "allow_methods": ["GET"], "allow_paths": ["/api/**", "/healthz"]}))
        .await;
    stage.hostname("ip.example.com", &[&office]).await;
    stage.hostname("rules.example.com", &[&read_only]).await;

    // IP allow list: 127.0.0.2 passes, 127.0.0.3 is refused, and never reaches the origin.
    let allowed = stage.visitor("ip.example.com", "127.0.0.2");
    let outsider = stage.visitor("ip.example.com", "127.0.0.3");
    assert_eq!(allowed.status("GET", "/hello", None).await, 200);
    let hits = stage.origin.hits();
    for _ in 0..5 {
        let refused = outsider.send("GET", "/hello", None).await;
        assert_eq!(refused.status(), 403);
        assert!(refused.text().await.unwrap_or_default().contains("office"));
    }
    assert_eq!(
        stage.origin.hits(),
        hits,
        "a refused request reached the origin"
    );
    assert_eq!(allowed.status("GET", "/hello", None).await, 200);
    assert_eq!(stage.origin.hits(), hits + 1);

    // Methods and paths.
    let visitor = stage.visitor("rules.example.com", "127.0.0.4");
    // Allowed requests reach the origin (which knows no such paths and answers 404 itself).
    let hits = stage.origin.hits();
    assert_eq!(visitor.status("GET", "/api/users/7", None).await, 404);
    assert_eq!(visitor.status("GET", "/healthz", None).await, 404);
    assert_eq!(stage.origin.hits(), hits + 2);
    let hits = stage.origin.hits();
    assert_eq!(visitor.status("POST", "/api/users", None).await, 403);
    assert_eq!(visitor.status("DELETE", "/api/users/7", None).await, 403);
    assert_eq!(visitor.status("GET", "/admin", None).await, 403);
    assert_eq!(visitor.status("GET", "/api/../admin", None).await, 403);
    assert_eq!(visitor.status("GET", "/healthz/extra", None).await, 403);
    assert_eq!(
        stage.origin.hits(),
        hits,
        "a refused request reached the origin"
    );

    let denied = "postern_edge_policy_decisions_total{policy=\"read-only\",hostname=\"rules.example.com\",decision=\"deny\",reason=\"method\"}";
    assert_eq!(stage.edge.metric(denied).await, 2);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("signing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_policies_accept_only_valid_tokens() {
    let stage = Stage::start().await;
    let secret = "a-shared-secret-for-hs256-tokens";
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let policy = stage
        .policy(json!({"name": "signed-in", "jwt": {
            "issuer": "https://id.example.com/",
            "audiences": ["api"],
            "hs256_secret": secret,
            "public_keys_pem": [rsa.public_key_pem(), ec.public_key_pem()],
        }}))
        .await;
    stage.hostname("jwt.example.com", &[&policy]).await;
    let visitor = stage.visitor("jwt.example.com", "127.0.0.5");

    let now = unix_now();
    let claims = |iss: &str, aud: &str, exp: u64| json!({"sub": "ada", "iss": iss, "aud": aud, "exp": exp, "iat": now});
    let good = claims("https://id.example.com/", "api", now + 300);
    let hs = EncodingKey::from_secret(secret.as_bytes());
    let rs = EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).expect("rsa pem");
    let es = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("ec pem");
    let wrong_es = EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).expect("ec pem");

    // No token: 401 with WWW-Authenticate: Bearer.
    let hits = stage.origin.hits();
    let missing = visitor.send("GET", "/hello", None).await;
    assert_eq!(missing.status(), 401);
    let challenge = missing
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");

    let refused = [
        (
            "wrong signature",
            sign(Algorithm::ES256, &wrong_es, good.clone()),
        ),
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-entirely"),
                good.clone(),
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                &hs,
                claims("https://id.example.com/", "api", now - 3600),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::RS256,
                &rs,
                claims("https://evil.example.com/", "api", now + 300),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::ES256,
                &es,
                claims("https://id.example.com/", "billing", now + 300),
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in &refused {
        let response = visitor.send("GET", "/hello", Some(token)).await;
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}"
        );
    }
    assert_eq!(
        stage.origin.hits(),
        hits,
        "an unauthenticated request reached the origin"
    );

    for (what, token) in [
        ("HS256", sign(Algorithm::HS256, &hs, good.clone())),
        ("RS256", sign(Algorithm::RS256, &rs, good.clone())),
        ("ES256", sign(Algorithm::ES256, &es, good.clone())),
    ] {
        assert_eq!(
            visitor.status("GET", "/hello", Some(&token)).await,
            200,
            "{what}"
        );
    }
    assert_eq!(stage.origin.hits(), hits + 3);
}

/// Sends `count` GETs from `visitor` at once; returns (passed, limited) and checks that every
/// 429 carries a Retry-After of whole seconds.
async fn burst(visitor: &Visitor, count: usize) -> (usize, usize) {
    let report = Load::get(&visitor.http, &format!("{}/hello", visitor.base))
        .requests(count)
        .concurrency(count)
        .run()
        .await;
    for failure in &report.failures {
        assert_eq!(failure.status, Some(429), "unexpected answer: {failure}");
        let retry = failure
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            retry.is_some_and(|s| s >= 1),
            "429 without a valid Retry-After"
        );
    }
    (report.ok, report.count(429))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_client_ip_and_refill() {
    let stage = Stage::start().await;
    let limit = stage
        .policy(json!({"name": "fifty", "rate_limit": {"requests_per_second": 50, "burst": 50}}))
        .await;
    stage.hostname("rate.example.com", &[&limit]).await;
    let first = stage.visitor("rate.example.com", "127.0.0.6");
    let second = stage.visitor("rate.example.com", "127.0.0.7");

    let started = std::time::Instant::now();
    let (passed, limited) = burst(&first, 200).await;
    let elapsed = started.elapsed();
    assert_eq!(passed + limited, 200);
    // The bucket holds 50 and refills at 50/s: what the burst may pass grows with the time the
    // 200 requests took to arrive (the 45–60 assumes they arrive within ~200 ms).
    let allowance = if elapsed <= Duration::from_millis(100) {
        60
    } else {
        60 + (elapsed.as_secs_f64() * 50.0).ceil() as usize
    };
    assert!(
        (45..=allowance).contains(&passed),
        "{passed} of 200 passed in {elapsed:?} (allowed 45..={allowance})"
    );
    eprintln!("rate limit: {passed} passed, {limited} limited, burst sent in {elapsed:?}");

    // Another client IP has its own bucket.
    assert_eq!(second.status("GET", "/hello", None).await, 200);
    // After a second the first client's bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (passed, _) = burst(&first, 20).await;
    assert_eq!(passed, 20, "the bucket did not refill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_blocks_nothing_and_counts_what_it_would_block() {
    let stage = Stage::start().await;
    let report = stage
        .policy(json!({"name": "trial", "mode": "report", "allow_ips": ["10.0.0.0/8"], "allow_methods": ["GET"]}))
        .await;
    stage.hostname("trial.example.com", &[&report]).await;
    let visitor = stage.visitor("trial.example.com", "127.0.0.8");
    let hits = stage.origin.hits();
    for _ in 0..4 {
        assert_eq!(visitor.status("GET", "/hello", None).await, 200);
    }
    // The origin answers 404 to a POST /hello: what matters is that it got the request.
    assert_eq!(visitor.status("POST", "/hello", None).await, 404);
    assert_eq!(
        stage.origin.hits(),
        hits + 5,
        "report mode must let everything through"
    );
    let would_block = "postern_edge_policy_decisions_total{policy=\"trial\",hostname=\"trial.example.com\",decision=\"report\",reason=\"ip\"}";
    assert_eq!(stage.edge.metric(would_block).await, 5);
    assert!(
        stage.edge.log().contains("trial"),
        "report mode should log what it would block"
    );
}
