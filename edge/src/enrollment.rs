//! Single-use enrolment tokens: short-lived secrets that enrol one connector of a tunnel once,
//! for Terraform's ephemeral resources (nothing long-lived in state). Only a SHA-256 of each
//! secret is stored, under a setting that enrolment removes atomically when it uses it, so two
//! connectors (even on two edge nodes) cannot both use one token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::new_secret;
use crate::store::{Store, StoreError};

/// What starts the secret of a single-use token (long-lived tunnel secrets never do).
pub(crate) const ONE_TIME_PREFIX: &str = "once_";

#[derive(Serialize, Deserialize)]
struct Grant {
    tunnel: TunnelId,
    expires_unix: u64,
}

/// Is `secret` the secret of a single-use token?
pub(crate) fn is_one_time(secret: &str) -> bool {
    secret.starts_with(ONE_TIME_PREFIX)
}

fn key(secret: &str) -> String {
    let digest: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("enroll:{digest}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints a single-use secret for `tunnel`, usable for `ttl`; returns it with its expiry (Unix
/// seconds).
pub(crate) async fn mint(
    store: &dyn Store,
    tunnel: TunnelId,
    ttl: Duration,
) -> Result<(String, u64), StoreError> {
    let secret = format!("{ONE_TIME_PREFIX}{}", new_secret());
    let expires_unix = unix_now() + ttl.as_secs();
    let grant = Grant {
        tunnel,
        expires_unix,
    };
    let value = serde_json::to_string(&grant)
        .map_err(|e| StoreError::Corrupt(format!("enrolment grant: {e}")))?;
    store.setting_or_insert(&key(&secret), value).await?;
    Ok((secret, expires_unix))
}

/// Uses a single-use secret for `tunnel`: `true` exactly once, while it has not expired.
pub(crate) async fn redeem(
    store: &dyn Store,
    tunnel: TunnelId,
    secret: &str,
) -> Result<bool, StoreError> {
    let Some(value) = store.take_setting(&key(secret)).await? else {
        return Ok(false);
    };
    let Ok(grant) = serde_json::from_str::<Grant>(&value) else {
        return Ok(false);
    };
    Ok(grant.tunnel == tunnel && unix_now() <= grant.expires_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_enrols_once_for_its_own_tunnel_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqliteStore::open(&dir.path().join("s.db")).expect("open");
        let (tunnel, other) = (TunnelId::new_random(), TunnelId::new_random());
        let (secret, _) = mint(&store, tunnel, Duration::from_secs(60))
            .await
            .expect("mint");
        assert!(is_one_time(&secret));
        assert!(redeem(&store, tunnel, &secret).await.expect("redeem"));
        assert!(!redeem(&store, tunnel, &secret).await.expect("second use"));

        let (secret, _) = mint(&store, tunnel, Duration::from_secs(60))
            .await
            .expect("mint");
        assert!(!redeem(&store, other, &secret).await.expect("other tunnel"));
        assert!(
            !redeem(&store, tunnel, &secret)
                .await
                .expect("burnt by the wrong use")
        );

        let (secret, _) = mint(&store, tunnel, Duration::ZERO).await.expect("mint");
        let expired = Grant {
            tunnel,
            expires_unix: unix_now() - 1,
        };
        store.take_setting(&key(&secret)).await.expect("take");
        store
            .setting_or_insert(
                &key(&secret),
                serde_json::to_string(&expired).expect("json"),
            )
            .await
            .expect("put");
        assert!(!redeem(&store, tunnel, &secret).await.expect("expired"));
    }
}
