//! `postern_enrollment_token`: an ephemeral resource that mints a single-use, short-lived
//! enrolment token for a tunnel (`POST /v1/tunnels/{id}/enrollment-tokens`). Terraform keeps
//! ephemeral values out of plan and state, so the token reaches a connector (through a
//! write-only attribute of a secret store, a provisioner, a provider block) without ever being
//! written down; once a connector enrolled with it, it is worthless.

use std::time::Duration;

use postern_schema::api::EnrollmentTokenSpec;
use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Diagnostics, EphemeralResource, OpenRequest, OpenResponse, Schema,
    Value, async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::contract::known_str;
use crate::postern::duration::parse_duration;
use crate::postern::provider_data::ProviderData;

/// The shortest and longest lifetimes the edge grants.
const MIN_TTL: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Configuration and result of a `postern_enrollment_token` (no `Debug`: it holds the token).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct EnrollmentTokenModel {
    /// The tunnel the token enrols a connector of.
    pub(crate) tunnel_id: String,
    /// How long the token stays usable, e.g. `10m`.
    pub(crate) ttl: Option<String>,
    /// The token.
    pub(crate) token: Option<String>,
    /// RFC 3339: unused after this, the edge refuses it.
    pub(crate) expires_at: Option<String>,
}

/// The `postern_enrollment_token` ephemeral resource.
pub(crate) struct EnrollmentTokenResource;

#[async_trait]
impl EphemeralResource<ProviderData> for EnrollmentTokenResource {
    fn type_name(&self) -> &'static str {
        "postern_enrollment_token"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A single-use, short-lived token that enrols one connector of a tunnel \
             (`postern tunnel run --token …`). It is ephemeral: Terraform never writes it to \
             plan or state, and it is minted anew on every run. Pass it to a write-only \
             attribute (for example a secret store's), a provisioner or a provider block; with \
             `store_token = false` on the tunnel, no long-lived connector secret is in state \
             at all.",
        )
        .attribute(
            "tunnel_id",
            Attribute::string(
                "The tunnel (a `postern_tunnel`'s `id`) the token enrols a connector of.",
            )
            .required(),
        )
        .attribute(
            "ttl",
            Attribute::string(
                "How long the token stays usable, from 30 seconds to 24 hours, e.g. `\"10m\"` or \
                 `\"1h\"`. Defaults to `\"10m\"`. A connector that enrolled keeps its \
                 certificate and renews it; the token is only needed once.",
            )
            .optional(),
        )
        .attribute(
            "token",
            Attribute::string("The single-use connector token. Sensitive.")
                .computed()
                .sensitive(),
        )
        .attribute(
            "expires_at",
            Attribute::string("When the token expires if unused (RFC 3339).").computed(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        if let Some(id) = known_str(config, "tunnel_id")
            && id.parse::<TunnelId>().is_err()
        {
            diagnostics.error_at(
                AttributePath::root("tunnel_id"),
                "Invalid tunnel_id",
                format!("{id:?} is not a tunnel id; use a postern_tunnel's `id`."),
            );
        }
        if let Some(ttl) = known_str(config, "ttl")
            && let Err(message) = parse_ttl(ttl)
        {
            diagnostics.error_at(AttributePath::root("ttl"), "Invalid ttl", message);
        }
    }

    async fn open(&self, data: &ProviderData, req: OpenRequest, resp: &mut OpenResponse) {
        let Some(config) = resp
            .diagnostics
            .check(req.config.decode::<EnrollmentTokenModel>())
        else {
            return;
        };
        let Ok(tunnel_id) = config.tunnel_id.parse::<TunnelId>() else {
            resp.diagnostics.error_at(
                AttributePath::root("tunnel_id"),
                "Invalid tunnel_id",
                format!("{:?} is not a tunnel id.", config.tunnel_id),
            );
            return;
        };
        let ttl = match config.ttl.as_deref().map(parse_ttl).transpose() {
            Ok(ttl) => ttl,
            Err(message) => {
                resp.diagnostics
                    .error_at(AttributePath::root("ttl"), "Invalid ttl", message);
                return;
            }
        };
        let spec = EnrollmentTokenSpec {
            ttl_seconds: ttl.and_then(|ttl| u32::try_from(ttl.as_secs()).ok()),
        };
        let ty = self.schema().value_type();
        let op = Operation {
            action: "minting an enrolment token for",
            kind: "tunnel",
            object: Some(&config.tunnel_id),
            value_type: &ty,
        };
        match data.client.create_enrollment_token(tunnel_id, &spec).await {
            Ok(minted) => {
                tracing::info!(tunnel_id = %tunnel_id, expires_at = %minted.expires_at, "enrolment token minted");
                resp.set_result(&EnrollmentTokenModel {
                    token: Some(minted.token),
                    expires_at: Some(minted.expires_at),
                    ..config
                });
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }
}

/// A lifetime the edge grants: a duration from [`MIN_TTL`] to [`MAX_TTL`] in whole seconds.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(format!(
            "ttl {text:?} must be between 30s and 24h: long enough to start a connector, short \
             enough that an unused token soon stops mattering"
        ));
    }
    Ok(Duration::from_secs(ttl.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_bounded_like_the_edge_bounds_them() {
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        for text in ["29s", "25h", "0s", "ten minutes"] {
            assert!(parse_ttl(text).is_err(), "{text}");
        }
    }
}
