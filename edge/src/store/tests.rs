//! The store suite: every `Store` implementation must pass it.

use serde_json::json;

use super::*;

/// Runs every store property against a fresh, empty store.
pub(crate) async fn suite(store: &dyn Store) {
    versions_and_names(store).await;
    references_are_enforced(store).await;
    settings_keep_the_first_value(store).await;
}

fn write(kind: Kind, id: &str, name: &str, refs: Vec<Ref>) -> Write {
    Write {
        kind,
        id: id.into(),
        name: name.into(),
        body: json!({"name": name}),
        refs,
    }
}

async fn versions_and_names(store: &dyn Store) {
    let created = store
        .create(
            write(Kind::Tunnel, "t1", "web", vec![]),
            Some("secret".into()),
        )
        .await
        .expect("create");
    assert_eq!(created.version, 1);
    assert!(matches!(
        store
            .create(write(Kind::Tunnel, "t2", "web", vec![]), None)
            .await,
        Err(StoreError::NameTaken { .. })
    ));
    let replaced = store
        .replace("t1", write(Kind::Tunnel, "t1", "web2", vec![]), Some(1))
        .await
        .expect("replace at version 1");
    assert_eq!(replaced.version, 2);
    assert!(replaced.revision > created.revision);
    assert!(matches!(
        store
            .replace("t1", write(Kind::Tunnel, "t1", "web3", vec![]), Some(1))
            .await,
        Err(StoreError::VersionMismatch { current: 2, .. })
    ));
    assert_eq!(
        store.secret(Kind::Tunnel, "t1").await.expect("secret"),
        Some("secret".into())
    );
    let listed = store.list(Kind::Tunnel).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["web2"]
    );
    assert!(matches!(
        store.delete(Kind::Tunnel, "t1", Some(1)).await,
        Err(StoreError::VersionMismatch { .. })
    ));
    store
        .delete(Kind::Tunnel, "t1", Some(2))
        .await
        .expect("delete");
    assert!(store.get(Kind::Tunnel, "t1").await.expect("get").is_none());
    assert!(matches!(
        store.delete(Kind::Tunnel, "t1", None).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn references_are_enforced(store: &dyn Store) {
    let dangling = Ref {
        kind: Kind::Tunnel,
        id: "nope".into(),
        pointer: "/tunnel_id".into(),
    };
    match store
        .create(
            write(
                Kind::Hostname,
                "a.example.com",
                "a.example.com",
                vec![dangling],
            ),
            None,
        )
        .await
    {
        Err(StoreError::MissingRef { reference }) => assert_eq!(reference.pointer, "/tunnel_id"),
        other => panic!("expected MissingRef, got {other:?}"),
    }
    assert!(
        store
            .get(Kind::Hostname, "a.example.com")
            .await
            .expect("get")
            .is_none()
    );

    store
        .create(write(Kind::Tunnel, "t9", "api", vec![]), None)
        .await
        .expect("tunnel");
    let to_tunnel = Ref {
        kind: Kind::Tunnel,
        id: "t9".into(),
        pointer: "/tunnel_id".into(),
    };
    store
        .create(
            write(
                Kind::Hostname,
                "b.example.com",
                "b.example.com",
                vec![to_tunnel],
            ),
            None,
        )
        .await
        .expect("hostname");
    match store.delete(Kind::Tunnel, "t9", None).await {
        Err(StoreError::InUse { referrers, .. }) => assert_eq!(referrers, ["b.example.com"]),
        other => panic!("expected InUse, got {other:?}"),
    }
    store
        .delete(Kind::Hostname, "b.example.com", None)
        .await
        .expect("hostname delete");
    store
        .delete(Kind::Tunnel, "t9", None)
        .await
        .expect("tunnel delete once unused");
}

async fn settings_keep_the_first_value(store: &dyn Store) {
    assert_eq!(
        store
            .setting_or_insert("k", "first".into())
            .await
            .expect("set"),
        "first"
    );
    assert_eq!(
        store
            .setting_or_insert("k", "second".into())
            .await
            .expect("set"),
        "first"
    );
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
    suite(&store).await;
}

#[tokio::test]
async fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        store
            .create(write(Kind::Policy, "p1", "api", vec![]), None)
            .await
            .expect("create");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let dump = store.dump().await.expect("dump");
    assert_eq!(dump.records.len(), 1);
    assert_eq!(dump.revision, 1);
}
