use postern_schema::secret::Secret;
use rcgen::{CertificateParams, KeyPair};

use super::*;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A stored certificate `id` from `source` for `names`, expiring at `not_after`.
fn stored(
    id: &str,
    source: CertificateSource,
    names: &[&str],
    not_after: i64,
) -> StoredCertificate {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let cert = params.self_signed(&key).expect("cert");
    StoredCertificate {
        id: id.into(),
        source,
        names: names.iter().map(|n| n.to_string()).collect(),
        automatic: false,
        chain_pem: Some(cert.pem()),
        key_pem: Some(Secret::new(key.serialize_pem())),
        not_before: Some(0),
        not_after: Some(not_after),
        last_error: None,
        failures: 0,
        next_attempt: None,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

const NOW: i64 = 1_000_000;

#[test]
fn uploaded_before_acme_exact_before_wildcard_and_never_expired() {
    use CertificateSource::{Acme, Uploaded};
    let host = "a.apps.example.com";
    let all = vec![
        stored("acme-wild", Acme, &["*.apps.example.com"], NOW + 100),
        stored("acme-exact", Acme, &[host], NOW + 100),
        stored("up-wild", Uploaded, &["*.apps.example.com"], NOW + 100),
        stored("up-exact", Uploaded, &[host], NOW + 100),
        stored("up-exact-expired", Uploaded, &[host], NOW - 1),
    ];
    // Take them away, best first: each time the next best is served.
    let order = ["up-exact", "up-wild", "acme-exact", "acme-wild"];
    for (i, expected) in order.iter().enumerate() {
        let left: Vec<StoredCertificate> = all
            .iter()
            .filter(|c| !order[..i].contains(&c.id.as_str()))
            .cloned()
            .collect();
        let table = Table::build(left, &[], &provider());
        assert_eq!(
            table.select(host, NOW).map(|s| s.id.as_str()),
            Some(*expected)
        );
    }
    let expired_only = Table::build(
        vec![stored("old", Uploaded, &[host], NOW - 1)],
        &[],
        &provider(),
    );
    assert!(expired_only.select(host, NOW).is_none());
    // The wildcard covers one label only.
    let table = Table::build(all, &[], &provider());
    assert!(table.select("apps.example.com", NOW).is_none());
    assert!(table.select("b.a.apps.example.com", NOW).is_none());
}

#[test]
fn keys_are_not_kept_in_the_listing_and_challenges_are_indexed() {
    let challenges = [
        PendingChallenge {
            kind: ChallengeKind::Http01,
            key: "token".into(),
            value: "token.thumb".into(),
            expires_at: NOW,
        },
        PendingChallenge {
            kind: ChallengeKind::Dns01,
            key: "apps.example.com".into(),
            value: "v1".into(),
            expires_at: NOW,
        },
        PendingChallenge {
            kind: ChallengeKind::Dns01,
            key: "apps.example.com".into(),
            value: "v2".into(),
            expires_at: NOW,
        },
        PendingChallenge {
            kind: ChallengeKind::TlsAlpn01,
            key: "app.example.com".into(),
            value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]),
            expires_at: NOW,
        },
    ];
    let table = Table::build(
        vec![stored(
            "x",
            CertificateSource::Uploaded,
            &["app.example.com"],
            NOW + 1,
        )],
        &challenges,
        &provider(),
    );
    assert!(table.certificates.iter().all(|c| c.key_pem.is_none()));
    assert_eq!(table.http01("token"), Some("token.thumb"));
    assert_eq!(
        table.dns01().get("_acme-challenge.apps.example.com"),
        Some(&vec!["v1".to_string(), "v2".to_string()])
    );
    let alpn = table
        .tls_alpn01("app.example.com")
        .expect("challenge certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(alpn.cert[0].as_ref()).expect("x509");
    let extension = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("acmeIdentifier");
    assert!(extension.critical);
}

#[test]
fn status_follows_the_chain_and_the_last_error() {
    let mut certificate = stored("x", CertificateSource::Acme, &["app.example.com"], NOW + 10);
    assert_eq!(status_of(&certificate, NOW), Status::Valid);
    certificate.last_error = Some("the ACME server is down".into());
    assert_eq!(
        status_of(&certificate, NOW),
        Status::Valid,
        "a renewal failed: still valid"
    );
    assert_eq!(status_of(&certificate, NOW + 10), Status::Failed, "expired");
    certificate.chain_pem = None;
    certificate.not_after = None;
    assert_eq!(status_of(&certificate, NOW), Status::Failed);
    certificate.last_error = None;
    assert_eq!(status_of(&certificate, NOW), Status::Pending);
}
