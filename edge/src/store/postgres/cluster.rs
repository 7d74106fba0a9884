//! The leases of edge nodes in PostgreSQL: one row per node in `postern_nodes`, its advert as
//! JSON and its `expires_at` by the database's clock. A heartbeat is one transaction: upsert the
//! row, drop rows long dead, read the live ones, and (when asked) `NOTIFY postern_cluster`.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;

use crate::store::cluster::{NodeAdvert, NodeLease};
use crate::store::record::StoreError;

/// The channel an edge node notifies when what it advertises changed (it took a lease, left,
/// or gained or lost a tunnel's connections), with its node id as the payload.
pub(super) const CLUSTER_CHANNEL: &str = "postern_cluster";

/// Rows of nodes dead for this long are deleted by any node's heartbeat.
const FORGET_AFTER: &str = "10 minutes";

const LIVE_NODES: &str = "SELECT advert,
        GREATEST(EXTRACT(EPOCH FROM (expires_at - now())), 0)::float8
     FROM postern_nodes WHERE expires_at > now() ORDER BY node_id";

fn parse_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<NodeLease>, StoreError> {
    rows.iter()
        .map(|row| {
            let advert: String = row.try_get(0)?;
            let remaining: f64 = row.try_get(1)?;
            let advert: NodeAdvert = serde_json::from_str(&advert)
                .map_err(|e| StoreError::Corrupt(format!("a node's advert: {e}")))?;
            Ok(NodeLease {
                advert,
                remaining: Duration::try_from_secs_f64(remaining).unwrap_or_default(),
            })
        })
        .collect()
}

pub(super) async fn heartbeat(
    client: &mut ClientWrapper,
    advert: String,
    node_id: String,
    lease: f64,
    announce: bool,
) -> Result<Vec<NodeLease>, StoreError> {
    let tx = client.transaction().await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO postern_nodes (node_id, advert, renewed_at, expires_at)
             VALUES ($1, $2, now(), now() + make_interval(secs => $3))
             ON CONFLICT (node_id) DO UPDATE SET advert = EXCLUDED.advert,
                 renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at",
        )
        .await?;
    tx.execute(&upsert, &[&node_id, &advert, &lease]).await?;
    let forget = tx
        .prepare_cached(&format!(
            "DELETE FROM postern_nodes WHERE expires_at < now() - interval '{FORGET_AFTER}'"
        ))
        .await?;
    tx.execute(&forget, &[]).await?;
    let live = tx.prepare_cached(LIVE_NODES).await?;
    let rows = tx.query(&live, &[]).await?;
    if announce {
        let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
        tx.execute(&notify, &[&CLUSTER_CHANNEL, &node_id]).await?;
    }
    tx.commit().await?;
    parse_rows(&rows)
}

pub(super) async fn members(client: &mut ClientWrapper) -> Result<Vec<NodeLease>, StoreError> {
    let live = client.prepare_cached(LIVE_NODES).await?;
    let rows = client.query(&live, &[]).await?;
    parse_rows(&rows)
}

pub(super) async fn leave(client: &mut ClientWrapper, node_id: String) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM postern_nodes WHERE node_id = $1", &[&node_id])
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CLUSTER_CHANNEL, &node_id])
        .await?;
    tx.commit().await?;
    Ok(())
}
