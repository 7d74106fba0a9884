//! People at the edge (issue 28): HTTP Basic users (argon2 and bcrypt hashes), the identity
//! headers only the edge may set, `jwt.jwks_url` following a provider's key rotation, and login
//! at a real OpenID provider (the npm package `oidc-provider`, run with Node) by headless
//! Chromium, through one node and then a second node of a cluster. Real edge, real connector,
//! real origin; the origin's `/headers` shows what identity it received.

#[path = "status_page/browser.rs"]
#[allow(dead_code, unreachable_pub)]
mod browser;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acceptance::fixture::create_tunnel;
use acceptance::{ConnectorProcess, EdgeProcess, TestOrigin, eventually};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postern_schema::api::{HostnameSpec, Policy, Tunnel};
use postern_schema::client::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
        let tunnel = create_tunnel(&client, "people", &[]).await;
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

    async fn policy(&self, body: Value) -> Policy {
        let response = self.edge.api().post("/v1/policies", &body).await;
        assert_eq!(response.status, 201, "{}", response.text);
        serde_json::from_value(response.body).expect("policy")
    }

    async fn hostname(&self, hostname: &str, policies: &[&Policy]) {
        self.client
            .create_hostname(&HostnameSpec {
                hostname: hostname.into(),
                service: self.origin.url(),
                tunnel_id: Some(self.tunnel.id),
                routes: None,
                policy_ids: policies.iter().map(|p| p.id).collect(),
                origin: None,
            })
            .await
            .expect("hostname");
    }

    fn http(&self, hostname: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .resolve(hostname, self.edge.addrs.http)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    fn url(&self, hostname: &str, path: &str) -> String {
        format!("http://{hostname}:{}{path}", self.edge.addrs.http.port())
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_takes_the_right_password_and_visitors_cannot_claim_an_identity() {
    let stage = Stage::start().await;
    let bcrypt_hash = bcrypt::hash("correct horse", 6).expect("bcrypt");
    let argon_hash = argon2::PasswordHasher::hash_password_with_salt(
        &argon2::Argon2::default(),
        b"battery staple",
        b"a-salt-for-tests",
    )
    .expect("argon2")
    .to_string();
    let staging = stage
        .policy(json!({"name": "staging", "basic_auth": {"users": {"ana": bcrypt_hash, "ops": argon_hash}}}))
        .await;
    assert!(
        !staging.spec.basic_auth.as_ref().expect("basic_auth").users["ana"].contains("horse"),
        "the edge keeps hashes, never passwords"
    );
    stage.hostname("staging.example.com", &[&staging]).await;
    stage.hostname("open.example.com", &[]).await;
    let http = stage.http("staging.example.com");
    let url = stage.url("staging.example.com", "/headers");
    let hits = stage.origin.hits();

    // No credentials and wrong ones: 401 with a Basic challenge, and the origin never sees it.
    for authorization in [None, Some(basic("ana", "wrong")), Some(basic("nobody", "correct horse"))] {
        let mut request = http.get(&url);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401, "{authorization:?}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
    assert_eq!(stage.origin.hits(), hits, "refused requests never reach the origin");

    // The right passwords (bcrypt and argon2) pass; the origin learns the user from the edge,
    // and a visitor's own identity headers never reach it.
    for (user, password) in [("ana", "correct horse"), ("ops", "battery staple")] {
        let response = http
            .get(&url)
            .header("authorization", basic(user, password))
            .header("x-postern-email", "boss@example.com")
            .header("x-postern-user", "boss")
            .header("x-postern-jwt", "e30.e30.forged")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{user}");
        let seen: Value = response.json().await.expect("json");
        assert_eq!(seen["x-postern-user"], user, "{seen}");
        assert_eq!(seen["x-postern-email"], Value::Null, "{seen}");
        assert_ne!(seen["x-postern-jwt"], "e30.e30.forged", "{seen}");
    }

    // On a hostname without policies too.
    let seen: Value = stage
        .http("open.example.com")
        .get(stage.url("open.example.com", "/headers"))
        .header("x-postern-email", "boss@example.com")
        .header("X-Postern-User", "boss")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(seen["x-postern-email"], Value::Null, "{seen}");
    assert_eq!(seen["x-postern-user"], Value::Null, "{seen}");

    // A plain password instead of a hash is refused by the API.
    let response = stage
        .edge
        .api()
        .post("/v1/policies", &json!({"name": "plain", "basic_auth": {"users": {"ana": "hunter2"}}}))
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
}

// === jwks_url ===

/// A P-256 signing key with its JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let point = pair.public_key_raw();
    SigningKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("pem"),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
    }
}

fn token(key: &SigningKey) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    let now = jsonwebtoken::get_current_timestamp();
    jsonwebtoken::encode(
        &header,
        &json!({"sub": "svc", "iss": "https://id.example", "exp": now + 300}),
        &key.encoding,
    )
    .expect("token")
}

/// A JWKS on a loopback port, answering whatever set it holds at the moment; counts fetches.
struct JwksServer {
    addr: SocketAddr,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(Mutex::new(0));
        let (held, count) = (keys.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = json!({"keys": held.lock().expect("keys").clone()}).to_string();
                *count.lock().expect("count") += 1;
                tokio::spawn(async move {
                    let mut request = vec![0u8; 8192];
                    let _ = socket.read(&mut request).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            addr,
            keys,
            fetches,
            task,
        }
    }

    fn rotate(&self, keys: Value) {
        *self.keys.lock().expect("keys") = keys;
    }

    fn fetches(&self) -> u64 {
        *self.fetches.lock().expect("count")
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_follows_the_providers_key_rotation_without_an_apply() {
    let stage = Stage::start().await;
    let first = signing_key("key-1");
    let second = signing_key("key-2");
    let jwks = JwksServer::start(json!([first.jwk])).await;
    let api = stage
        .policy(json!({"name": "api", "jwt": {"issuer": "https://id.example", "jwks_url": format!("http://{}/jwks.json", jwks.addr)}}))
        .await;
    stage.hostname("jwks.example.com", &[&api]).await;
    let http = stage.http("jwks.example.com");
    let url = stage.url("jwks.example.com", "/hello");
    let status = |token: String| {
        let request = http.get(&url).bearer_auth(token);
        async move { request.send().await.expect("request").status().as_u16() }
    };

    assert_eq!(status(token(&first)).await, 200, "the first key is fetched and used");
    assert_eq!(status(token(&second)).await, 401, "a key the provider does not publish");
    let fetched = jwks.fetches();

    // The provider rotates: the new key is accepted within one refresh, the old one is gone,
    // and the policy was never written again.
    jwks.rotate(json!([second.jwk]));
    eventually(Duration::from_secs(15), "the rotated key accepted", || async {
        (status(token(&second)).await == 200).then_some(())
    })
    .await;
    assert_eq!(status(token(&first)).await, 401, "the retired key is refused");
    let policy = stage.client.policy(api.id).await.expect("policy");
    assert_eq!(policy.version, api.version, "no write was needed");

    // Tokens naming made-up kids do not make the edge fetch for each of them.
    let before = jwks.fetches();
    assert!(before > fetched);
    for i in 0..20 {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("made-up-{i}"));
        let now = jsonwebtoken::get_current_timestamp();
        let forged = jsonwebtoken::encode(&header, &json!({"exp": now + 60}), &first.encoding)
            .expect("token");
        assert_eq!(status(forged).await, 401);
    }
    assert!(
        jwks.fetches() - before <= 2,
        "fetches are rate-limited: {} for 20 unknown kids",
        jwks.fetches() - before
    );
}
