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
                paths: Vec::new(),
                tls_passthrough: None,
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
    for authorization in [
        None,
        Some(basic("ana", "wrong")),
        Some(basic("nobody", "correct horse")),
    ] {
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
    assert_eq!(
        stage.origin.hits(),
        hits,
        "refused requests never reach the origin"
    );

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

    // Paths under /.postern/ are the edge's on every hostname: the origin never sees them.
    let hits = stage.origin.hits();
    let open = stage.http("open.example.com");
    let status = open
        .get(stage.url("open.example.com", "/.postern/anything"))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 404);
    let jwks: Value = open
        .get(stage.url("open.example.com", "/.postern/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("the edge's JWKS");
    assert_eq!(jwks["keys"][0]["alg"], "ES256", "{jwks}");
    assert_eq!(stage.origin.hits(), hits);

    // A plain password instead of a hash is refused by the API.
    let response = stage
        .edge
        .api()
        .post(
            "/v1/policies",
            &json!({"name": "plain", "basic_auth": {"users": {"ana": "hunter2"}}}),
        )
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

    assert_eq!(
        status(token(&first)).await,
        200,
        "the first key is fetched and used"
    );
    assert_eq!(
        status(token(&second)).await,
        401,
        "a key the provider does not publish"
    );
    let fetched = jwks.fetches();

    // The provider rotates: the new key is accepted within one refresh, the old one is gone,
    // and the policy was never written again.
    jwks.rotate(json!([second.jwk]));
    eventually(
        Duration::from_secs(15),
        "the rotated key accepted",
        || async { (status(token(&second)).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(
        status(token(&first)).await,
        401,
        "the retired key is refused"
    );
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

// === login at an OpenID provider ===

/// The zone of the login test: Chromium resolves every `*.localhost` name to loopback itself.
const ZONE: &str = "people.localhost";
const APP: &str = "app.people.localhost";
const OTHER_APP: &str = "other.people.localhost";
const CLIENT_ID: &str = "postern-edge";
/// The client secret: it must appear in no log, no answer and no state.
const CLIENT_SECRET: &str = "client-secret-7c1d9e04-never-shown";

/// `oidc-provider` (npm) run with Node on a loopback port; stopped when dropped.
struct OpenIdProvider {
    issuer: String,
    child: std::process::Child,
}

impl OpenIdProvider {
    /// Starts it for the test client, which may be sent back to `redirect_uris`.
    fn start(redirect_uris: &[String]) -> Self {
        let dir = std::env::var_os("POSTERN_OIDC_PROVIDER_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| acceptance::binaries::workspace_root().join("target"))
                    .join("oidc-provider")
            });
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the login test needs the npm package oidc-provider in {}: scripts/test installs it \
             (or: mkdir -p {0} && cp acceptance/oidc/package*.json {0} && (cd {0} && npm ci))",
            dir.display()
        );
        // Beside its node_modules, so that Node resolves the package from it.
        let script = dir.join("provider.mjs");
        std::fs::copy(
            acceptance::binaries::workspace_root().join("acceptance/oidc/provider.mjs"),
            &script,
        )
        .expect("copy provider.mjs");
        let mut child = std::process::Command::new("node")
            .arg(&script)
            .args([CLIENT_ID, CLIENT_SECRET])
            .args(redirect_uris)
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node (Node.js) on PATH");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    let _ = tx.send(issuer.to_string());
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("oidc-provider says where it listens");
        Self { issuer, child }
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edge node on the shared database, serving the login zone.
fn start_node(postgres: &acceptance::PostgresServer, admin_token: Option<&str>) -> EdgeProcess {
    let env = admin_token
        .map(|token| vec![("POSTERN_ADMIN_TOKEN".to_string(), token.to_string())])
        .unwrap_or_default();
    EdgeProcess::start_with(acceptance::EdgeOptions {
        args: vec!["--store".into(), postgres.url()],
        zones: vec![ZONE.into()],
        env,
        ..acceptance::EdgeOptions::default()
    })
}

/// Logs in as `person` in a fresh browser that opened `url`; returns the browser once it has
/// left the provider.
async fn log_in(url: &str, person: &str) -> browser::Browser {
    use fantoccini::Locator;
    let browser = browser::Browser::start(1000, 800).await;
    let client = browser.client();
    client.goto(url).await.expect("open the protected page");
    let login = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("input[name=login]"))
        .await
        .expect("the provider's login form");
    login.send_keys(person).await.expect("type the login");
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("the password field")
        .send_keys("any password")
        .await
        .expect("type the password");
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("sign in");
    browser
}

/// The text of the page once it shows `needle`.
async fn page_with(browser: &browser::Browser, needle: &str) -> String {
    browser
        .wait_for(
            Duration::from_secs(30),
            needle,
            &format!(
                "const t = document.body ? document.body.innerText : ''; return t.includes({}) ? t : null;",
                serde_json::to_string(needle).expect("json")
            ),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_log_in_at_an_openid_provider_and_their_session_works_on_every_node() {
    let postgres = acceptance::PostgresServer::start();
    let node_a = start_node(&postgres, None);
    let node_b = start_node(&postgres, Some(&node_a.admin_token));
    let client = node_a.client();
    let origin = TestOrigin::start().await;
    let tunnel = create_tunnel(&client, "people", &[]).await;
    let _connector = ConnectorProcess::run(tunnel.token.as_deref().expect("token"), 1, &[]);
    eventually(Duration::from_secs(20), "the connector", || async {
        (!client.tunnel_connections(tunnel.id).await.ok()?.is_empty()).then_some(())
    })
    .await;
    let callback = |node: &EdgeProcess, host: &str| {
        format!("http://{host}:{}/.postern/callback", node.addrs.http.port())
    };
    let provider = OpenIdProvider::start(&[
        callback(&node_a, APP),
        callback(&node_b, APP),
        callback(&node_a, OTHER_APP),
    ]);
    let body = json!({
        "name": "team",
        "oidc": {
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["openid", "email", "profile", "groups"],
            "allowed_groups": ["ops"],
            "session_duration": "1h",
        }
    });
    let response = node_a.api().post("/v1/policies", &body).await;
    assert_eq!(response.status, 201, "{}", response.text);
    assert!(
        !response.text.contains(CLIENT_SECRET),
        "the client secret is write-only: {}",
        response.text
    );
    let team: Policy = serde_json::from_value(response.body).expect("policy");
    for host in [APP, OTHER_APP] {
        client
            .create_hostname(&HostnameSpec {
                paths: Vec::new(),
                tls_passthrough: None,
                hostname: host.into(),
                service: origin.url(),
                tunnel_id: Some(tunnel.id),
                routes: None,
                policy_ids: vec![team.id],
                origin: None,
            })
            .await
            .expect("hostname");
    }
    let url_a = format!("http://{APP}:{}/headers", node_a.addrs.http.port());
    let url_b = format!("http://{APP}:{}/headers", node_b.addrs.http.port());
    let http = |node: &EdgeProcess, host: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .resolve(host, node.addrs.http)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    };

    // A client that does not take HTML gets 401, not a redirect.
    let response = http(&node_a, APP)
        .get(&url_a)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert!(
        response.headers().contains_key("www-authenticate"),
        "{:?}",
        response.headers()
    );

    // Ana (group ops) logs in with Chromium and lands on the origin, which learns who she is
    // from the edge, with a JWT that verifies against the edge's published key.
    let hits = origin.hits();
    let browser = log_in(&url_a, "ana").await;
    let page = page_with(&browser, "x-postern-email").await;
    let seen: Value = serde_json::from_str(&page).unwrap_or_else(|e| panic!("{e}: {page}"));
    assert_eq!(seen["x-postern-email"], "ana@example.com", "{seen}");
    assert_eq!(seen["x-postern-user"], "ana", "{seen}");
    assert!(origin.hits() > hits);
    let jwt = seen["x-postern-jwt"].as_str().expect("an edge-signed JWT");
    let jwks: jsonwebtoken::jwk::JwkSet = http(&node_a, APP)
        .get(format!(
            "http://{APP}:{}/.postern/jwks.json",
            node_a.addrs.http.port()
        ))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("a JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).expect("a key");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_audience(&[APP]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .expect("the origin's JWT verifies with /.postern/jwks.json")
        .claims;
    assert_eq!(claims["email"], "ana@example.com");
    assert_eq!(claims["groups"], json!(["ops"]));

    // The session cookie: HttpOnly, SameSite=Lax, bound to the hostname; the second node of the
    // cluster takes it too.
    let cookie = browser
        .client()
        .get_named_cookie("__postern_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax")
    );
    let session = format!("__postern_session={}", cookie.value());
    let seen: Value = http(&node_b, APP)
        .get(&url_b)
        .header("cookie", &session)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("the origin's answer through node b");
    assert_eq!(seen["x-postern-email"], "ana@example.com", "{seen}");

    // A forged cookie, and the cookie on another hostname, are refused.
    let mut forged = cookie.value().to_string().into_bytes();
    let at = forged.len() / 2;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = format!(
        "__postern_session={}",
        String::from_utf8(forged).expect("ascii")
    );
    let status = http(&node_b, APP)
        .get(&url_b)
        .header("cookie", forged)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401, "a forged cookie");
    let status = http(&node_a, OTHER_APP)
        .get(format!(
            "http://{OTHER_APP}:{}/headers",
            node_a.addrs.http.port()
        ))
        .header("cookie", &session)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401, "another hostname's cookie");

    // An expired session is refused: with sessions of 10 s, the same browser (still logged in
    // at the provider) gets a new cookie at once, which stops working 10 s later.
    let mut short = body.clone();
    short["oidc"]["session_duration"] = json!("10s");
    let response = node_a
        .api()
        .put(&format!("/v1/policies/{}", team.id), &short, None)
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    eventually(
        Duration::from_secs(10),
        "the new policy on node b",
        || async {
            let policy = node_b.client().policy(team.id).await.ok()?;
            (policy.version > team.version).then_some(())
        },
    )
    .await;
    browser
        .client()
        .delete_cookie("__postern_session")
        .await
        .expect("forget the long session");
    browser.client().goto(&url_a).await.expect("open again");
    page_with(&browser, "x-postern-email").await;
    let short_cookie = browser
        .client()
        .get_named_cookie("__postern_session")
        .await
        .expect("a new session cookie");
    let short_session = format!("__postern_session={}", short_cookie.value());
    let status_with = |cookie: String| {
        let request = http(&node_b, APP).get(&url_b).header("cookie", cookie);
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(status_with(short_session.clone()).await, 200);
    eventually(
        Duration::from_secs(30),
        "the short session to expire",
        || async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (status_with(short_session.clone()).await == 401).then_some(())
        },
    )
    .await;

    // /.postern/logout ends the session in the browser.
    browser
        .client()
        .goto(&format!(
            "http://{APP}:{}/.postern/logout",
            node_a.addrs.http.port()
        ))
        .await
        .expect("log out");
    page_with(&browser, "logged out").await;
    let cookies = browser.client().get_all_cookies().await.expect("cookies");
    assert!(
        !cookies.iter().any(|c| c.name() == "__postern_session"),
        "{cookies:?}"
    );
    browser.close().await;

    // Bob (group sales) logs in too, and is refused: 403, and the origin never sees him.
    let hits = origin.hits();
    let browser = log_in(&url_a, "bob").await;
    let page = page_with(&browser, "403").await;
    assert!(page.contains("person"), "{page}");
    assert_eq!(origin.hits(), hits);
    browser.close().await;

    // The client secret is in no log of either node.
    for node in [&node_a, &node_b] {
        assert!(!node.log().contains(CLIENT_SECRET), "the secret in a log");
    }
    let read = node_b.api().get(&format!("/v1/policies/{}", team.id)).await;
    assert!(!read.text.contains(CLIENT_SECRET), "{}", read.text);
}

// === Terraform: hashes and write-only secrets ===

/// `basic_auth` keeps the hash (never a password) in state; `oidc.client_secret` is in no
/// state, no plan (text or JSON) and no log of Terraform, the provider or the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_holds_hashes_and_never_the_client_secret() {
    let edge = EdgeProcess::start_with(acceptance::EdgeOptions {
        zones: vec![ZONE.into()],
        ..acceptance::EdgeOptions::default()
    });
    let mut tf = acceptance::Terraform::new(&edge);
    tf.set_env("TF_LOG", "TRACE");
    let hash = bcrypt::hash("correct horse", 6).expect("bcrypt");
    // As a team would write it: the secret from an ephemeral variable (never in a plan file),
    // into the write-only attribute (never in state).
    let main_tf = |version: u32| {
        acceptance::provider::config(&format!(
            r#"
variable "client_secret" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

resource "postern_policy" "staging" {{
  name = "staging"
  basic_auth = {{
    users = {{
      ana = "{hash}"
    }}
  }}
}}

resource "postern_policy" "team" {{
  name = "team"
  oidc = {{
    issuer                = "https://id.example.com"
    client_id             = "{CLIENT_ID}"
    client_secret         = var.client_secret
    client_secret_version = {version}
    allowed_groups        = ["ops"]
    session_duration      = "8h"
  }}
}}
"#
        ))
    };
    tf.set_env("TF_VAR_client_secret", CLIENT_SECRET);
    tf.write("main.tf", &main_tf(1));
    tf.init();
    let plan = tf.plan(&[]);
    assert!(!plan.text.contains(CLIENT_SECRET), "the secret in the plan");
    assert!(
        !plan.json.to_string().contains(CLIENT_SECRET),
        "the secret in the plan JSON"
    );
    let applied = tf.apply().success();
    assert!(
        !applied.all().contains(CLIENT_SECRET),
        "the secret in Terraform's or the provider's log (TF_LOG=TRACE)"
    );
    assert!(!applied.all().contains("correct horse"));
    let state = tf.read("terraform.tfstate");
    assert!(!state.contains(CLIENT_SECRET), "the secret in the state");
    assert!(state.contains(&hash), "the hash is in the state");
    assert!(!state.contains("correct horse"), "a password in the state");
    let team = tf.resource("postern_policy.team");
    assert_eq!(team["oidc"]["client_secret"], Value::Null);
    assert_eq!(team["oidc"]["client_secret_version"], json!(1));
    assert_eq!(team["oidc"]["allowed_groups"], json!(["ops"]));
    let staging = tf.resource("postern_policy.staging");
    assert_eq!(staging["basic_auth"]["users"]["ana"], json!(hash));
    tf.plan(&[]).expect_empty();

    // The edge kept the secret (a new version is sent on change) and never shows it.
    let policies = edge.api().get("/v1/policies").await;
    assert!(!policies.text.contains(CLIENT_SECRET), "{}", policies.text);
    let rotated = "client-secret-rotated-4e5f";
    tf.set_env("TF_VAR_client_secret", rotated);
    tf.write("main.tf", &main_tf(2));
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_policy.team"), ["update"]);
    assert!(!plan.json.to_string().contains(rotated));
    let applied = tf.apply().success();
    assert!(!applied.all().contains(rotated));
    assert!(!tf.read("terraform.tfstate").contains(rotated));
    assert!(!edge.log().contains(CLIENT_SECRET) && !edge.log().contains(rotated));
}
