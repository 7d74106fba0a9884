//! Certificates browsers trust (issue 24), against a real ACME server: Debian's `pebble`
//! (Let's Encrypt's test server) on loopback, validating through the edge's own listeners and
//! resolving every name through the edge's own DNS. Every handshake below is ordinary
//! verification (rustls with webpki: chain to Pebble's root, name, validity).
//!
//! - Must show 1: `a_hostname_applied_by_terraform_is_served_*` (one per challenge: tls-alpn-01,
//!   http-01, dns-01, each within 30 s of the apply), and
//!   `a_wildcard_by_dns_01_serves_two_hostnames`.
//! - Must show 2: `a_second_node_serves_the_same_certificate_without_ordering_one`.
//! - Must show 3: `renewal_replaces_the_certificate_without_a_failed_handshake_and_an_acme_outage_keeps_the_old_one`.
//! - Must show 4: `an_upload_wins_over_acme_and_its_key_is_never_shown` and
//!   `bad_uploads_are_refused_with_a_pointer`.
//! - Must show 5: `the_fallback_ca_is_name_constrained_to_the_zones`.
//! - Beyond the list: `the_control_api_is_served_with_a_certificate_ordered_by_acme`
//!   (`--api-tls acme`).
//! - Must show 6: the tls-alpn-01 test's plan (the hostname's `certificate` object, and a
//!   `check` block), and `status_page.rs` (the certificates panel).

use std::time::{Duration, Instant};

use acceptance::pebble::{Served, handshake};
use acceptance::provider::config;
use acceptance::{
    EdgeOptions, EdgeProcess, Pebble, PebbleOptions, PostgresServer, Terraform, eventually,
};
use postern_schema::api::{Certificate, CertificateSource, CertificateStatus};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// What the issue promises: served within this long after `terraform apply` returns.
const WITHIN: Duration = Duration::from_secs(30);

/// Runs these tests a few at a time: each runs Pebble and one or two edges, and the timings
/// hold on two shared cores when they do not all start at once.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// An edge (with `options`) that orders from a fresh Pebble pointed at it, answering only
/// `challenges`.
fn acme_edge(
    challenges: &str,
    pebble: PebbleOptions,
    options: EdgeOptions,
) -> (EdgeProcess, Pebble) {
    let mut edge = EdgeProcess::start_with(options);
    let pebble = Pebble::start(&edge.addrs, pebble);
    edge.restart_with_args(&pebble.edge_args(challenges));
    (edge, pebble)
}

/// A tunnel and `hosts` served by it, plus a `check` that each has a valid public certificate.
fn hostnames_tf(hosts: &[&str], extra: &str) -> String {
    let mut body = String::from(
        r#"
resource "postern_tunnel" "web" {
  name = "web"
}
"#,
    );
    for (i, host) in hosts.iter().enumerate() {
        body.push_str(&format!(
            r#"
resource "postern_hostname" "h{i}" {{
  hostname  = "{host}"
  service   = "http_status:204"
  tunnel_id = postern_tunnel.web.id
}}

check "h{i}_is_trusted" {{
  assert {{
    condition     = postern_hostname.h{i}.certificate.status == "valid" && postern_hostname.h{i}.certificate.source != "edge_ca"
    error_message = "{host} has no valid public certificate yet"
  }}
}}
"#
        ));
    }
    body.push_str(extra);
    config(&body)
}

/// Waits (at most until `deadline`) for `host` to be served by the edge at `addr` with a
/// certificate that verifies against `root` and satisfies `wanted`.
async fn trusted(
    addr: std::net::SocketAddr,
    host: &str,
    root: &str,
    deadline: Instant,
    wanted: impl Fn(&Served) -> bool,
) -> Served {
    loop {
        let last = match handshake(addr, host, root).await {
            Ok(served) if wanted(&served) => return served,
            Ok(served) => format!("served {:?} (serial {})", served.names, served.serial),
            Err(error) => error,
        };
        assert!(
            Instant::now() < deadline,
            "{host} was not served with a trusted certificate in time; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The certificate `GET /v1/certificates` lists for exactly `names`.
async fn listed(edge: &EdgeProcess, names: &[&str]) -> Option<Certificate> {
    edge.client()
        .list_certificates()
        .await
        .ok()?
        .into_iter()
        .find(|c| c.names == names)
}

async fn served_by_challenge(challenge: &str, host: &str) {
    let _serial = serial().await;
    let (edge, pebble) = acme_edge(challenge, PebbleOptions::default(), EdgeOptions::default());
    let root = pebble.root_pem();
    let tf = Terraform::new(&edge);
    tf.write(
        "main.tf",
        &hostnames_tf(
            &[host],
            r#"
output "certificate" {
  value = postern_hostname.h0.certificate
}
"#,
        ),
    );
    tf.init();
    let applied = tf.apply().success();
    let applied_at = Instant::now();
    let served = trusted(edge.addrs.https, host, &root, applied_at + WITHIN, |_| true).await;
    eprintln!(
        "{host} by {challenge}: trusted {:?} after the apply (serial {})",
        applied_at.elapsed(),
        served.serial
    );
    assert_eq!(served.names, vec![host.to_string()]);
    // Pebble was asked once, and validated the one challenge the edge answers.
    assert_eq!(pebble.orders(), 1, "{}", pebble.log_text());
    let listed = listed(&edge, &[host]).await.expect("listed");
    assert_eq!(listed.source, CertificateSource::Acme);
    assert_eq!(listed.status, CertificateStatus::Valid);
    assert_eq!(listed.last_error, None);

    // Must show 6: the plan shows the hostname's certificate; the check that failed while it
    // was being obtained (or passed at once) now passes.
    eprintln!("apply:\n{}", applied.stdout);
    let plan = tf.plan(&[]);
    plan.expect_empty();
    let certificate = prior_value(&plan.json, "postern_hostname.h0")["certificate"].clone();
    assert_eq!(certificate["source"], "acme", "{certificate}");
    assert_eq!(certificate["status"], "valid", "{certificate}");
    assert_eq!(certificate["id"], listed.id.as_str(), "{certificate}");
    assert!(certificate["not_after"].is_string(), "{certificate}");
    assert!(
        !plan.text.contains("Check block assertion failed"),
        "{}",
        plan.text
    );
    eprintln!("plan:\n{}", plan.text);
    assert!(plan.text.contains("Changes to Outputs"), "{}", plan.text);
    assert!(
        plan.text.contains(r#"source    = "edge_ca" -> "acme""#),
        "{}",
        plan.text
    );
}

/// The `values` of `address` in a plan's refreshed prior state.
fn prior_value(plan: &Value, address: &str) -> Value {
    plan.pointer("/prior_state/values/root_module/resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| r["address"] == address)
        .map(|r| r["values"].clone())
        .unwrap_or_else(|| panic!("{address} is not in the plan's prior state: {plan}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_applied_by_terraform_is_served_by_tls_alpn_01() {
    served_by_challenge("tls-alpn-01", "alpn.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_applied_by_terraform_is_served_by_http_01() {
    served_by_challenge("http-01", "web.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_applied_by_terraform_is_served_by_dns_01() {
    served_by_challenge("dns-01", "txt.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_is_served_with_a_certificate_ordered_by_acme() {
    let _serial = serial().await;
    let (mut edge, pebble) = acme_edge("dns-01", PebbleOptions::default(), EdgeOptions::default());
    let root = pebble.root_pem();
    let api_name = "api.example.com";
    edge.restart_with_args(&[
        "--api-tls".into(),
        "acme".into(),
        "--api-name".into(),
        api_name.into(),
    ]);
    assert!(edge.addrs.api_tls, "the ready line says https");
    // Until the order completes the edge CA's certificate serves; then Pebble's, renewed like
    // a hostname's.
    let served = trusted(
        edge.addrs.api,
        api_name,
        &root,
        Instant::now() + WITHIN,
        |_| true,
    )
    .await;
    assert_eq!(served.names, [api_name]);
    // An ordinary client that trusts only the ACME server's root talks to the API.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root")])
        .resolve(api_name, edge.addrs.api)
        .no_proxy()
        .build()
        .expect("client");
    let response = http
        .get(format!(
            "https://{api_name}:{}/v1/edge",
            edge.addrs.api.port()
        ))
        .bearer_auth(&edge.admin_token)
        .send()
        .await
        .expect("the API over the ACME certificate");
    assert_eq!(response.status(), 200);
    let certificates: Value = http
        .get(format!(
            "https://{api_name}:{}/v1/certificates",
            edge.addrs.api.port()
        ))
        .bearer_auth(&edge.admin_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let listed = certificates["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["names"] == json!([api_name]))
        .unwrap_or_else(|| panic!("the API's certificate is listed: {certificates}"));
    assert_eq!(listed["source"], "acme", "{listed}");
    assert_eq!(listed["status"], "valid", "{listed}");

    // Restarted, the edge asks for no second certificate: it serves the one it has.
    let orders = pebble.orders();
    edge.restart();
    trusted(
        edge.addrs.api,
        api_name,
        &root,
        Instant::now() + WITHIN,
        |s| s.serial == served.serial,
    )
    .await;
    assert_eq!(pebble.orders(), orders, "no new order after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_by_dns_01_serves_two_hostnames() {
    let _serial = serial().await;
    // Every challenge allowed: the wildcard can only be had by dns-01, so that is what it gets.
    let (edge, pebble) = acme_edge(
        "tls-alpn-01,http-01,dns-01",
        PebbleOptions::default(),
        EdgeOptions::default(),
    );
    let root = pebble.root_pem();
    let tf = Terraform::new(&edge);
    tf.write(
        "main.tf",
        &hostnames_tf(
            &["a.apps.example.com", "b.apps.example.com"],
            r#"
resource "postern_certificate" "apps" {
  names = ["*.apps.example.com"]
}
"#,
        ),
    );
    tf.init();
    tf.apply().success();
    let applied_at = Instant::now();
    let wildcard = |s: &Served| s.names == ["*.apps.example.com"];
    let a = trusted(
        edge.addrs.https,
        "a.apps.example.com",
        &root,
        applied_at + WITHIN,
        wildcard,
    )
    .await;
    let b = trusted(
        edge.addrs.https,
        "b.apps.example.com",
        &root,
        applied_at + WITHIN,
        wildcard,
    )
    .await;
    eprintln!(
        "the wildcard serves both hostnames {:?} after the apply",
        applied_at.elapsed()
    );
    assert_eq!(a.serial, b.serial, "one certificate for both");
    // Neither hostname keeps a certificate of its own once the wildcard serves it.
    eventually(Duration::from_secs(15), "one certificate left", || async {
        let items = edge.client().list_certificates().await.ok()?;
        (items.len() == 1).then_some(())
    })
    .await;
    let state = tf.resource("postern_certificate.apps");
    assert_eq!(state["source"], "acme");
    assert_eq!(state["names"], json!(["*.apps.example.com"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_serves_the_same_certificate_without_ordering_one() {
    let _serial = serial().await;
    let postgres = PostgresServer::start();
    let store = |public: &str| EdgeOptions {
        args: vec![
            "--store".into(),
            postgres.url(),
            "--public-address".into(),
            public.into(),
        ],
        ..EdgeOptions::default()
    };
    // Pebble validates through node A's listeners; both nodes may order.
    let (a, pebble) = acme_edge("http-01", PebbleOptions::default(), store("127.0.0.1"));
    let b = EdgeProcess::start_with(EdgeOptions {
        args: [store("127.0.0.1").args, pebble.edge_args("http-01")].concat(),
        env: vec![("POSTERN_ADMIN_TOKEN".into(), a.admin_token.clone())],
        ..EdgeOptions::default()
    });
    let root = pebble.root_pem();
    let host = "shared.example.com";
    let tf = Terraform::new(&b);
    tf.write("main.tf", &hostnames_tf(&[host], ""));
    tf.init();
    tf.apply().success();
    let applied_at = Instant::now();
    let on_a = trusted(a.addrs.https, host, &root, applied_at + WITHIN, |_| true).await;
    let on_b = trusted(b.addrs.https, host, &root, applied_at + WITHIN, |_| true).await;
    assert_eq!(
        on_a.serial, on_b.serial,
        "both nodes serve the same certificate"
    );
    // A few more rounds of both nodes' ordering tasks: still one order.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let again = trusted(b.addrs.https, host, &root, Instant::now() + WITHIN, |_| {
        true
    })
    .await;
    assert_eq!(again.serial, on_a.serial);
    assert_eq!(
        pebble.orders(),
        1,
        "Pebble's order count:\n{}",
        pebble.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_replaces_the_certificate_without_a_failed_handshake_and_an_acme_outage_keeps_the_old_one()
 {
    let _serial = serial().await;
    // Certificates for 30 s: renewed at 20 s.
    let (edge, mut pebble) = acme_edge(
        "tls-alpn-01",
        PebbleOptions {
            validity_seconds: Some(30),
        },
        EdgeOptions::default(),
    );
    let root = pebble.root_pem();
    let host = "renew.example.com";
    let tunnel = acceptance::fixture::create_tunnel(&edge.client(), "web", &[]).await;
    acceptance::fixture::add_hostname(&edge.client(), &tunnel, host, "http_status:204").await;
    let first = trusted(
        edge.addrs.https,
        host,
        &root,
        Instant::now() + WITHIN,
        |_| true,
    )
    .await;
    let first_listed = listed(&edge, &[host]).await.expect("listed");
    eprintln!(
        "first certificate {} until {:?}",
        first.serial, first_listed.not_after
    );

    // Visitors keep connecting through the renewal: every handshake verifies, and the serial
    // changes before the first certificate expires.
    let started = Instant::now();
    let mut handshakes = 0;
    let renewed = loop {
        let served = handshake(edge.addrs.https, host, &root)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during renewal: {e}"));
        handshakes += 1;
        if served.serial != first.serial {
            break served;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not renewed within 40 s of a 30 s certificate\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "renewed after {:?}: {} ({handshakes} handshakes, none failed)",
        started.elapsed(),
        renewed.serial
    );
    assert_eq!(pebble.orders(), 2);

    // The ACME server goes away before the next renewal: the renewed certificate keeps
    // serving, and the API says why the renewal failed.
    pebble.stop();
    let failed = eventually(Duration::from_secs(40), "last_error", || async {
        listed(&edge, &[host])
            .await
            .filter(|c| c.last_error.is_some())
    })
    .await;
    eprintln!("with the ACME server down: {failed:?}");
    assert_eq!(
        failed.status,
        CertificateStatus::Valid,
        "still valid, still served"
    );
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("ACME server"), "{error}");
    let still = handshake(edge.addrs.https, host, &root)
        .await
        .expect("the old certificate still verifies");
    assert_eq!(still.serial, renewed.serial);
    let metrics = edge.api().get("/metrics").await.text;
    assert!(
        metrics.contains(&format!(
            "postern_edge_certificate_expiry_timestamp_seconds{{names=\"{host}\",source=\"acme\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_edge_acme_orders_total{outcome=\"failed\"}"),
        "{metrics}"
    );
}

/// A CA made here and a certificate for `names` it signed, valid from `from` to `until` days
/// from now: (CA PEM, chain PEM, key PEM).
fn signed(names: &[&str], from: i64, until: i64) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "operator's CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now + time::Duration::days(from);
    leaf.not_after = now + time::Duration::days(until);
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    (
        ca_cert.pem(),
        format!("{}{}", cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

/// The lines of a PEM key's body: any of them showing up somewhere is the key showing up.
fn key_lines(key_pem: &str) -> Vec<String> {
    key_pem
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_wins_over_acme_and_its_key_is_never_shown() {
    let _serial = serial().await;
    let (edge, pebble) = acme_edge(
        "http-01",
        PebbleOptions::default(),
        EdgeOptions {
            env: vec![("POSTERN_LOG".into(), "trace".into())],
            ..EdgeOptions::default()
        },
    );
    let root = pebble.root_pem();
    let host = "shop.example.com";
    let mut tf = Terraform::new(&edge);
    tf.set_env("TF_LOG_PROVIDER", "trace");
    tf.write("main.tf", &hostnames_tf(&[host], ""));
    tf.init();
    let mut logs = tf.apply().success().all();
    let acme = trusted(
        edge.addrs.https,
        host,
        &root,
        Instant::now() + WITHIN,
        |_| true,
    )
    .await;

    // The operator's own certificate for the hostname, through Terraform: it wins.
    let (operator_ca, chain, key) = signed(&[host], -1, 60);
    std::fs::write(tf.dir().join("chain.pem"), &chain).expect("chain");
    std::fs::write(tf.dir().join("key.pem"), &key).expect("key");
    tf.write(
        "main.tf",
        &hostnames_tf(
            &[host],
            r#"
resource "postern_certificate" "shop" {
  certificate_pem = file("${path.module}/chain.pem")
  private_key_pem = file("${path.module}/key.pem")
}
"#,
        ),
    );
    let plan = tf.plan(&[]);
    let plan_json = plan.json.to_string();
    logs.push_str(&plan.text);
    logs.push_str(&tf.apply().success().all());
    let uploaded = trusted(
        edge.addrs.https,
        host,
        &operator_ca,
        Instant::now() + WITHIN,
        |_| true,
    )
    .await;
    assert_ne!(uploaded.serial, acme.serial);
    assert!(
        handshake(edge.addrs.https, host, &root).await.is_err(),
        "the ACME certificate no longer answers"
    );
    let state = tf.resource("postern_certificate.shop");
    assert_eq!(state["source"], "uploaded");
    assert_eq!(state["status"], "valid");
    assert_eq!(state["names"], json!([host]));
    assert!(state["private_key_pem"].is_null(), "{state}");
    logs.push_str(
        &tf.run(&["apply", "-refresh-only", "-auto-approve", "-no-color"])
            .success()
            .all(),
    );
    let hostname = tf.resource("postern_hostname.h0");
    assert_eq!(hostname["certificate"]["source"], "uploaded", "{hostname}");
    assert_eq!(hostname["certificate"]["id"], state["id"], "{hostname}");

    // The key is nowhere: not in the API's answers, the state, the plan, or any log.
    let api = edge.api();
    let mut answers = api.get("/v1/certificates").await.text;
    let id = state["id"].as_str().expect("id");
    answers.push_str(&api.get(&format!("/v1/certificates/{id}")).await.text);
    let state_file = tf.read("terraform.tfstate");
    assert!(state_file.contains(id), "the state holds the certificate");
    let places = [
        ("the API's answers", answers),
        ("terraform.tfstate", state_file),
        ("the plan JSON", plan_json),
        ("terraform's and the provider's logs", logs),
        ("the edge's log", edge.log()),
    ];
    for line in key_lines(&key) {
        for (place, text) in &places {
            assert!(!text.contains(&line), "the private key shows in {place}");
        }
    }
    assert!(edge.log().contains("TRACE"), "the edge logged at trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_a_pointer() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let (_, chain, key) = signed(&["app.example.com"], -1, 60);
    let (_, _, other_key) = signed(&["app.example.com"], -1, 60);
    let (_, expired, expired_key) = signed(&["app.example.com"], -60, -1);
    let cases = [
        (
            "a key that is not the certificate's",
            &chain,
            &other_key,
            "/private_key_pem",
        ),
        (
            "an expired certificate",
            &expired,
            &expired_key,
            "/certificate_pem",
        ),
        (
            "garbage PEM",
            &"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
                .to_string(),
            &key,
            "/certificate_pem",
        ),
        (
            "a garbage key",
            &chain,
            &"garbage".to_string(),
            "/private_key_pem",
        ),
    ];
    for (what, chain, key, pointer) in cases {
        let response = api
            .post(
                "/v1/certificates",
                &json!({"certificate_pem": chain, "private_key_pem": key}),
            )
            .await;
        assert_eq!(response.status, 400, "{what}: {}", response.text);
        assert_eq!(response.body["error"]["code"], "invalid", "{what}");
        assert_eq!(
            response.body["error"]["path"], pointer,
            "{what}: {}",
            response.text
        );
        for line in key_lines(key) {
            assert!(
                !response.text.contains(&line),
                "{what}: the key in the answer"
            );
        }
        eprintln!("{what}: {}", response.body["error"]["message"]);
    }
    // Without ACME, names are refused where they are.
    let response = api
        .post("/v1/certificates", &json!({"names": ["app.example.com"]}))
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body["error"]["path"], "/names");
    // Nothing was stored; a good upload still works.
    let listed = api.get("/v1/certificates").await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.text);
    let response = api
        .post(
            "/v1/certificates",
            &json!({"certificate_pem": chain, "private_key_pem": key}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_ca_is_name_constrained_to_the_zones() {
    let edge = EdgeProcess::start_with(EdgeOptions {
        zones: vec!["example.com".into(), "example.net".into()],
        ..EdgeOptions::default()
    });
    let client = edge.client();
    let info = client.edge().await.expect("edge");
    // Not the tunnel CA.
    assert_ne!(info.visitor_ca_cert_pem, info.ca_cert_pem);
    assert!(info.visitor_ca_cert_pem.contains("BEGIN CERTIFICATE"));

    // Its name constraints: the zones, and no IP address.
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(info.visitor_ca_cert_pem.as_bytes())
        .map(|der: rustls_pki_types::CertificateDer<'static>| der)
        .expect("CA DER");
    let (_, ca) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let constraints = ca
        .name_constraints()
        .expect("well-formed")
        .expect("a name constraints extension")
        .value;
    assert!(
        ca.extensions().iter().any(|e| e.oid
            == x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS
            && e.critical),
        "name constraints are critical"
    );
    let permitted: Vec<String> = constraints
        .permitted_subtrees
        .iter()
        .flatten()
        .map(|s| format!("{}", s.base))
        .collect();
    assert_eq!(
        permitted,
        vec!["DNSName(example.com)", "DNSName(example.net)"]
    );
    let excluded: Vec<String> = constraints
        .excluded_subtrees
        .iter()
        .flatten()
        .map(|s| format!("{}", s.base))
        .collect();
    assert_eq!(excluded.len(), 2, "{excluded:?}");

    // A hostname without a public certificate is served by it, and verifies.
    let tunnel = acceptance::fixture::create_tunnel(&client, "web", &[]).await;
    acceptance::fixture::add_hostname(&client, &tunnel, "app.example.net", "http_status:204").await;
    let served = handshake(
        edge.addrs.https,
        "app.example.net",
        &info.visitor_ca_cert_pem,
    )
    .await
    .expect("verifies against the visitors' CA");
    assert_eq!(served.names, vec!["app.example.net".to_string()]);
    assert!(
        handshake(edge.addrs.https, "app.example.net", &info.ca_cert_pem)
            .await
            .is_err(),
        "the tunnel CA does not vouch for visitors' names"
    );
    let hostname = client.hostname("app.example.net").await.expect("hostname");
    let certificate = hostname.certificate.expect("certificate");
    assert_eq!(certificate.source, CertificateSource::EdgeCa);

    // Whoever reads its key from the store can sign for any name; outside the zones, rustls
    // refuses what it signs.
    let stored = stored_visitor_ca(&edge);
    let key = rcgen::KeyPair::from_pem(stored["key_pem"].as_str().expect("key")).expect("key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(stored["cert_pem"].as_str().expect("cert"), key)
        .expect("issuer");
    for (name, allowed) in [("bank.example.org", false), ("other.example.com", true)] {
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("signed");
        let verdict = verify(&leaf.der().clone(), &der, name);
        eprintln!("{name}: {verdict:?}");
        assert_eq!(verdict.is_ok(), allowed, "{name}: {verdict:?}");
        if !allowed {
            let error = verdict.expect_err("refused");
            assert!(error.contains("Name"), "{error}");
        }
    }
}

/// The visitors' CA (certificate and key) as the embedded store holds it.
fn stored_visitor_ca(edge: &EdgeProcess) -> Value {
    let db = rusqlite::Connection::open(edge.data_dir().join("postern.db")).expect("store");
    let value: String = db
        .query_row(
            "SELECT value FROM settings WHERE key LIKE 'visitor-ca:%'",
            [],
            |row| row.get(0),
        )
        .expect("the visitors' CA in the store");
    serde_json::from_str(&value).expect("JSON")
}

/// rustls' (webpki's) verdict on `leaf` for `name`, trusting `root`.
fn verify(
    leaf: &rustls_pki_types::CertificateDer<'static>,
    root: &rustls_pki_types::CertificateDer<'static>,
    name: &str,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .expect("verifier");
    verifier
        .verify_server_cert(
            leaf,
            &[],
            &rustls_pki_types::ServerName::try_from(name.to_string()).expect("name"),
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}
