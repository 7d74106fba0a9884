//! Set-ups many tests share: Terraform configurations made of the files under
//! `acceptance/testdata/` (one folder per type, `{placeholder}`s for what differs), tunnels
//! (labelled, or with a hostname served by them, or served by a running connector), waiting for
//! a tunnel's connections, and reading a connector's id from its log.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use postern_schema::api::{Connection, HostnameSpec, Tunnel, TunnelSpec};
use postern_schema::client::Client;
use postern_schema::ids::TunnelId;

use crate::connector::{ConnectorProcess, eventually};
use crate::edge::{EdgeOptions, EdgeProcess};
use crate::origin::TestOrigin;
use crate::provider::config;

/// A whole Terraform configuration: the `required_providers` block, then the fixture `files`
/// (paths under `acceptance/testdata/`, in order) with each `{name}` replaced by its value in
/// `vars`. Panics on a missing file, a placeholder without a value, or a value no file uses.
pub fn tf_config(files: &[&str], vars: &[(&str, &str)]) -> String {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut used = BTreeSet::new();
    let mut body = String::new();
    for file in files {
        let path = testdata.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the fixture {}: {e}", path.display()));
        body.push('\n');
        body.push_str(&fill(&text, vars, &mut used, file));
    }
    let unused: Vec<&str> = vars
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !used.contains(name))
        .collect();
    assert!(unused.is_empty(), "no fixture of {files:?} uses {unused:?}");
    config(&body)
}

/// The tunnel "web" serving `host` from `service`, with its token as the output `token`, and
/// the provider's `rollout_timeout`.
pub fn web_hostname_tf(host: &str, service: &str, rollout_timeout: &str) -> String {
    tf_config(
        &[
            "provider/rollout_timeout.tf",
            "tunnel/web.tf",
            "hostname/app.tf",
            "tunnel/web_token.tf",
        ],
        &[
            ("rollout_timeout", rollout_timeout),
            ("host", host),
            ("service", service),
        ],
    )
}

/// `text` with every `{name}` (a lowercase identifier in braces) replaced by its value in
/// `vars`; the names used go into `used`. HCL's own braces (`{ a = 1 }`, `${x}`, `{}`) are no
/// placeholders and stay.
fn fill<'v>(
    text: &str,
    vars: &[(&'v str, &str)],
    used: &mut BTreeSet<&'v str>,
    file: &str,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let interpolation = rest[..open].ends_with('$');
        if name_len > 0 && after[name_len..].starts_with('}') && !interpolation {
            let (key, value) = vars
                .iter()
                .find(|(key, _)| *key == name)
                .unwrap_or_else(|| panic!("the fixture {file} needs a value for {{{name}}}"));
            used.insert(*key);
            out.push_str(value);
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Creates a tunnel named `name` with `labels`; returns it (with its token).
pub async fn create_tunnel(client: &Client, name: &str, labels: &[(&str, &str)]) -> Tunnel {
    client
        .create_tunnel(&TunnelSpec {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        })
        .await
        .expect("create tunnel")
}

/// Creates a tunnel and a hostname served by it; returns the tunnel (with its token).
pub async fn tunnel_for(client: &Client, name: &str, hostname: &str, service: &str) -> Tunnel {
    let tunnel = create_tunnel(client, name, &[]).await;
    add_hostname(client, &tunnel, hostname, service).await;
    tunnel
}

/// An edge serving one hostname from a test origin through one real connector (two
/// connections), all running.
pub struct Served {
    /// The edge.
    pub edge: EdgeProcess,
    /// The origin behind the hostname.
    pub origin: TestOrigin,
    /// The tunnel (named `app`) that serves it.
    pub tunnel: Tunnel,
    /// The connector, connected twice.
    pub connector: ConnectorProcess,
}

/// Starts an edge, an origin and a connector serving `hostname`; returns once both of the
/// connector's connections are registered.
pub async fn served(hostname: &str) -> Served {
    served_with(hostname, EdgeOptions::default()).await
}

/// [`served`], with an edge started with `options`.
pub async fn served_with(hostname: &str, options: EdgeOptions) -> Served {
    let edge = EdgeProcess::start_with(options);
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "app", hostname, &origin.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;
    Served {
        edge,
        origin,
        tunnel,
        connector,
    }
}

/// Adds a hostname served by `tunnel`.
pub async fn add_hostname(client: &Client, tunnel: &Tunnel, hostname: &str, service: &str) {
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: hostname.into(),
            service: service.into(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: Vec::new(),
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("create hostname");
}

/// The token of a tunnel just created.
pub fn token(tunnel: &Tunnel) -> String {
    tunnel
        .token
        .clone()
        .expect("a new tunnel carries its token")
}

/// Waits (at most 20 s) until `tunnel` has exactly `count` registered connections.
pub async fn connections(client: &Client, tunnel: TunnelId, count: usize) -> Vec<Connection> {
    connections_within(client, tunnel, count, Duration::from_secs(20)).await
}

/// Waits at most `within` until `tunnel` has exactly `count` registered connections (draining
/// ones included); returns them.
pub async fn connections_within(
    client: &Client,
    tunnel: TunnelId,
    count: usize,
    within: Duration,
) -> Vec<Connection> {
    eventually(
        within,
        &format!("{count} registered connections"),
        || async {
            let list = client.tunnel_connections(tunnel).await.ok()?;
            (list.len() == count).then_some(list)
        },
    )
    .await
}

/// Waits at most `within` until the node `client` talks to holds exactly `count` connections
/// of `tunnel` that are not draining.
pub async fn live_connections(client: &Client, tunnel: TunnelId, count: usize, within: Duration) {
    eventually(
        within,
        &format!("{count} live connections on {}", client.endpoint()),
        || async {
            let list = client.tunnel_connections(tunnel).await.ok()?;
            (list.iter().filter(|c| !c.draining).count() == count).then_some(())
        },
    )
    .await;
}

/// The connector id a connector process logged at start.
pub fn connector_id(connector: &ConnectorProcess) -> String {
    connector
        .log()
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("connector_id=")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .expect("the connector logs its id")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::fill;

    #[test]
    fn placeholders_are_filled_and_hcl_braces_stay() {
        let mut used = BTreeSet::new();
        let text =
            "a = \"{host}\"\nb = {labels}\nc = { x = 1 }\nd = \"${count.index} ${host}\"\ne = {}\n";
        let filled = fill(
            text,
            &[
                ("host", "app.example.com"),
                ("labels", "{ release = \"{x}\" }"),
            ],
            &mut used,
            "t.tf",
        );
        assert_eq!(
            filled,
            "a = \"app.example.com\"\nb = { release = \"{x}\" }\nc = { x = 1 }\nd = \"${count.index} ${host}\"\ne = {}\n"
        );
        assert_eq!(used, BTreeSet::from(["host", "labels"]));
    }

    #[test]
    #[should_panic(expected = "needs a value for {service}")]
    fn a_placeholder_without_a_value_panics() {
        fill("service = \"{service}\"", &[], &mut BTreeSet::new(), "t.tf");
    }
}
