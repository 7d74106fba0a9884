//! The tunnel token: the single opaque string a connector needs. It carries the edge's tunnel
//! addresses, the tunnel id, the enrolment secret and the SHA-256 fingerprint of the edge CA
//! certificate, which the connector pins. Written `postern1.` + base64url(JSON), no padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::ids::TunnelId;
use crate::secret::Secret;

const PREFIX: &str = "postern1.";

/// A decoded tunnel token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelToken {
    /// Where the edge's tunnel listener(s) can be reached, `host:port`.
    #[serde(rename = "a")]
    pub edge_addresses: Vec<String>,
    /// The tunnel this token enrols as.
    #[serde(rename = "t")]
    pub tunnel_id: TunnelId,
    /// The enrolment secret.
    #[serde(rename = "s")]
    pub secret: Secret,
    /// Lowercase hex SHA-256 of the edge CA certificate's DER.
    #[serde(rename = "c")]
    pub ca_sha256: String,
}

/// Why a string is not a tunnel token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a postern tunnel token ({reason}); copy it whole from `terraform output -raw` or GET /v1/tunnels/{{id}}/token"
)]
pub struct TokenError {
    reason: &'static str,
}

impl TunnelToken {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        // Serializing this struct of strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses the opaque string form (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let body = text.trim().strip_prefix(PREFIX).ok_or(TokenError {
            reason: "it does not start with postern1.",
        })?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError {
            reason: "it is not base64url",
        })?;
        let token: TunnelToken = serde_json::from_slice(&json).map_err(|_| TokenError {
            reason: "its contents are malformed",
        })?;
        if token.edge_addresses.is_empty() {
            return Err(TokenError {
                reason: "it names no edge address",
            });
        }
        if token.ca_sha256.len() != 64 || !token.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError {
                reason: "its CA fingerprint is malformed",
            });
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_hides_its_secret() {
        let token = TunnelToken {
            edge_addresses: vec!["127.0.0.1:7844".into()],
            tunnel_id: TunnelId::new_random(),
            secret: Secret::new("s3cret"),
            ca_sha256: "ab".repeat(32),
        };
        let text = token.encode();
        assert!(text.starts_with("postern1."));
        assert_eq!(TunnelToken::parse(&format!(" {text}\n")), Ok(token.clone()));
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "postern1.", "postern1.!!!", "hello", "postern1.e30"] {
            assert!(TunnelToken::parse(bad).is_err(), "{bad}");
        }
    }
}
