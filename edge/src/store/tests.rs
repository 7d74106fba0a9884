//! The store suite: every `Store` implementation must pass it.

use serde_json::json;

use super::*;

/// Runs every store property against a fresh, empty store.
pub(crate) async fn suite(store: &dyn Store) {
    versions_and_names(store).await;
    references_are_enforced(store).await;
    settings_keep_the_first_value(store).await;
    failed_writes_change_nothing(store).await;
    revisions_count_every_write(store).await;
    lists_are_ordered_by_name_bytewise(store).await;
    api_tokens_are_kept_once(store).await;
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
    // Taking a setting removes it: the second taker gets nothing.
    assert_eq!(
        store.take_setting("k").await.expect("take"),
        Some("first".into())
    );
    assert_eq!(store.take_setting("k").await.expect("take again"), None);
}

async fn failed_writes_change_nothing(store: &dyn Store) {
    let policy = store
        .create(write(Kind::Policy, "p-keep", "keep", vec![]), None)
        .await
        .expect("policy");
    store
        .create(write(Kind::Policy, "p-other", "other", vec![]), None)
        .await
        .expect("policy");
    let before = store.dump().await.expect("dump");

    assert!(matches!(
        store
            .create(write(Kind::Policy, "p-keep", "fresh", vec![]), None)
            .await,
        Err(StoreError::NameTaken { .. })
    ));
    assert!(matches!(
        store
            .replace(
                "p-keep",
                write(Kind::Policy, "p-keep", "other", vec![]),
                None
            )
            .await,
        Err(StoreError::NameTaken { .. })
    ));
    assert!(matches!(
        store
            .replace("nope", write(Kind::Policy, "nope", "nope", vec![]), None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let dangling = Ref {
        kind: Kind::Policy,
        id: "missing".into(),
        pointer: "/policy_ids/1".into(),
    };
    match store
        .replace(
            "p-keep",
            write(Kind::Policy, "p-keep", "renamed", vec![dangling]),
            Some(policy.version),
        )
        .await
    {
        Err(StoreError::MissingRef { reference }) => {
            assert_eq!(reference.pointer, "/policy_ids/1")
        }
        other => panic!("expected MissingRef, got {other:?}"),
    }

    let after = store.dump().await.expect("dump");
    assert_eq!(
        after.revision, before.revision,
        "a failed write moved the revision"
    );
    assert_eq!(
        after.records, before.records,
        "a failed write changed a record"
    );
    for id in ["p-keep", "p-other"] {
        store
            .delete(Kind::Policy, id, None)
            .await
            .expect("delete policy");
    }
}

async fn revisions_count_every_write(store: &dyn Store) {
    let start = store.dump().await.expect("dump").revision;
    let created = store
        .create(write(Kind::Tunnel, "t-rev", "rev", vec![]), None)
        .await
        .expect("create");
    assert_eq!(created.revision, start + 1);
    let replaced = store
        .replace("t-rev", write(Kind::Tunnel, "t-rev", "rev2", vec![]), None)
        .await
        .expect("replace");
    assert_eq!(replaced.revision, start + 2);
    assert_eq!(replaced.created_at, created.created_at);
    let dump = store.dump().await.expect("dump");
    assert_eq!(dump.revision, start + 2);
    assert!(dump.records.contains(&replaced));
    assert_eq!(
        store.get(Kind::Tunnel, "t-rev").await.expect("get"),
        Some(replaced.clone())
    );
    let deleted = store
        .delete(Kind::Tunnel, "t-rev", Some(2))
        .await
        .expect("delete");
    assert_eq!(
        deleted.revision,
        start + 3,
        "delete reports its own revision"
    );
    assert_eq!(deleted.version, 2);
    assert_eq!(deleted.name, "rev2");
    assert_eq!(store.dump().await.expect("dump").revision, start + 3);
    // Settings and tokens are not catalog changes.
    store
        .setting_or_insert("rev-test", "x".into())
        .await
        .expect("setting");
    assert_eq!(store.dump().await.expect("dump").revision, start + 3);
}

async fn lists_are_ordered_by_name_bytewise(store: &dyn Store) {
    // Bytewise, `-` (0x2d) sorts before `0` (0x30): a locale collation would disagree.
    let names = ["b", "a0", "a-z", "a"];
    for name in names {
        store
            .create(
                write(Kind::Tunnel, &format!("id-{name}"), name, vec![]),
                None,
            )
            .await
            .expect("create");
    }
    store
        .create(write(Kind::Policy, "p-a", "a", vec![]), None)
        .await
        .expect("create");
    let listed = store.list(Kind::Tunnel).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a", "a-z", "a0", "b"]
    );
    let dump = store.dump().await.expect("dump");
    let kinds: Vec<Kind> = dump.records.iter().map(|r| r.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| k.as_str());
    assert_eq!(kinds, sorted, "dump is ordered by kind");
    for name in names {
        store
            .delete(Kind::Tunnel, &format!("id-{name}"), None)
            .await
            .expect("delete");
    }
    store
        .delete(Kind::Policy, "p-a", None)
        .await
        .expect("delete");
    assert!(store.list(Kind::Tunnel).await.expect("list").is_empty());
}

async fn api_tokens_are_kept_once(store: &dyn Store) {
    let token = |id: &str, hash: &str, name: &str, role: &str| ApiTokenRecord {
        id: id.into(),
        hash: hash.into(),
        name: name.into(),
        role: role.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        expires_at: None,
    };
    let admin = token(
        "00000000-0000-4000-8000-000000000001",
        &"ab".repeat(32),
        "admin",
        "admin",
    );
    store.add_api_token(admin.clone()).await.expect("add");
    let again = ApiTokenRecord {
        id: "00000000-0000-4000-8000-000000000009".into(),
        ..admin.clone()
    };
    store.add_api_token(again).await.expect("add again");
    let ci = ApiTokenRecord {
        expires_at: Some("2030-01-01T00:00:00Z".into()),
        ..token(
            "00000000-0000-4000-8000-000000000002",
            &"cd".repeat(32),
            "ci",
            "editor",
        )
    };
    store.add_api_token(ci.clone()).await.expect("add ci");
    assert_eq!(
        store.api_tokens().await.expect("tokens"),
        [admin.clone(), ci.clone()]
    );
    assert!(store.delete_api_token(&ci.id).await.expect("delete"));
    assert!(!store.delete_api_token(&ci.id).await.expect("delete again"));
    assert_eq!(store.api_tokens().await.expect("tokens"), [admin]);
    assert_eq!(
        store.secret(Kind::Tunnel, "nope").await.expect("secret"),
        None
    );
}

#[tokio::test]
async fn tokens_made_before_roles_become_admin_tokens_with_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // The store as the edge wrote it before tokens had roles (schema 1).
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE api_tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
             INSERT INTO api_tokens VALUES ('aa', 'admin', '2025-01-01T00:00:00Z');
             INSERT INTO api_tokens VALUES ('bb', 'admin', '2025-01-02T00:00:00Z');
             CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
                 version INTEGER NOT NULL, revision INTEGER NOT NULL, created_at TEXT NOT NULL,
                 body TEXT NOT NULL, secret TEXT, PRIMARY KEY (kind, id), UNIQUE (kind, name));
             CREATE TABLE refs (from_kind TEXT NOT NULL, from_id TEXT NOT NULL,
                 to_kind TEXT NOT NULL, to_id TEXT NOT NULL,
                 PRIMARY KEY (from_kind, from_id, to_kind, to_id));
             CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO settings (key, value) VALUES ('revision', '0');
             PRAGMA user_version = 1;",
        )
        .expect("old schema");
    }
    let store = SqliteStore::open(&path).expect("migrate");
    let tokens = store.api_tokens().await.expect("tokens");
    assert_eq!(tokens.len(), 2);
    for token in &tokens {
        assert_eq!(token.role, "admin");
        assert!(token.id.parse::<uuid::Uuid>().is_ok(), "{}", token.id);
        assert_eq!(token.expires_at, None);
    }
    assert_ne!(tokens[0].id, tokens[1].id);
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

mod postgres {
    //! The PostgreSQL store against a throwaway server (`acceptance::PostgresServer`): the suite,
    //! then what only a shared store must do: migrations and `If-Match` that hold across nodes,
    //! change notifications, and failing fast (then recovering) while the database is down.

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use acceptance::PostgresServer;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;

    async fn fresh() -> (PostgresServer, PostgresStore) {
        let server = PostgresServer::start();
        let store = PostgresStore::connect(&server.url())
            .await
            .unwrap_or_else(|e| panic!("connect: {e:?}\nserver log:\n{}", server.log()));
        (server, store)
    }

    /// A raw connection, to look at the database behind the store's back.
    async fn raw(server: &PostgresServer) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
            .await
            .expect("raw connection");
        tokio::spawn(connection);
        client
    }

    /// Follows `store`'s change feed; every notification arrives as one message.
    fn follow(store: &PostgresStore) -> (mpsc::UnboundedReceiver<()>, CancellationToken) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(store.change_feed().run(
            move || {
                let _ = sender.send(());
            },
            cancel.clone(),
        ));
        (receiver, cancel)
    }

    async fn next_change(changes: &mut mpsc::UnboundedReceiver<()>, within: Duration) {
        tokio::time::timeout(within, changes.recv())
            .await
            .expect("no change notification in time")
            .expect("the feed stopped");
    }

    #[tokio::test]
    async fn postgres_store_passes_the_suite() {
        let (_server, store) = fresh().await;
        suite(&store).await;
    }

    #[tokio::test]
    async fn nodes_starting_together_migrate_once() {
        let server = PostgresServer::start();
        let url = server.url();
        let starts = (0..4).map(|_| PostgresStore::connect(&url));
        for started in futures::future::join_all(starts).await {
            started.expect("every node starts");
        }
        // A later start finds nothing to do.
        PostgresStore::connect(&url).await.expect("restart");
        let versions: Vec<i32> = raw(&server)
            .await
            .query(
                "SELECT version FROM postern_migrations ORDER BY version",
                &[],
            )
            .await
            .expect("migrations")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let every: Vec<i32> = (1..)
            .take(super::super::postgres::MIGRATIONS.len())
            .collect();
        assert_eq!(versions, every, "each migration once, in order");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_edge_is_refused() {
        let (server, _store) = fresh().await;
        raw(&server)
            .await
            .execute("INSERT INTO postern_migrations (version) VALUES (99)", &[])
            .await
            .expect("insert");
        assert!(matches!(
            PostgresStore::connect(&server.url()).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn if_match_holds_across_nodes() {
        let (server, node_a) = fresh().await;
        let node_b = PostgresStore::connect(&server.url()).await.expect("node b");
        node_a
            .create(write(Kind::Tunnel, "t1", "web", vec![]), None)
            .await
            .expect("create");
        for round in 1..=20u64 {
            let (a, b) = tokio::join!(
                node_a.replace(
                    "t1",
                    write(Kind::Tunnel, "t1", &format!("a{round}"), vec![]),
                    Some(round)
                ),
                node_b.replace(
                    "t1",
                    write(Kind::Tunnel, "t1", &format!("b{round}"), vec![]),
                    Some(round)
                ),
            );
            let (winner, loser) = match (a, b) {
                (Ok(winner), Err(loser)) | (Err(loser), Ok(winner)) => (winner, loser),
                other => panic!("round {round}: expected exactly one winner, got {other:?}"),
            };
            assert_eq!(winner.version, round + 1);
            assert!(
                matches!(loser, StoreError::VersionMismatch { current, .. } if current == round + 1),
                "round {round}: {loser:?}"
            );
        }
        // Creating one name through both nodes at once: one wins.
        let (a, b) = tokio::join!(
            node_a.create(write(Kind::Policy, "pa", "same", vec![]), None),
            node_b.create(write(Kind::Policy, "pb", "same", vec![]), None),
        );
        assert!(
            matches!(
                (&a, &b),
                (Ok(_), Err(StoreError::NameTaken { .. }))
                    | (Err(StoreError::NameTaken { .. }), Ok(_))
            ),
            "{a:?} {b:?}"
        );
        // Every write got its own revision, in order.
        assert_eq!(node_b.dump().await.expect("dump").revision, 1 + 20 + 1);
    }

    #[tokio::test]
    async fn writes_on_one_node_are_announced_to_the_others() {
        let (server, node_a) = fresh().await;
        let node_b = PostgresStore::connect(&server.url()).await.expect("node b");
        let (mut changes, cancel) = follow(&node_b);
        // The first call reports the (re)connection itself.
        next_change(&mut changes, Duration::from_secs(5)).await;

        let started = Instant::now();
        node_a
            .create(write(Kind::Tunnel, "t1", "web", vec![]), None)
            .await
            .expect("create");
        next_change(&mut changes, Duration::from_secs(1)).await;
        assert!(started.elapsed() < Duration::from_secs(1));

        // A write that fails is rolled back, and so is its notification.
        assert!(
            node_a
                .create(write(Kind::Tunnel, "t2", "web", vec![]), None)
                .await
                .is_err()
        );
        node_a
            .delete(Kind::Tunnel, "t1", None)
            .await
            .expect("delete");
        next_change(&mut changes, Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(changes.try_recv().is_err(), "a failed write was announced");
        cancel.cancel();
    }

    #[tokio::test]
    async fn an_unresponsive_database_fails_within_the_bounds() {
        let (mut server, store) = fresh().await;
        store.list(Kind::Tunnel).await.expect("a pooled connection");
        server.pause();
        // The pooled connection hangs: the operation bound ends the call (and the connection).
        let started = Instant::now();
        let read = store.list(Kind::Tunnel).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(7), "a hung call took {took:?}");
        // A new connection is accepted by the kernel but never greeted: the connect bound.
        let started = Instant::now();
        let written = store
            .create(write(Kind::Tunnel, "t1", "web", vec![]), None)
            .await;
        assert!(
            matches!(written, Err(StoreError::Unavailable(_))),
            "{written:?}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "connecting took {took:?}");
        server.resume();
        store
            .create(write(Kind::Tunnel, "t1", "web", vec![]), None)
            .await
            .expect("a write once the database answers again");
    }

    #[tokio::test]
    async fn an_outage_fails_fast_and_the_store_recovers_without_a_restart() {
        let (mut server, store) = fresh().await;
        let store = Arc::new(store);
        let (mut changes, cancel) = follow(&store);
        next_change(&mut changes, Duration::from_secs(5)).await;
        store
            .create(write(Kind::Tunnel, "t1", "web", vec![]), None)
            .await
            .expect("create");
        next_change(&mut changes, Duration::from_secs(1)).await;

        server.stop();
        for _ in 0..3 {
            let started = Instant::now();
            let read = store.list(Kind::Tunnel).await;
            assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
            let written = store
                .create(write(Kind::Tunnel, "t2", "api", vec![]), None)
                .await;
            assert!(
                matches!(written, Err(StoreError::Unavailable(_))),
                "{written:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "failing took {:?}",
                started.elapsed()
            );
        }

        server.restart();
        let created = store
            .create(write(Kind::Tunnel, "t2", "api", vec![]), None)
            .await
            .expect("a write after the database returned");
        assert_eq!(created.revision, 2);
        assert_eq!(store.list(Kind::Tunnel).await.expect("list").len(), 2);
        // The feed reconnects (and reports that), then hears new writes again.
        next_change(&mut changes, Duration::from_secs(10)).await;
        while changes.try_recv().is_ok() {}
        store
            .delete(Kind::Tunnel, "t2", None)
            .await
            .expect("delete");
        next_change(&mut changes, Duration::from_secs(1)).await;
        cancel.cancel();
    }

    fn advert(node_id: &str) -> cluster::NodeAdvert {
        cluster::NodeAdvert {
            node_id: node_id.into(),
            peer_address: format!("{node_id}.internal:7844"),
            public_addresses: vec!["127.0.0.2".into()],
            tunnel_addresses: vec![format!("{node_id}.internal:7844")],
            holdings: vec![cluster::Holding {
                tunnel_id: postern_schema::ids::TunnelId::new_random(),
                connections: 2,
            }],
        }
    }

    fn node_ids(leases: &[cluster::NodeLease]) -> Vec<&str> {
        leases.iter().map(|l| l.advert.node_id.as_str()).collect()
    }

    #[tokio::test]
    async fn node_leases_list_the_live_nodes_expire_and_can_be_given_up() {
        use cluster::ClusterStore;
        let (server, node_a) = fresh().await;
        let node_b = PostgresStore::connect(&server.url()).await.expect("node b");
        let (sender, mut announced) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(node_a.cluster_feed().run(
            move || {
                let _ = sender.send(());
            },
            cancel.clone(),
        ));
        // The feed reports once when it starts following.
        next_change(&mut announced, Duration::from_secs(5)).await;

        let (a, b) = (advert("a"), advert("b"));
        let lease = Duration::from_secs(3);
        let seen = node_a.heartbeat(&a, lease, false).await.expect("a");
        assert_eq!(node_ids(&seen), ["a"]);
        assert_eq!(seen[0].advert, a, "the advert round-trips");
        assert!(seen[0].remaining > Duration::from_secs(2) && seen[0].remaining <= lease);

        // A short lease, announced: the other node hears of it, then sees it run out.
        let seen = node_b
            .heartbeat(&b, Duration::from_millis(300), true)
            .await
            .expect("b");
        assert_eq!(node_ids(&seen), ["a", "b"]);
        next_change(&mut announced, Duration::from_secs(1)).await;
        assert_eq!(
            node_ids(&node_a.members().await.expect("members")),
            ["a", "b"]
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(node_ids(&node_a.members().await.expect("members")), ["a"]);

        // Renewed, then given up: gone at once, and announced.
        node_b.heartbeat(&b, lease, false).await.expect("renew");
        assert_eq!(
            node_ids(&node_a.members().await.expect("members")),
            ["a", "b"]
        );
        while announced.try_recv().is_ok() {}
        node_b.leave("b").await.expect("leave");
        next_change(&mut announced, Duration::from_secs(1)).await;
        assert_eq!(node_ids(&node_a.members().await.expect("members")), ["a"]);
        cancel.cancel();
    }
}
