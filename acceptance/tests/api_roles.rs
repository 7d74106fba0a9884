//! Scoped API tokens against a real edge. Must-show 2: for every operation of
//! `schema/openapi.json` that needs a token, an admin, an editor and a viewer token each get
//! the answer the contract gives their role (the operation's 2xx, 403, or 404 for an object
//! that does not exist), a viewer cannot read a tunnel's token, an expired token gets 401, and
//! a token revoked through one node is refused by another node on the same PostgreSQL within
//! a second. Must-show 6: twenty wrong tokens from one address get 429 after the tenth, while
//! another address's right token still gets 200. Also: existing admin tokens stay admin
//! tokens, and no answer carries a policy's HS256 secret.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use acceptance::binaries::workspace_root;
use acceptance::pki::TestCa;
use acceptance::{Api, ApiResponse, EdgeOptions, EdgeProcess, PostgresServer, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const ROLES: [&str; 3] = ["admin", "editor", "viewer"];

/// The least role each operation needs, as the contract (and SECURITY.md) words it.
fn needs(operation: &str) -> &'static str {
    match operation {
        "listApiTokens" | "createApiToken" | "getApiToken" | "deleteApiToken" => "admin",
        "getTunnelToken" | "createEnrollmentToken" => "editor",
        op if ["create", "replace", "delete"]
            .iter()
            .any(|verb| op.starts_with(verb)) =>
        {
            "editor"
        }
        _ => "viewer",
    }
}

fn allows(role: &str, needed: &str) -> bool {
    let rank = |r: &str| ROLES.iter().position(|x| *x == r).unwrap_or(usize::MAX);
    rank(role) <= rank(needed)
}

/// Every operation of openapi.json that needs a token.
fn secured_operations() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join("schema/openapi.json")).expect("doc");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let mut ops = BTreeSet::new();
    for (_, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            if method == "parameters" || op.get("security") == Some(&json!([])) {
                continue;
            }
            ops.insert(op["operationId"].as_str().expect("operationId").to_string());
        }
    }
    ops
}

/// One request of the matrix and the status it gets when the role allows it.
struct Request {
    method: Method,
    path: String,
    body: Option<Value>,
    ok: u16,
}

fn request(method: Method, path: impl Into<String>, body: Option<Value>, ok: u16) -> Request {
    Request {
        method,
        path: path.into(),
        body,
        ok,
    }
}

/// What the matrix works on: objects made with the admin token.
struct Fixtures {
    admin: Api,
    tunnel: String,
    policy: String,
    hostname: String,
}

impl Fixtures {
    async fn make(admin: &Api) -> Self {
        let tunnel = admin.post("/v1/tunnels", &json!({"name": "web"})).await;
        assert_eq!(tunnel.status, 201, "{}", tunnel.text);
        let tunnel = tunnel.body["id"].as_str().expect("id").to_string();
        let policy = admin.post("/v1/policies", &json!({"name": "open"})).await;
        assert_eq!(policy.status, 201, "{}", policy.text);
        let hostname = "app.example.com".to_string();
        let created = admin
            .post(
                "/v1/hostnames",
                &json!({"hostname": hostname, "service": "http_status:204", "tunnel_id": tunnel}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        Self {
            admin: admin.clone(),
            tunnel,
            policy: policy.body["id"].as_str().expect("id").to_string(),
            hostname,
        }
    }

    /// A fresh object for a delete, made by the admin; its path.
    async fn fresh(&self, collection: &str, n: usize) -> String {
        let body = match collection {
            "tunnels" => json!({"name": format!("gone-{n}")}),
            "policies" => json!({"name": format!("gone-{n}")}),
            "hostnames" => json!({
                "hostname": format!("gone-{n}.example.com"),
                "service": "http_status:204",
                "tunnel_id": self.tunnel,
            }),
            "tokens" => json!({"name": format!("gone-{n}"), "role": "viewer"}),
            "certificates" => upload(&format!("gone-{n}.example.com")),
            other => panic!("no fresh {other}"),
        };
        let made = self.admin.post(&format!("/v1/{collection}"), &body).await;
        assert_eq!(made.status, 201, "{}", made.text);
        let id = made.body["id"]
            .as_str()
            .or_else(|| made.body["hostname"].as_str())
            .expect("id");
        format!("/v1/{collection}/{id}")
    }

    /// The request that exercises `operation` (made unique by `n` where it creates).
    async fn request(&self, operation: &str, n: usize) -> Request {
        let (t, p, h) = (&self.tunnel, &self.policy, &self.hostname);
        match operation {
            "metrics" => request(Method::GET, "/metrics", None, 200),
            "getEdge" => request(Method::GET, "/v1/edge", None, 200),
            "getStatus" => request(Method::GET, "/v1/status", None, 200),
            "getRollout" => request(Method::GET, "/v1/rollout", None, 200),
            "listTunnels" => request(Method::GET, "/v1/tunnels", None, 200),
            "createTunnel" => request(
                Method::POST,
                "/v1/tunnels",
                Some(json!({"name": format!("new-{n}")})),
                201,
            ),
            "getTunnel" => request(Method::GET, format!("/v1/tunnels/{t}"), None, 200),
            "replaceTunnel" => request(
                Method::PUT,
                format!("/v1/tunnels/{t}"),
                Some(json!({"name": "web", "labels": {"n": n.to_string()}})),
                200,
            ),
            "deleteTunnel" => request(Method::DELETE, self.fresh("tunnels", n).await, None, 204),
            "getTunnelToken" => request(Method::GET, format!("/v1/tunnels/{t}/token"), None, 200),
            "listTunnelConnections" => request(
                Method::GET,
                format!("/v1/tunnels/{t}/connections"),
                None,
                200,
            ),
            "createEnrollmentToken" => request(
                Method::POST,
                format!("/v1/tunnels/{t}/enrollment-tokens"),
                Some(json!({})),
                201,
            ),
            "listPolicies" => request(Method::GET, "/v1/policies", None, 200),
            "createPolicy" => request(
                Method::POST,
                "/v1/policies",
                Some(json!({"name": format!("new-{n}")})),
                201,
            ),
            "getPolicy" => request(Method::GET, format!("/v1/policies/{p}"), None, 200),
            "replacePolicy" => request(
                Method::PUT,
                format!("/v1/policies/{p}"),
                Some(json!({"name": "open", "mode": "report"})),
                200,
            ),
            "deletePolicy" => request(Method::DELETE, self.fresh("policies", n).await, None, 204),
            "listHostnames" => request(Method::GET, "/v1/hostnames", None, 200),
            "createHostname" => request(
                Method::POST,
                "/v1/hostnames",
                Some(json!({
                    "hostname": format!("new-{n}.example.com"),
                    "service": "http_status:204",
                    "tunnel_id": t,
                })),
                201,
            ),
            "getHostname" => request(Method::GET, format!("/v1/hostnames/{h}"), None, 200),
            "replaceHostname" => request(
                Method::PUT,
                format!("/v1/hostnames/{h}"),
                Some(json!({"hostname": h, "service": "http_status:200", "tunnel_id": t})),
                200,
            ),
            "deleteHostname" => {
                request(Method::DELETE, self.fresh("hostnames", n).await, None, 204)
            }
            "listApiTokens" => request(Method::GET, "/v1/tokens", None, 200),
            "createApiToken" => request(
                Method::POST,
                "/v1/tokens",
                Some(json!({"name": format!("new-{n}"), "role": "viewer"})),
                201,
            ),
            "getApiToken" => {
                let path = self.fresh("tokens", n).await;
                request(Method::GET, path, None, 200)
            }
            "deleteApiToken" => request(Method::DELETE, self.fresh("tokens", n).await, None, 204),
            "listCertificates" => request(Method::GET, "/v1/certificates", None, 200),
            "createCertificate" => request(
                Method::POST,
                "/v1/certificates",
                Some(upload(&format!("new-{n}.example.com"))),
                201,
            ),
            "getCertificate" => {
                let path = self.fresh("certificates", n).await;
                request(Method::GET, path, None, 200)
            }
            "deleteCertificate" => {
                let path = self.fresh("certificates", n).await;
                request(Method::DELETE, path, None, 204)
            }
            other => panic!("the role matrix has no request for {other}: add one"),
        }
    }
}

/// An upload of a certificate for `name` and its key (signed by a CA of the test's own).
fn upload(name: &str) -> Value {
    let cert = TestCa::new("operator's CA").server_cert(&[name]);
    json!({"certificate_pem": cert.cert_pem, "private_key_pem": cert.key_pem})
}

/// The same request on an object that does not exist, for the operations that name one.
fn missing(operation: &str) -> Option<Request> {
    let nobody = "00000000-0000-4000-8000-000000000000";
    let (method, path) = match operation {
        "getTunnel" => (Method::GET, format!("/v1/tunnels/{nobody}")),
        "deleteTunnel" => (Method::DELETE, format!("/v1/tunnels/{nobody}")),
        "getTunnelToken" => (Method::GET, format!("/v1/tunnels/{nobody}/token")),
        "getPolicy" => (Method::GET, format!("/v1/policies/{nobody}")),
        "deletePolicy" => (Method::DELETE, format!("/v1/policies/{nobody}")),
        "getHostname" => (Method::GET, "/v1/hostnames/nobody.example.com".into()),
        "deleteHostname" => (Method::DELETE, "/v1/hostnames/nobody.example.com".into()),
        "getApiToken" => (Method::GET, format!("/v1/tokens/{nobody}")),
        "deleteApiToken" => (Method::DELETE, format!("/v1/tokens/{nobody}")),
        "getCertificate" => (Method::GET, format!("/v1/certificates/{nobody}")),
        "deleteCertificate" => (Method::DELETE, format!("/v1/certificates/{nobody}")),
        _ => return None,
    };
    Some(request(method, path, None, 404))
}

async fn send(api: &Api, r: &Request) -> ApiResponse {
    api.send(r.method.clone(), &r.path, r.body.as_ref(), None)
        .await
}

/// A token of `role` made through the API with the admin token.
async fn token(admin: &Api, name: &str, role: &str, expires_at: Option<&str>) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    let made = admin.post("/v1/tokens", &body).await;
    assert_eq!(made.status, 201, "{}", made.text);
    (
        made.body["id"].as_str().expect("id").to_string(),
        made.body["secret"].as_str().expect("secret").to_string(),
    )
}

#[tokio::test]
async fn every_role_gets_the_contracts_answer_on_every_operation() {
    let edge = EdgeProcess::start();
    let admin = edge.api();
    let fixtures = Fixtures::make(&admin).await;
    let mut apis = Vec::new();
    for role in ROLES {
        let secret = if role == "admin" {
            // The admin token made on first start is an admin token: existing tokens keep
            // their power.
            edge.admin_token.clone()
        } else {
            token(&admin, role, role, None).await.1
        };
        apis.push((role, admin.with_token(Some(&secret))));
    }

    let operations = secured_operations();
    assert!(operations.len() >= 26, "{operations:?}");
    let mut n = 0;
    let mut wrong = Vec::new();
    for operation in &operations {
        let needed = needs(operation);
        for (role, api) in &apis {
            n += 1;
            let r = fixtures.request(operation, n).await;
            let answer = send(api, &r).await;
            let expected = if allows(role, needed) { r.ok } else { 403 };
            if answer.status != expected {
                wrong.push(format!(
                    "{operation} as {role}: {} {} got {} ({}), expected {expected}",
                    r.method, r.path, answer.status, answer.text
                ));
            } else if expected == 403 && answer.error_code() != Some("forbidden") {
                wrong.push(format!("{operation} as {role}: 403 without code forbidden"));
            }
            if let Some(r) = missing(operation) {
                let answer = send(api, &r).await;
                let expected = if allows(role, needed) { 404 } else { 403 };
                if answer.status != expected {
                    wrong.push(format!(
                        "{operation} as {role} on nothing: {} {} got {}, expected {expected}",
                        r.method, r.path, answer.status
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!(
        "role matrix: {} operations x {} roles, each answered as the contract says",
        operations.len(),
        ROLES.len()
    );

    // In words: a viewer cannot read a tunnel's token, and is told why.
    let viewer = &apis[2].1;
    let refused = viewer
        .get(&format!("/v1/tunnels/{}/token", fixtures.tunnel))
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("viewer"), "{}", refused.text);
    assert!(!refused.text.contains("postern1."), "{}", refused.text);
}

#[tokio::test]
async fn an_expired_token_gets_401_and_no_answer_carries_an_hs256_secret() {
    let edge = EdgeProcess::start();
    let admin = edge.api();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .replace_nanosecond(0)
        .expect("whole second")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (_, secret) = token(&admin, "short", "viewer", Some(&soon)).await;
    let short = admin.with_token(Some(&secret));
    assert_eq!(short.get("/v1/tunnels").await.status, 200);
    eventually(Duration::from_secs(10), "the token to expire", || async {
        let answer = short.get("/v1/tunnels").await;
        (answer.status == 401).then_some(answer)
    })
    .await;
    let answer = short.get("/v1/tunnels").await;
    assert!(answer.text.contains("expired"), "{}", answer.text);

    // A past expiry is refused at creation.
    let past = admin
        .post(
            "/v1/tokens",
            &json!({"name": "late", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past.status, 400);
    assert_eq!(past.error_path(), Some("/expires_at"));

    // jwt.hs256_secret is write-only: stored and used, never answered.
    let secret = "a-shared-secret-of-enough-length-7f3a";
    let policy = admin
        .post(
            "/v1/policies",
            &json!({"name": "jwt", "jwt": {"hs256_secret": secret, "issuer": "me"}}),
        )
        .await;
    assert_eq!(policy.status, 201);
    let id = policy.body["id"].as_str().expect("id").to_string();
    for answer in [
        policy,
        admin.get(&format!("/v1/policies/{id}")).await,
        admin.get("/v1/policies").await,
        admin
            .put(
                &format!("/v1/policies/{id}"),
                &json!({"name": "jwt", "jwt": {"hs256_secret": secret, "issuer": "you"}}),
                None,
            )
            .await,
    ] {
        assert!(answer.status < 300, "{}", answer.text);
        assert!(!answer.text.contains(secret), "{}", answer.text);
        assert!(!answer.text.contains("hs256_secret"), "{}", answer.text);
    }
}

#[tokio::test]
async fn wrong_tokens_from_one_address_get_429_after_the_tenth_and_others_are_served() {
    let edge = EdgeProcess::start();
    let ca = edge.api_ca_pem();
    let attacker_ip: IpAddr = "127.0.0.2".parse().expect("ip");
    let neighbour_ip: IpAddr = "127.0.0.1".parse().expect("ip");
    let attacker = edge
        .api()
        .with_token(Some("pst_not-a-token-of-this-edge"))
        .from_address(attacker_ip, ca.as_deref());
    let neighbour = edge.api().from_address(neighbour_ip, ca.as_deref());

    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(attacker.get("/v1/tunnels").await.status);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 10], "{statuses:?}");
    let limited = attacker.get("/v1/tunnels").await;
    assert_eq!(limited.error_code(), Some("too_many_requests"));
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=6).contains(&wait), "Retry-After {wait}");
    // The throttled address is refused even with the right token: guessing stays throttled.
    let right_from_attacker = edge.api().from_address(attacker_ip, ca.as_deref());
    assert_eq!(right_from_attacker.get("/v1/tunnels").await.status, 429);

    assert_eq!(neighbour.get("/v1/tunnels").await.status, 200);
    // Needing no token, /healthz and /ready answer the throttled address too.
    assert_eq!(attacker.get("/healthz").await.status, 200);
    assert_eq!(attacker.get("/ready").await.status, 200);
}

#[tokio::test]
async fn a_token_revoked_through_one_node_is_refused_by_the_other_within_a_second() {
    let postgres = PostgresServer::start();
    let node = || {
        EdgeProcess::start_with(EdgeOptions {
            args: vec!["--store".into(), postgres.url()],
            env: vec![(
                "POSTERN_ADMIN_TOKEN".into(),
                "pst_shared-admin-token-of-the-cluster".into(),
            )],
            ..EdgeOptions::default()
        })
    };
    let (a, b) = (node(), node());
    let (id, secret) = token(&a.api(), "ci", "editor", None).await;
    let on_b = b.api().with_token(Some(&secret));
    // Heard of through the store's feed, not by polling.
    eventually(
        Duration::from_secs(1),
        "node B to accept the new token",
        || async { (on_b.get("/v1/tunnels").await.status == 200).then_some(()) },
    )
    .await;
    let created = on_b.post("/v1/tunnels", &json!({"name": "from-b"})).await;
    assert_eq!(created.status, 201, "an editor token writes through node B");

    let revoked_at = Instant::now();
    assert_eq!(
        a.api()
            .delete(&format!("/v1/tokens/{id}"), None)
            .await
            .status,
        204
    );
    eventually(
        Duration::from_secs(1),
        "node B to refuse the revoked token",
        || async { (on_b.get("/v1/tunnels").await.status == 401).then_some(()) },
    )
    .await;
    println!(
        "a token revoked through node A was refused by node B after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(
        a.api()
            .with_token(Some(&secret))
            .get("/v1/tunnels")
            .await
            .status,
        401
    );
}
