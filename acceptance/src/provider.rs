//! Helpers for the provider's acceptance tests (`tests/provider_*.rs`): configurations,
//! what `terraform validate -json` reported, values from the state, and what the edge
//! holds, read through the typed client.

use postern_schema::api::{Hostname, Policy, Tunnel};
use postern_schema::client::Client;
use postern_schema::ids::TunnelId;
use serde_json::Value;

use crate::terraform::{REQUIRED_PROVIDERS, Run, Terraform};

/// A whole configuration: the `required_providers` block, then `body`.
pub fn config(body: &str) -> String {
    format!("{REQUIRED_PROVIDERS}\n{body}\n")
}

/// Everything the edge holds, each list ordered as the API orders it (by name).
#[derive(Debug)]
pub struct Inventory {
    /// `GET /v1/tunnels`.
    pub tunnels: Vec<Tunnel>,
    /// `GET /v1/hostnames`.
    pub hostnames: Vec<Hostname>,
    /// `GET /v1/policies`.
    pub policies: Vec<Policy>,
}

impl Inventory {
    /// Reads every object through the API.
    pub async fn read(client: &Client) -> Self {
        Self {
            tunnels: client.list_tunnels(None).await.expect("list tunnels"),
            hostnames: client.list_hostnames().await.expect("list hostnames"),
            policies: client.list_policies().await.expect("list policies"),
        }
    }

    /// The tunnel named `name`.
    pub fn tunnel(&self, name: &str) -> &Tunnel {
        self.tunnels
            .iter()
            .find(|t| t.spec.name == name)
            .unwrap_or_else(|| panic!("no tunnel {name:?} on the edge: {self:#?}"))
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> &Policy {
        self.policies
            .iter()
            .find(|p| p.spec.name == name)
            .unwrap_or_else(|| panic!("no policy {name:?} on the edge: {self:#?}"))
    }

    /// The hostname `name`.
    pub fn hostname(&self, name: &str) -> &Hostname {
        self.hostnames
            .iter()
            .find(|h| h.spec.hostname == name)
            .unwrap_or_else(|| panic!("no hostname {name:?} on the edge: {self:#?}"))
    }

    /// Whether the edge holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty() && self.hostnames.is_empty() && self.policies.is_empty()
    }
}

/// One diagnostic of `terraform validate -json`.
#[derive(Debug, Clone)]
pub struct TfDiagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// The summary line.
    pub summary: String,
    /// The detail text.
    pub detail: String,
    /// The resource address (`postern_tunnel.bad`), when there is one.
    pub address: Option<String>,
    /// The source line Terraform points at.
    pub line: Option<u64>,
    /// The source line's text.
    pub code: Option<String>,
}

/// Runs `terraform validate -json`: its exit code and diagnostics.
pub fn validate(tf: &Terraform) -> (i32, Vec<TfDiagnostic>) {
    let run = tf.run(&["validate", "-json", "-no-color"]);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("validate -json printed no JSON ({e}):\n{}", run.all()));
    let diagnostics = json["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| TfDiagnostic {
            severity: d["severity"].as_str().unwrap_or_default().to_owned(),
            summary: d["summary"].as_str().unwrap_or_default().to_owned(),
            detail: d["detail"].as_str().unwrap_or_default().to_owned(),
            address: d["address"].as_str().map(str::to_owned),
            line: d["range"]["start"]["line"].as_u64(),
            code: d["snippet"]["code"].as_str().map(str::to_owned),
        })
        .collect();
    (run.code, diagnostics)
}

/// The 1-based number of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the configuration"))
}

/// A string attribute of a resource's state values.
pub fn string_attr(values: &Value, name: &str) -> String {
    values[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a string in {values}"))
        .to_owned()
}

/// The id of the tunnel at `address` (`postern_tunnel.web`) in the state of `tf`.
pub fn tunnel_id(tf: &Terraform, address: &str) -> TunnelId {
    string_attr(&tf.resource(address), "id")
        .parse()
        .unwrap_or_else(|e| panic!("{address} has no tunnel id: {e}"))
}

/// Panics unless the run failed without crashing the provider.
pub fn expect_clean_failure(run: &Run) {
    assert_ne!(run.code, 0, "expected a failure:\n{}", run.all());
    let text = run.all();
    for crash in [
        "panic:",
        "plugin crashed",
        "Plugin did not respond",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !text.contains(crash),
            "the provider crashed ({crash:?}):\n{text}"
        );
    }
}

/// The SHA-256 fingerprint (lowercase hex) of a PEM certificate's DER, as tokens carry it.
pub fn pem_sha256(pem: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("certificate PEM is base64");
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` with every run of whitespace made one space, so phrases survive Terraform's
/// line wrapping of diagnostics.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
