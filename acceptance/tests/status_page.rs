//! The edge's status page (issue 12), in headless Chromium against a real edge: two labelled
//! tunnels with connectors and one without, a hostname routed 90/10 between them behind an
//! enforcing policy and a report-mode one, and real visitors.
//!
//! - Must show 1 and 3, `the_status_page_shows_tunnels_routes_and_decisions_live`: a wrong
//!   token shows an error and no data; the admin token shows both tunnels with their labels and
//!   live connection counts (and the third as "no connector"), the routed hostname's two bars,
//!   the observed split after 200 requests near 90/10 (and equal to what the origin saw per
//!   connector), a blocked count that rises after a denied request and a would-block count
//!   after a request the report-mode policy dislikes. Screenshots at desktop and phone widths
//!   go to `target/test-artifacts/` (the README's is the desktop one). A TCP service is listed
//!   with its port and its refused connection.
//! - Must show 2, `the_status_page_reads_only_the_edge_api_with_the_bearer_token`: the page and
//!   its assets carry the strict headers and no data; every request the page makes goes to the
//!   edge's own API and is accepted (so carried the token), while those endpoints answer 401
//!   without it; the token is in the tab's session only; inline script is refused by the
//!   Content-Security-Policy and the page itself breaks none of it; and when the API refuses
//!   the token (or the session loses it) the page shows the sign-in form again, as it does on
//!   signing out.

#[path = "status_page/browser.rs"]
mod browser;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use acceptance::binaries::workspace_root;
use acceptance::fixture::create_tunnel;
use acceptance::visitor::http_url;
use acceptance::{Api, ConnectorProcess, EdgeProcess, Load, TestOrigin, eventually};
use browser::Browser;
use fantoccini::Locator;
use postern_schema::api::{HostnameSpec, Policy, Route};
use serde_json::{Value, json};

const HOST: &str = "split.example.com";
const REQUESTS: u64 = 200;
/// How long the page may take to show something: it refreshes every 3 s.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// The source address of the visitor the `guard` policy refuses.
const DENIED_SOURCE: &str = "127.0.0.66";

/// Where the tests write their artifacts: `<target dir>/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("test-artifacts")
}

async fn policy(api: &Api, body: Value) -> Policy {
    let response = api.post("/v1/policies", &body).await;
    assert_eq!(response.status, 201, "{}", response.text);
    serde_json::from_value(response.body).expect("policy")
}

fn route(release: &str, weight: u32) -> Route {
    Route {
        selector: BTreeMap::from([("release".to_string(), release.to_string())]),
        weight,
        max_error_rate: None,
    }
}

/// A visitor of `HOST` through the edge's HTTP listener, from `source`.
fn visitor(edge: &EdgeProcess, source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().expect("source address");
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .resolve(HOST, edge.addrs.http)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("visitor client")
}

/// Opens the page and signs in with `token` through the form, as a person would.
async fn sign_in(browser: &Browser, token: &str) {
    let client = browser.client();
    let input = client
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Css("#token"))
        .await
        .expect("the sign-in form");
    input.clear().await.expect("clear the token field");
    input.send_keys(token).await.expect("type the token");
    client
        .find(Locator::Css("#sign-in"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("sign in");
}

/// The text of the sign-in form's error, once the form shows one.
async fn login_error(browser: &Browser) -> String {
    browser
        .wait_for(
            PAGE_TIMEOUT,
            "the sign-in form with an error",
            "const login = document.getElementById('login');
             const error = document.getElementById('login-error');
             return !login.hidden && !error.hidden && error.textContent ? error.textContent : null;",
        )
        .await
}

/// Whether the page shows any of the edge's data.
async fn shows_data(browser: &Browser) -> bool {
    browser
        .eval(
            "return !document.getElementById('dashboard').hidden
                 || ['summary', 'tunnels', 'hostnames', 'policies', 'certificates', 'dns']
                      .some((id) => document.getElementById(id).childElementCount > 0);",
            Vec::new(),
        )
        .await
}

/// Saves a screenshot of the whole page at `width` to the artifacts directory.
async fn full_page_screenshot(browser: &Browser, width: u32, name: &str) -> PathBuf {
    browser.resize(width, 900).await;
    // Let the layout settle at the new width, then grow the window to the page's height.
    let height: u32 = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the layout at the new width",
            &format!(
                "return window.innerWidth === {width} || Math.abs(window.innerWidth - {width}) < 20
                     ? Math.ceil(document.documentElement.scrollHeight) : null;"
            ),
        )
        .await;
    browser.resize(width, height.clamp(600, 4000)).await;
    // The window's height may include more than the viewport: grow it by what is missing.
    let missing: u32 = browser
        .eval(
            "return Math.max(0, Math.ceil(document.documentElement.scrollHeight - window.innerHeight));",
            Vec::new(),
        )
        .await;
    if missing > 0 {
        browser
            .resize(width, (height + missing).clamp(600, 4000))
            .await;
    }
    let path = artifacts_dir().join(name);
    browser.screenshot(&path).await;
    eprintln!("status page screenshot: {}", path.display());
    path
}

/// A routed hostname's bars as the page shows them.
#[derive(Debug, serde::Deserialize)]
struct Bar {
    route: String,
    weight_share: f64,
    requests: u64,
    observed_share: f64,
    bars: usize,
}

const READ_BARS: &str = "
    const host = document.querySelector('[data-hostname=\"split.example.com\"]');
    if (!host) return null;
    return [...host.querySelectorAll('.route')].map((r) => ({
        route: r.dataset.route,
        weight_share: Number(r.dataset.weightShare),
        requests: Number(r.dataset.requests),
        observed_share: Number(r.dataset.observedShare),
        bars: r.querySelectorAll('.bar-weight .bar-fill, .bar-observed .bar-fill').length,
    }));";

/// One of the page's policy rows: `[allowed, blocked, would block]`.
async fn policy_counts(browser: &Browser, name: &str) -> [u64; 3] {
    browser
        .eval(
            "const row = document.querySelector(`[data-policy=\"${arguments[0]}\"]`);
             return row ? [Number(row.dataset.allowed), Number(row.dataset.blocked),
                           Number(row.dataset.wouldBlock)] : [0, 0, 0];",
            vec![json!(name)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_shows_tunnels_routes_and_decisions_live() {
    // The edge: stable (two connections) and canary (one) behind a 90/10 route, staging with
    // no connector behind a plain hostname; an enforcing and a report-mode policy; TCP
    // services on ports the system picks.
    let edge = EdgeProcess::start_with(acceptance::EdgeOptions {
        args: vec!["--tcp-ports".into(), "0".into()],
        ..acceptance::EdgeOptions::default()
    });
    let client = edge.client();
    let api = edge.api();
    let origin = TestOrigin::start().await;
    let stable = create_tunnel(&client, "stable", &[("release", "stable"), ("app", "shop")]).await;
    let canary = create_tunnel(&client, "canary", &[("release", "canary"), ("app", "shop")]).await;
    let staging = create_tunnel(&client, "staging", &[("release", "staging")]).await;
    let guard = policy(
        &api,
        json!({"name": "guard", "deny_ips": [format!("{DENIED_SOURCE}/32")]}),
    )
    .await;
    let audit = policy(
        &api,
        json!({"name": "audit", "mode": "report", "allow_methods": ["GET", "HEAD"]}),
    )
    .await;
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: HOST.into(),
            service: origin.url(),
            tunnel_id: None,
            routes: Some(vec![route("stable", 90), route("canary", 10)]),
            policy_ids: vec![guard.id, audit.id],
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("routed hostname");
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: "staging.example.com".into(),
            service: origin.url(),
            tunnel_id: Some(staging.id),
            routes: None,
            policy_ids: vec![guard.id],
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("staging hostname");
    let _stable_connector = ConnectorProcess::run(stable.token.as_deref().expect("token"), 2, &[]);
    let canary_connector = ConnectorProcess::run(canary.token.as_deref().expect("token"), 1, &[]);
    for (tunnel, count) in [(stable.id, 2), (canary.id, 1)] {
        eventually(Duration::from_secs(20), "the connectors", || async {
            (client.tunnel_connections(tunnel).await.ok()?.len() == count).then_some(())
        })
        .await;
    }
    let canary_id = canary_connector.connector_id().await;

    let browser = Browser::start(1280, 900).await;
    browser
        .client()
        .goto(&format!("{}/ui", edge.api_url()))
        .await
        .expect("open the status page");

    // A wrong token: an error, and no data.
    sign_in(&browser, "not-the-admin-token").await;
    let error = login_error(&browser).await;
    assert!(error.contains("did not accept"), "{error}");
    assert!(
        !shows_data(&browser).await,
        "data shown after a wrong token"
    );
    let text: String = browser
        .eval("return document.body.innerText;", Vec::new())
        .await;
    for secret in ["stable", "canary", HOST] {
        assert!(
            !text.contains(secret),
            "{secret:?} shown without a token:\n{text}"
        );
    }

    // The sign-in screen says a viewer token is enough; with one, the page shows everything:
    // the tunnels, with their labels and live connection counts.
    let hint: String = browser
        .eval(
            "return document.getElementById('login-hint').innerText;",
            Vec::new(),
        )
        .await;
    assert!(hint.contains("viewer token is enough"), "{hint}");
    let viewer = api
        .post(
            "/v1/tokens",
            &json!({"name": "status-page", "role": "viewer"}),
        )
        .await;
    assert_eq!(viewer.status, 201, "{}", viewer.text);
    let viewer_token = viewer.body["secret"].as_str().expect("secret").to_string();
    sign_in(&browser, &viewer_token).await;
    let tunnels: Vec<(String, u64, String)> = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the three tunnels with their connections",
            "const rows = [...document.querySelectorAll('[data-tunnel]')].map((row) =>
                 [row.dataset.tunnel, Number(row.dataset.connections), row.innerText]);
             const counts = Object.fromEntries(rows.map(([name, n]) => [name, n]));
             return counts.stable === 2 && counts.canary === 1 && counts.staging === 0 ? rows : null;",
        )
        .await;
    for (name, _, text) in &tunnels {
        let release = format!("release={name}");
        assert!(text.contains(&release), "{name}'s labels: {text}");
        if name == "staging" {
            assert!(text.contains("no connector"), "{text}");
        } else {
            assert!(
                text.contains("127.0.0.1:"),
                "{name}'s connector address: {text}"
            );
        }
    }
    assert!(!shows_banner(&browser).await);

    // The routed hostname's two routes, each with a weight bar and an observed bar.
    let bars: Vec<Bar> = browser
        .wait_for(PAGE_TIMEOUT, "the routed hostname's bars", READ_BARS)
        .await;
    assert_eq!(bars.len(), 2, "{bars:?}");
    assert_eq!(bars[0].route, "release=stable");
    assert_eq!(bars[1].route, "release=canary");
    assert!((bars[0].weight_share - 90.0).abs() < 0.01, "{bars:?}");
    assert!((bars[1].weight_share - 10.0).abs() < 0.01, "{bars:?}");
    assert!(bars.iter().all(|b| b.bars == 2), "{bars:?}");

    // 200 requests: the observed split is near 90/10, and it is what the origin saw.
    let http = visitor(&edge, "127.0.0.1");
    let url = http_url(&edge, HOST, "/hello");
    Load::get(&http, &url)
        .requests(REQUESTS as usize)
        .concurrency(16)
        .run()
        .await
        .expect_all_ok();
    let bars: Vec<Bar> = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the 200 requests on the page",
            &format!(
                "const bars = (() => {{ {READ_BARS} }})();
                 return bars && bars.reduce((n, b) => n + b.requests, 0) === {REQUESTS} ? bars : null;"
            ),
        )
        .await;
    eprintln!("the page's split after {REQUESTS} requests: {bars:?}");
    let canary_seen = origin
        .hits_by_connector()
        .get(&canary_id)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        bars[1].requests, canary_seen,
        "the page and the origin disagree"
    );
    assert_eq!(bars[0].requests + bars[1].requests, REQUESTS);
    // Binomial(200, 0.1): at most 4 or at least 44 canary requests happen with a chance of
    // about 1 in 100,000 (9e-6), so 2–22 % cannot flake while still telling 90/10 from 50/50.
    assert!(
        (2.0..=22.0).contains(&bars[1].observed_share),
        "the canary's observed share is {:.1}% at 90/10",
        bars[1].observed_share
    );
    assert!(
        (bars[0].observed_share + bars[1].observed_share - 100.0).abs() < 0.05,
        "{bars:?}"
    );

    // A denied request: the guard's blocked count rises; the request never reached the origin.
    let [allowed, blocked, _] = policy_counts(&browser, "guard").await;
    assert_eq!((allowed, blocked), (REQUESTS, 0));
    let hits = origin.hits();
    let refused = visitor(&edge, DENIED_SOURCE)
        .get(&url)
        .send()
        .await
        .expect("denied request");
    assert_eq!(refused.status(), 403);
    assert_eq!(origin.hits(), hits);
    let reasons: String = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the guard's blocked count to rise",
            "const row = document.querySelector('[data-policy=\"guard\"]');
             return row && Number(row.dataset.blocked) === 1 ? row.innerText : null;",
        )
        .await;
    assert!(reasons.contains("ip 1"), "{reasons}");

    // A POST, which the report-mode audit would refuse: counted, and let through.
    let posted = http
        .post(http_url(&edge, HOST, "/echo"))
        .body("hello")
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), 200);
    let would_block: u64 = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the audit's would-block count",
            "const row = document.querySelector('[data-policy=\"audit\"]');
             return row && Number(row.dataset.wouldBlock) === 1 ? Number(row.dataset.wouldBlock) : null;",
        )
        .await;
    assert_eq!(would_block, 1);
    assert_eq!(
        policy_counts(&browser, "audit").await[1],
        0,
        "report mode blocks nothing"
    );

    // The DNS records the edge answers, as the API lists them.
    let status = api.get("/v1/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    let dns_rows: u64 = browser
        .eval(
            "return document.querySelectorAll('#dns tbody tr').length;",
            Vec::new(),
        )
        .await;
    let records = status.body["dns"].as_array().map_or(0, Vec::len) as u64;
    assert!(records >= 6, "{}", status.text);
    assert_eq!(dns_rows, records);
    let dns_text: String = browser
        .eval(
            "return document.getElementById('dns').innerText;",
            Vec::new(),
        )
        .await;
    assert!(
        dns_text.contains("tunnel=canary app=shop release=canary"),
        "{dns_text}"
    );

    // The certificates HTTPS serves: an upload, and the visitors' CA's for both hostnames.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["www.example.com".to_string()]).expect("params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(90);
    let cert = params.self_signed(&key).expect("certificate");
    let uploaded = api
        .post(
            "/v1/certificates",
            &json!({"certificate_pem": cert.pem(), "private_key_pem": key.serialize_pem()}),
        )
        .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    let listed = api.get("/v1/certificates").await;
    let items = listed.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{}", listed.text);
    let rows: Vec<(String, String, String)> = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the three certificates",
            "const rows = [...document.querySelectorAll('#certificates [data-certificate]')]
                 .map((r) => [r.dataset.certificate, r.dataset.source, r.dataset.status]);
             return rows.length === 3 ? rows : null;",
        )
        .await;
    assert!(
        rows.contains(&("www.example.com".into(), "uploaded".into(), "valid".into())),
        "{rows:?}"
    );
    for host in [HOST, "staging.example.com"] {
        assert!(
            rows.contains(&(host.into(), "edge_ca".into(), "valid".into())),
            "{rows:?}"
        );
    }
    let certificates_text: String = browser
        .eval(
            "return document.getElementById('certificates').innerText;",
            Vec::new(),
        )
        .await;
    assert!(
        certificates_text.contains("visitors' CA"),
        "{certificates_text}"
    );
    assert!(certificates_text.contains("days"), "{certificates_text}");
    assert!(
        !certificates_text.contains("PRIVATE KEY"),
        "{certificates_text}"
    );

    // A TCP service: listed with where it listens, and a connection it could not carry
    // (its tunnel has no connector) counted as refused.
    let ssh = api
        .post(
            "/v1/tcp-services",
            &json!({"name": "ssh", "service": "tcp://127.0.0.1:22", "tunnel_id": staging.id}),
        )
        .await;
    assert_eq!(ssh.status, 201, "{}", ssh.text);
    let listen = ssh.body["listen"].as_str().expect("listen").to_string();
    let port: std::net::SocketAddr = listen.parse().expect("an address");
    let mut refused = tokio::net::TcpStream::connect(port)
        .await
        .expect("the edge accepts");
    let mut nothing = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut refused, &mut nothing),
    )
    .await;
    let row: (String, String) = browser
        .wait_for(
            PAGE_TIMEOUT,
            "the TCP service with one refused connection",
            "const row = document.querySelector('#tcp-services [data-tcp-service=\"ssh\"]');
             return row && row.dataset.refused === '1'
               ? [row.dataset.connections, row.innerText] : null;",
        )
        .await;
    assert_eq!(row.0, "0");
    assert!(row.1.contains(&listen), "{row:?}");

    // Readable at a phone's width: nothing wider than the screen.
    full_page_screenshot(&browser, 390, "status-page-phone.png").await;
    let overflow: f64 = browser
        .eval(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            Vec::new(),
        )
        .await;
    assert!(
        overflow <= 0.0,
        "the page is {overflow} px wider than a phone"
    );
    full_page_screenshot(&browser, 1280, "status-page.png").await;
    browser.close().await;
}

/// Whether the page shows its "not up to date" banner.
async fn shows_banner(browser: &Browser) -> bool {
    browser
        .eval(
            "return !document.getElementById('banner').hidden;",
            Vec::new(),
        )
        .await
}

/// The requests the page made (Resource Timing): `[url, status]`.
const PAGE_REQUESTS: &str = "
    return performance.getEntriesByType('resource').map((e) => [e.name, e.responseStatus]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_reads_only_the_edge_api_with_the_bearer_token() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let web = create_tunnel(&client, "web", &[("release", "stable")]).await;
    let base = edge.api_url();

    // The page and its assets: no token needed, no data in them, strict headers.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for (path, content_type) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        let body = response.text().await.expect("body");
        assert!(!body.contains(&web.id.to_string()) && !body.contains(&edge.admin_token));
    }
    // The API endpoints the page reads answer 401 without the token.
    let anonymous = Api::new(&base, None);
    let endpoints = [
        "/v1/tunnels".to_string(),
        "/v1/hostnames".to_string(),
        "/v1/policies".to_string(),
        "/v1/status".to_string(),
        "/v1/certificates".to_string(),
        format!("/v1/tunnels/{}/connections", web.id),
    ];
    for path in &endpoints {
        assert_eq!(anonymous.get(path).await.status, 401, "{path}");
        assert_eq!(edge.api().get(path).await.status, 200, "{path}");
    }

    let browser = Browser::start(1024, 768).await;
    let page = format!("{base}/ui");
    browser.client().goto(&page).await.expect("open the page");
    // Watch for anything the Content-Security-Policy refuses, from here on.
    let _: Value = browser
        .eval(
            "window.violations = [];
             document.addEventListener('securitypolicyviolation',
                 (e) => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));
             return null;",
            Vec::new(),
        )
        .await;
    sign_in(&browser, &edge.admin_token).await;
    browser
        .wait_for::<String>(
            PAGE_TIMEOUT,
            "the tunnel web on the page",
            "const row = document.querySelector('[data-tunnel=\"web\"]');
             return row ? row.innerText : null;",
        )
        .await;
    // Two refreshes more, so every endpoint is read more than once.
    let before: usize = browser
        .eval(
            "return performance.getEntriesByType('resource').length;",
            Vec::new(),
        )
        .await;
    let at_least = before + 10;
    browser
        .wait_for::<usize>(
            PAGE_TIMEOUT,
            "two more refreshes",
            &format!(
                "const n = performance.getEntriesByType('resource').length;
                 return n >= {at_least} ? n : null;"
            ),
        )
        .await;

    // Every request went to the edge's API (or the page's own assets) and was accepted: each
    // carried the token, since the same endpoints refuse a request without it.
    let requests: Vec<(String, u16)> = browser.eval(PAGE_REQUESTS, Vec::new()).await;
    let mut read = std::collections::BTreeSet::new();
    for (url, status) in &requests {
        let path = url
            .strip_prefix(&base)
            .unwrap_or_else(|| panic!("the page requested {url}, not the edge's API at {base}"));
        assert!(
            !url.contains(&edge.admin_token),
            "the token in a URL: {url}"
        );
        if path.starts_with("/ui/") {
            continue;
        }
        assert!(
            endpoints.iter().any(|e| e == path),
            "unexpected request {path}"
        );
        assert_eq!(*status, 200, "{path} was not accepted");
        read.insert(path.to_string());
    }
    // (The tunnel has no connector, so the page has no connections to read.)
    assert_eq!(read.len(), 5, "endpoints read: {read:?}");

    // The token lives in this tab's session only: not in a cookie, the URL or local storage.
    let (stored, cookie, url, local): (String, String, String, u64) = browser
        .eval(
            "return [sessionStorage.getItem('postern.token'), document.cookie, location.href,
                     localStorage.length];",
            Vec::new(),
        )
        .await;
    assert_eq!(stored, edge.admin_token);
    assert_eq!(
        (cookie.as_str(), url.as_str(), local),
        ("", page.as_str(), 0)
    );

    // The page works under its Content-Security-Policy (its style sheet applies, nothing was
    // refused), and the policy does refuse inline script.
    let (radius, violations): (String, Vec<String>) = browser
        .eval(
            "return [getComputedStyle(document.querySelector('.panel')).borderTopLeftRadius,
                     window.violations];",
            Vec::new(),
        )
        .await;
    assert_eq!(radius, "10px", "app.css did not apply");
    assert!(violations.is_empty(), "refused by the CSP: {violations:?}");
    let inline_ran: bool = browser
        .eval(
            "const s = document.createElement('script');
             s.textContent = 'window.inlineRan = true;';
             document.body.append(s);
             return window.inlineRan === true;",
            Vec::new(),
        )
        .await;
    assert!(!inline_ran, "inline script ran despite the CSP");
    browser
        .wait_for::<Vec<String>>(
            PAGE_TIMEOUT,
            "the CSP to report the inline script",
            "return window.violations.length > 0 ? window.violations : null;",
        )
        .await;

    // The API refuses the token the page holds (as after a token rotation): the page answers
    // 401 with the sign-in form again, forgets the token and shows no data.
    let _: Value = browser
        .eval(
            "sessionStorage.setItem('postern.token', 'a-rotated-token'); return null;",
            Vec::new(),
        )
        .await;
    let error = login_error(&browser).await;
    assert!(error.contains("401"), "{error}");
    assert!(!shows_data(&browser).await);
    let requests: Vec<(String, u16)> = browser.eval(PAGE_REQUESTS, Vec::new()).await;
    assert!(
        requests.iter().any(|(_, status)| *status == 401),
        "{requests:?}"
    );
    let forgotten: Option<String> = browser
        .eval(
            "return sessionStorage.getItem('postern.token');",
            Vec::new(),
        )
        .await;
    assert_eq!(forgotten, None);

    // Signed in again, then the session loses the token: the sign-in form again.
    sign_in(&browser, &edge.admin_token).await;
    browser
        .wait_for::<bool>(
            PAGE_TIMEOUT,
            "the data again",
            "return document.querySelector('[data-tunnel=\"web\"]') ? true : null;",
        )
        .await;
    let _: Value = browser
        .eval("sessionStorage.clear(); return null;", Vec::new())
        .await;
    let error = login_error(&browser).await;
    assert!(error.contains("sign in again"), "{error}");
    assert!(!shows_data(&browser).await);

    // Signing out forgets the token and the data at once.
    sign_in(&browser, &edge.admin_token).await;
    browser
        .wait_for::<bool>(
            PAGE_TIMEOUT,
            "the data again",
            "return document.querySelector('[data-tunnel=\"web\"]') ? true : null;",
        )
        .await;
    browser
        .client()
        .find(Locator::Css("#sign-out"))
        .await
        .expect("the sign-out button")
        .click()
        .await
        .expect("sign out");
    let (login_shown, stored): (bool, Option<String>) = browser
        .eval(
            "return [!document.getElementById('login').hidden,
                     sessionStorage.getItem('postern.token')];",
            Vec::new(),
        )
        .await;
    assert!(login_shown);
    assert_eq!(stored, None);
    assert!(!shows_data(&browser).await);
    browser.close().await;
}
