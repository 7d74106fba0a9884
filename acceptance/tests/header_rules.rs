//! Header rules on a policy (issue 27, must show 4), with a real edge, connector and origin,
//! on HTTP and HTTPS: request headers removed, set and added as the origin sees them; response
//! headers removed, set and added as the visitor sees them; `redirect_https` answering plain
//! HTTP with 308 to the same URL on https (and HTTPS served); HSTS on HTTPS responses only. A
//! rule that would change a framing header is refused.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use acceptance::fixture::create_tunnel;
use acceptance::visitor::{https_client, https_url};
use acceptance::{ConnectorProcess, EdgeProcess, TestOrigin, eventually};
use postern_schema::api::{HeaderEdits, HeaderRules, HostnameSpec, Hsts, PolicyMode, PolicySpec};
use postern_schema::ids::PolicyId;

const RULED: &str = "ruled.example.com";
const SECURE: &str = "secure.example.com";

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn policy(name: &str, rules: HeaderRules) -> PolicySpec {
    PolicySpec {
        basic_auth: None,
        oidc: None,
        name: name.into(),
        mode: PolicyMode::Enforce,
        allow_ips: vec![],
        deny_ips: vec![],
        allow_methods: vec![],
        allow_paths: vec![],
        rate_limit: None,
        jwt: None,
        rules: Some(rules),
    }
}

fn hostname(
    name: &str,
    origin: &TestOrigin,
    tunnel: postern_schema::ids::TunnelId,
    policy: PolicyId,
) -> HostnameSpec {
    HostnameSpec {
        tls_passthrough: None,
        hostname: name.into(),
        service: origin.url(),
        tunnel_id: Some(tunnel),
        routes: None,
        policy_ids: vec![policy],
        paths: Vec::new(),
        origin: None,
    }
}

/// A plain-HTTP client to the edge for `hosts` that shows redirects instead of following them.
fn http_client(edge: &EdgeProcess, hosts: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30));
    for host in hosts {
        builder = builder.resolve(host, edge.addrs.http);
    }
    builder.build().expect("http client")
}

/// Asks for `/request-headers` with the visitor's own `x-debug`, `x-env` and `x-tag`; returns
/// the response and what the origin saw.
async fn exchange(
    client: &reqwest::Client,
    url: &str,
) -> (reqwest::header::HeaderMap, HashMap<String, Vec<String>>) {
    let response = client
        .get(url)
        .header("x-debug", "1")
        .header("x-env", "dev")
        .header("x-tag", "visitor")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{url}");
    let headers = response.headers().clone();
    let seen: HashMap<String, Vec<String>> =
        serde_json::from_str(&response.text().await.expect("body")).expect("json");
    (headers, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_rules_edit_headers_redirect_to_https_and_add_hsts() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = create_tunnel(&client, "web", &[]).await;

    let edits = client
        .create_policy(&policy(
            "edits",
            HeaderRules {
                request_headers: Some(HeaderEdits {
                    remove: Some(vec!["X-Debug".into()]),
                    set: map(&[("X-Env", "prod")]),
                    add: map(&[("X-Tag", "edge")]),
                }),
                response_headers: Some(HeaderEdits {
                    remove: Some(vec!["X-Origin-Debug".into()]),
                    set: map(&[("Cache-Control", "no-store")]),
                    add: map(&[("X-Served-By", "postern")]),
                }),
                redirect_https: None,
                hsts: Some(Hsts {
                    max_age: 600,
                    include_subdomains: Some(true),
                }),
            },
        ))
        .await
        .expect("policy with rules");
    let secure = client
        .create_policy(&policy(
            "secure",
            HeaderRules {
                redirect_https: Some(true),
                hsts: Some(Hsts {
                    max_age: 31_536_000,
                    include_subdomains: None,
                }),
                ..HeaderRules::default()
            },
        ))
        .await
        .expect("redirecting policy");
    // The edge stores and returns the rules as written.
    assert_eq!(
        client.policy(edits.id).await.expect("read").spec.rules,
        edits.spec.rules
    );
    client
        .create_hostname(&hostname(RULED, &origin, tunnel.id, edits.id))
        .await
        .expect("hostname");
    client
        .create_hostname(&hostname(SECURE, &origin, tunnel.id, secure.id))
        .await
        .expect("hostname");
    let _connector = ConnectorProcess::run(tunnel.token.as_deref().expect("token"), 1, &[]);
    eventually(Duration::from_secs(20), "the connector", || async {
        (!client.tunnel_connections(tunnel.id).await.ok()?.is_empty()).then_some(())
    })
    .await;

    let http = http_client(&edge, &[RULED, SECURE]);
    let port = edge.addrs.http.port();
    for (scheme, client, url) in [
        (
            "http",
            http.clone(),
            format!("http://{RULED}:{port}/request-headers"),
        ),
        (
            "https",
            https_client(&edge, RULED).await,
            https_url(&edge, RULED, "/request-headers"),
        ),
    ] {
        let (headers, seen) = exchange(&client, &url).await;
        // At the origin: removed, set (replacing the visitor's), added (beside it).
        assert!(!seen.contains_key("x-debug"), "{scheme}: {seen:?}");
        assert_eq!(
            seen.get("x-env"),
            Some(&vec!["prod".to_string()]),
            "{scheme}"
        );
        assert_eq!(
            seen.get("x-tag"),
            Some(&vec!["visitor".to_string(), "edge".to_string()]),
            "{scheme}"
        );
        // At the visitor.
        assert!(
            headers.get("x-origin-debug").is_none(),
            "{scheme}: {headers:?}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{scheme}");
        assert_eq!(headers["x-served-by"], "postern", "{scheme}");
        let hsts = headers.get("strict-transport-security");
        match scheme {
            "https" => assert_eq!(
                hsts.map(|v| v.to_str().expect("ascii")),
                Some("max-age=600; includeSubDomains")
            ),
            _ => assert!(hsts.is_none(), "HSTS over plain HTTP: {hsts:?}"),
        }
    }

    // redirect_https: plain HTTP gets 308 to the same path and query on https, and the
    // origin never sees it; HTTPS is served, with HSTS.
    let hits = origin.hits();
    let response = http
        .get(format!("http://{SECURE}:{port}/request-headers?a=b"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("https://{SECURE}/request-headers?a=b").as_str()
    );
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    assert_eq!(
        origin.hits(),
        hits,
        "a redirected request reached the origin"
    );
    let response = https_client(&edge, SECURE)
        .await
        .get(https_url(&edge, SECURE, "/request-headers?a=b"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    // A rule may not touch a framing header.
    let refused = client
        .create_policy(&policy(
            "smuggle",
            HeaderRules {
                request_headers: Some(HeaderEdits {
                    set: map(&[("Transfer-Encoding", "chunked")]),
                    ..HeaderEdits::default()
                }),
                ..HeaderRules::default()
            },
        ))
        .await
        .expect_err("a framing header refused");
    assert_eq!(
        refused.path(),
        Some("/rules/request_headers/set/Transfer-Encoding"),
        "{refused}"
    );
}
