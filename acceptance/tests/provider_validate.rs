//! `terraform validate` with no edge running: the provider checks configurations offline
//! with the edge's own rules and reports each problem on the exact attribute. The same
//! bodies sent to a real edge afterwards are refused at the same place.

use acceptance::fixture::tf_config;
use acceptance::provider::{config, line_of, validate};
use acceptance::{EdgeProcess, Terraform};
use serde_json::json;

const BAD_TF: &str = r#"
resource "postern_tunnel" "labels" {
  name = "web"
  labels = {
    release    = "stable"
    "Bad Key!" = "x"
  }
}

resource "postern_policy" "cidr" {
  name = "api"
  allow_ips = [
    "10.0.0.0/8",
    "10.0.0.300/8",
  ]
}

resource "postern_hostname" "weight" {
  hostname = "w.example.com"
  service  = "http://127.0.0.1:4000"
  routes = [
    { selector = { release = "stable" }, weight = 90 },
    { selector = { release = "canary" }, weight = 0 },
  ]
}

resource "postern_hostname" "both" {
  hostname  = "b.example.com"
  service   = "http://127.0.0.1:4000"
  tunnel_id = "0b5c4e0e-8a4f-4d8e-9a0b-3a1f6f1d2c3e"
  routes    = [{ selector = { release = "stable" }, weight = 100 }]
}

# References not known until apply are not judged: no false alarms.
resource "postern_hostname" "fine" {
  hostname  = "ok.example.com"
  service   = "http://127.0.0.1:4000"
  tunnel_id = postern_tunnel.labels.id
}

resource "postern_tunnel" "fine" {
  name   = "fine"
  labels = { owner = postern_tunnel.labels.id }
}
"#;

/// One expected problem: where Terraform shows it, and where the edge blames the same body.
struct Expected {
    address: &'static str,
    summary: &'static str,
    line_needle: &'static str,
    api_path: &'static str,
    api_pointer: &'static str,
    body: serde_json::Value,
}

#[tokio::test]
async fn validate_reports_bad_values_on_the_exact_attribute_without_an_edge() {
    let expected = [
        Expected {
            address: "postern_tunnel.labels",
            summary: r#"Invalid labels["Bad Key!"]"#,
            line_needle: r#""Bad Key!" = "x""#,
            api_path: "/v1/tunnels",
            api_pointer: "/labels/Bad Key!",
            body: json!({"name": "web", "labels": {"release": "stable", "Bad Key!": "x"}}),
        },
        Expected {
            address: "postern_policy.cidr",
            summary: "Invalid allow_ips[1]",
            line_needle: r#""10.0.0.300/8","#,
            api_path: "/v1/policies",
            api_pointer: "/allow_ips/1",
            body: json!({"name": "api", "allow_ips": ["10.0.0.0/8", "10.0.0.300/8"]}),
        },
        Expected {
            address: "postern_hostname.weight",
            summary: "Invalid routes[1].weight",
            line_needle: "weight = 0 }",
            api_path: "/v1/hostnames",
            api_pointer: "/routes/1/weight",
            body: json!({
                "hostname": "w.example.com",
                "service": "http://127.0.0.1:4000",
                "routes": [
                    {"selector": {"release": "stable"}, "weight": 90},
                    {"selector": {"release": "canary"}, "weight": 0},
                ],
            }),
        },
        Expected {
            address: "postern_hostname.both",
            summary: "Invalid routes",
            line_needle: "weight = 100 }]",
            api_path: "/v1/hostnames",
            api_pointer: "/routes",
            body: json!({
                "hostname": "b.example.com",
                "service": "http://127.0.0.1:4000",
                "tunnel_id": "0b5c4e0e-8a4f-4d8e-9a0b-3a1f6f1d2c3e",
                "routes": [{"selector": {"release": "stable"}, "weight": 100}],
            }),
        },
    ];

    // No edge: the workspace has no endpoint at all.
    let tf = Terraform::offline();
    let main_tf = config(BAD_TF);
    tf.write("main.tf", &main_tf);
    tf.init();
    let (code, diagnostics) = validate(&tf);
    assert_ne!(code, 0);
    assert_eq!(
        diagnostics.len(),
        expected.len(),
        "exactly one diagnostic per problem: {diagnostics:#?}"
    );
    for want in &expected {
        let found = diagnostics
            .iter()
            .find(|d| d.address.as_deref() == Some(want.address))
            .unwrap_or_else(|| panic!("nothing reported for {}: {diagnostics:#?}", want.address));
        assert_eq!(found.severity, "error");
        assert_eq!(found.summary, want.summary, "{found:#?}");
        assert_eq!(
            found.line,
            Some(line_of(&main_tf, want.line_needle)),
            "{} should point at the line with {:?}: {found:#?}",
            want.address,
            want.line_needle
        );
        assert!(
            found
                .detail
                .contains("The Postern edge applies the same rule"),
            "{found:#?}"
        );
    }

    // A correct configuration validates, still with no edge.
    tf.write(
        "main.tf",
        &format!(
            "{}{}",
            tf_config(
                &["tunnel/web_labelled.tf", "hostname/app_guarded.tf"],
                &[
                    (
                        "labels",
                        r#"{ release = "stable", "example.com/tier" = "web" }"#
                    ),
                    ("host", "app.example.com"),
                    ("service", "http_status:204"),
                ],
            ),
            r#"
resource "postern_policy" "api" {
  name          = "api"
  allow_ips     = ["10.0.0.0/8", "192.0.2.1"]
  allow_methods = ["GET"]
  allow_paths   = ["/api/**"]
  rate_limit    = { requests_per_second = 0.5 }
}
"#
        ),
    );
    let (code, diagnostics) = validate(&tf);
    assert_eq!(code, 0, "{diagnostics:#?}");

    // The edge refuses the same bodies at the same place.
    let edge = EdgeProcess::start();
    let api = edge.api();
    for want in &expected {
        let response = api.post(want.api_path, &want.body).await;
        assert_eq!(response.status, 400, "{}", response.text);
        assert_eq!(
            response.error_path(),
            Some(want.api_pointer),
            "{}",
            response.text
        );
    }
}
