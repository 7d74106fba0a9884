use super::*;

const NOW: i64 = 1_000_000;

fn certificate(names: &[&str], automatic: bool) -> StoredCertificate {
    StoredCertificate {
        id: names.join(","),
        source: CertificateSource::Acme,
        names: names.iter().map(|n| n.to_string()).collect(),
        automatic,
        chain_pem: None,
        key_pem: None,
        not_before: None,
        not_after: None,
        last_error: None,
        failures: 0,
        next_attempt: None,
        created_at: String::new(),
    }
}

fn valid(mut c: StoredCertificate, not_before: i64, not_after: i64) -> StoredCertificate {
    c.chain_pem = Some("chain".into());
    c.not_before = Some(not_before);
    c.not_after = Some(not_after);
    c
}

fn hostnames(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_lifetime_and_never_before_the_backoff() {
    assert_eq!(due_at(&certificate(&["a.example.com"], true)), i64::MIN);
    let issued = valid(certificate(&["a.example.com"], true), NOW, NOW + 90);
    assert_eq!(due_at(&issued), NOW + 60);
    let mut failing = issued.clone();
    failing.next_attempt = Some(NOW + 70);
    assert_eq!(due_at(&failing), NOW + 70);
}

#[test]
fn backoff_doubles_but_leaves_time_to_renew_a_served_certificate() {
    let mut pending = certificate(&["a.example.com"], true);
    let waits: Vec<i64> = (1..=4)
        .map(|failures| {
            pending.failures = failures;
            backoff(&pending, NOW)
        })
        .collect();
    assert_eq!(waits, vec![10, 20, 40, 80]);
    pending.failures = 40;
    assert_eq!(backoff(&pending, NOW), MAX_BACKOFF);
    // A certificate with 100 s left is tried again within 25 s, however often it failed.
    let mut served = valid(certificate(&["a.example.com"], true), NOW - 200, NOW + 100);
    served.failures = 10;
    assert_eq!(backoff(&served, NOW), 25);
    served.not_after = Some(NOW + 8);
    assert_eq!(backoff(&served, NOW), 5);
}

#[test]
fn each_uncovered_hostname_gets_its_own_certificate_and_loses_it_with_the_hostname() {
    let stored = vec![certificate(&["old.example.com"], true)];
    let (add, drop) = reconcile(&stored, &hostnames(&["a.example.com"]), NOW);
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].names, vec!["a.example.com".to_string()]);
    assert!(add[0].automatic);
    assert_eq!(drop.len(), 1);
    assert_eq!(drop[0].names, vec!["old.example.com".to_string()]);
}

#[test]
fn a_wildcard_or_an_upload_covers_hostnames_and_replaces_their_own_once_valid() {
    let hosts = hostnames(&["a.apps.example.com", "b.apps.example.com"]);
    // A wildcard being obtained: no certificate of their own.
    let wildcard = certificate(&["*.apps.example.com"], false);
    let (add, drop) = reconcile(std::slice::from_ref(&wildcard), &hosts, NOW);
    assert!(add.is_empty() && drop.is_empty(), "{add:?} {drop:?}");
    // Their own certificates (made before the wildcard was asked for) go once it is valid.
    let own_a = valid(
        certificate(&["a.apps.example.com"], true),
        NOW - 10,
        NOW + 100,
    );
    let pending_wildcard = vec![wildcard.clone(), own_a.clone()];
    let (_, drop) = reconcile(&pending_wildcard, &hosts, NOW);
    assert!(drop.is_empty(), "kept while the wildcard is pending");
    let valid_wildcard = vec![valid(wildcard.clone(), NOW - 10, NOW + 100), own_a];
    let (_, drop) = reconcile(&valid_wildcard, &hosts, NOW);
    assert_eq!(drop.len(), 1);
    // A wildcard that failed covers nothing: they get their own.
    let mut failed = wildcard;
    failed.last_error = Some("dns-01 failed".into());
    let (add, _) = reconcile(&[failed], &hosts, NOW);
    assert_eq!(add.len(), 2);
    // An upload.
    let mut upload = valid(
        certificate(&["a.apps.example.com"], false),
        NOW - 10,
        NOW + 100,
    );
    upload.source = CertificateSource::Uploaded;
    let (add, _) = reconcile(&[upload], &hosts, NOW);
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].names, vec!["b.apps.example.com".to_string()]);
}
