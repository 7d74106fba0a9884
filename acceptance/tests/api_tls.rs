//! The control API over TLS (must-show 1): `terraform apply` and quick mode work against an
//! `https://` endpoint when they trust the CA that signed its certificate (`ca_cert_pem`,
//! `--api-ca`), and fail saying the certificate is not trusted with another CA; the edge serves
//! a certificate from files or from its own CA; and it refuses to serve a plain-HTTP API on a
//! non-loopback address unless `--api-insecure` says so.

use std::process::Command;
use std::time::Duration;

use acceptance::binaries::binary;
use acceptance::pki::TestCa;
use acceptance::provider::config;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{
    ConnectorOptions, ConnectorProcess, EdgeOptions, EdgeProcess, Terraform, eventually,
};

/// An edge whose API is served with a certificate from its own CA for 127.0.0.1.
fn edge_with_edge_ca() -> EdgeProcess {
    EdgeProcess::start_with(EdgeOptions {
        args: vec![
            "--api-tls".into(),
            "edge-ca".into(),
            "--api-name".into(),
            "127.0.0.1".into(),
        ],
        ..EdgeOptions::default()
    })
}

fn tunnel_config() -> String {
    config(
        r#"
provider "postern" {
  ca_cert_pem = file("${path.module}/ca.pem")
}

resource "postern_tunnel" "web" {
  name = "web"
}
"#,
    )
}

#[tokio::test]
async fn terraform_applies_over_https_with_ca_cert_pem_and_refuses_another_ca() {
    let edge = edge_with_edge_ca();
    assert!(edge.addrs.api_tls, "the ready line says https://");
    assert!(edge.api_url().starts_with("https://127.0.0.1:"));
    let ca_pem =
        std::fs::read_to_string(edge.data_dir().join("ca.pem")).expect("<data-dir>/ca.pem");

    let tf = Terraform::new(&edge);
    tf.write("main.tf", &tunnel_config());
    tf.write("ca.pem", &ca_pem);
    tf.init();
    tf.apply().success();
    let tunnels = edge
        .client()
        .list_tunnels(None)
        .await
        .expect("tunnels over https");
    assert_eq!(tunnels.len(), 1);
    assert_eq!(tunnels[0].spec.name, "web");
    tf.plan(&[]).expect_empty();

    // Another CA: the provider says the certificate is not trusted, and what to set.
    tf.write("ca.pem", &TestCa::new("some other CA").cert_pem);
    let refused = tf.run(&["plan", "-no-color"]);
    assert_ne!(refused.code, 0, "{}", refused.all());
    let text = refused.all().replace('\n', " ");
    assert!(
        text.contains("certificate is not trusted") && text.contains("ca_cert_pem"),
        "{text}"
    );

    // Without ca_cert_pem the system's roots do not know the edge's CA either; with
    // POSTERN_CA_CERT naming the file, it works again.
    let mut tf = tf;
    tf.write(
        "main.tf",
        &config("resource \"postern_tunnel\" \"web\" {\n  name = \"web\"\n}\n"),
    );
    let refused = tf.run(&["plan", "-no-color"]);
    assert!(refused.all().contains("not trusted"), "{}", refused.all());
    tf.write("edge-ca.pem", &ca_pem);
    let path = tf.dir().join("edge-ca.pem").display().to_string();
    tf.set_env("POSTERN_CA_CERT", &path);
    tf.plan(&[]).expect_empty();
}

#[tokio::test]
async fn the_api_serves_a_certificate_from_files() {
    let ca = TestCa::new("operator CA");
    let server = ca.server_cert(&["127.0.0.1", "localhost"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::write(&cert, &server.cert_pem).expect("cert");
    std::fs::write(&key, &server.key_pem).expect("key");
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec![
            "--api-tls-cert".into(),
            cert.display().to_string(),
            "--api-tls-key".into(),
            key.display().to_string(),
        ],
        api_ca_pem: Some(ca.cert_pem.clone()),
        ..EdgeOptions::default()
    });
    assert!(edge.api_url().starts_with("https://"));
    assert_eq!(edge.api().get("/v1/edge").await.status, 200);
    let answer = edge.api().get("/healthz").await;
    assert_eq!(answer.status, 200);
    // The edge's own CA did not sign this certificate: a client trusting only it refuses.
    let own_ca = edge.client().edge().await.expect("edge info").ca_cert_pem;
    let strict = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(own_ca.as_bytes()).expect("PEM"))
        .build()
        .expect("client");
    let refused = strict
        .get(format!("{}/healthz", edge.api_url()))
        .send()
        .await
        .expect_err("another CA's certificate is refused");
    assert!(refused.is_connect(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_works_over_https_with_api_ca_and_refuses_another_ca() {
    let edge = edge_with_edge_ca();
    let ca_file = edge.data_dir().join("ca.pem");
    let dir = tempfile::tempdir().expect("temp dir");
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new("some other CA").cert_pem).expect("other CA");

    let quick = |ca: &std::path::Path, host: &str| {
        ConnectorProcess::start(ConnectorOptions {
            args: vec![
                "--hostname".into(),
                host.into(),
                "--hello-world".into(),
                "--api".into(),
                edge.api_url(),
                "--api-ca".into(),
                ca.display().to_string(),
                "--connections".into(),
                "1".into(),
            ],
            env: vec![("POSTERN_API_TOKEN".into(), edge.admin_token.clone())],
            ..ConnectorOptions::default()
        })
    };

    let mut refused = quick(&other_ca, "refused.example.com");
    let exit = refused
        .wait_exit(Duration::from_secs(20))
        .expect("quick mode gives up");
    assert!(!exit.success());
    let log = refused.log().replace('\n', " ");
    assert!(
        log.contains("certificate of the edge")
            && log.contains("not trusted")
            && log.contains("--api-ca"),
        "{log}"
    );

    let host = "quick.example.com";
    let _served = quick(&ca_file, host);
    let http = edge_http_client(&edge, host);
    eventually(
        Duration::from_secs(20),
        "quick mode to serve over https",
        || async {
            let answer = http.get(http_url(&edge, host, "/")).send().await;
            answer.is_ok_and(|a| a.status() == 200).then_some(())
        },
    )
    .await;
}

#[test]
fn a_plain_api_beyond_loopback_is_refused_unless_insecure_is_said() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(binary("postern-edge"))
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--api-listen", "0.0.0.0:0"])
        .env_remove("POSTERN_ADMIN_TOKEN")
        .output()
        .expect("running postern-edge");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plain HTTP")
            && stderr.contains("in clear")
            && stderr.contains("--api-insecure")
            && stderr.contains("--api-tls"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no ready line");

    // --api-tls edge-ca without a name says what to give.
    let output = Command::new(binary("postern-edge"))
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--api-tls", "edge-ca"])
        .output()
        .expect("running postern-edge");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--api-name"));
}
