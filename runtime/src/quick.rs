//! Quick mode: `postern --hostname NAME URL` creates a tunnel and a hostname through the
//! control API, and removes both again on a clean exit.

use std::collections::BTreeMap;

use postern_schema::api::{HostnameSpec, TunnelSpec};
use postern_schema::client::{Client, ClientError};
use postern_schema::ids::TunnelId;
use postern_schema::token::{TokenError, TunnelToken};

/// Why quick mode could not set up or clean up.
#[derive(Debug, thiserror::Error)]
pub enum QuickError {
    /// Creating the tunnel failed.
    #[error("cannot create the tunnel")]
    CreateTunnel(#[source] ClientError),
    /// Creating the hostname failed (the tunnel was removed again).
    #[error("cannot create the hostname {hostname}")]
    CreateHostname {
        /// The hostname.
        hostname: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The edge answered a tunnel without a usable token.
    #[error("the edge returned no usable token for the new tunnel")]
    Token(#[source] Option<TokenError>),
}

/// What quick mode created.
#[derive(Debug)]
pub struct QuickTunnel {
    /// The tunnel.
    pub tunnel_id: TunnelId,
    /// Its name.
    pub name: String,
    /// The hostname.
    hostname: String,
    /// The connector token.
    pub token: TunnelToken,
}

/// Creates a tunnel named after `hostname` and binds `hostname` to it with `service`.
pub async fn create(
    client: &Client,
    hostname: &str,
    service: &str,
) -> Result<QuickTunnel, QuickError> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let name = tunnel_name(hostname, &suffix[..8]);
    let tunnel = client
        .create_tunnel(&TunnelSpec {
            name: name.clone(),
            labels: BTreeMap::from([("postern.dev/mode".to_string(), "quick".to_string())]),
        })
        .await
        .map_err(QuickError::CreateTunnel)?;
    let token = match tunnel.token.as_deref().map(TunnelToken::parse) {
        Some(Ok(token)) => token,
        other => {
            let _ = client.delete_tunnel(tunnel.id, None).await;
            return Err(QuickError::Token(other.and_then(Result::err)));
        }
    };
    let spec = HostnameSpec {
        tls_passthrough: None,
        hostname: hostname.to_string(),
        service: service.to_string(),
        tunnel_id: Some(tunnel.id),
        routes: None,
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: None,
    };
    if let Err(source) = client.create_hostname(&spec).await {
        if let Err(error) = client.delete_tunnel(tunnel.id, None).await {
            tracing::warn!(%error, tunnel_id = %tunnel.id, "cannot remove the tunnel again");
        }
        return Err(QuickError::CreateHostname {
            hostname: hostname.to_string(),
            source,
        });
    }
    tracing::info!(tunnel_id = %tunnel.id, tunnel = %name, %hostname, %service, "created the tunnel and hostname");
    Ok(QuickTunnel {
        tunnel_id: tunnel.id,
        name,
        hostname: hostname.to_string(),
        token,
    })
}

/// A valid tunnel name from the hostname's first label: `quick-<label>-<suffix>`.
fn tunnel_name(hostname: &str, suffix: &str) -> String {
    let label: String = hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(40)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        format!("quick-{suffix}")
    } else {
        format!("quick-{label}-{suffix}")
    }
}

/// Deletes the hostname, then the tunnel; reports every failure and keeps going.
pub async fn remove(client: &Client, quick: &QuickTunnel) -> Vec<ClientError> {
    let mut errors = Vec::new();
    match client.delete_hostname(&quick.hostname, None).await {
        Ok(()) => tracing::info!(hostname = %quick.hostname, "removed the hostname"),
        Err(error) if error.is_not_found() => {}
        Err(error) => errors.push(error),
    }
    match client.delete_tunnel(quick.tunnel_id, None).await {
        Ok(()) => tracing::info!(tunnel_id = %quick.tunnel_id, "removed the tunnel"),
        Err(error) if error.is_not_found() => {}
        Err(error) => errors.push(error),
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_names_are_valid_names() {
        for hostname in [
            "app.example.com",
            "-x-.example.com",
            "UPPER.example.com",
            "a.b",
        ] {
            let name = tunnel_name(hostname, "0123abcd");
            assert!(postern_schema::rules::check_name(&name).is_ok(), "{name}");
        }
        assert_eq!(
            tunnel_name("app.example.com", "0123abcd"),
            "quick-app-0123abcd"
        );
    }
}
