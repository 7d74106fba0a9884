//! The visitors' CA: what the HTTPS listener falls back to for a hostname that has no public
//! certificate (none uploaded, ACME off or not done yet). It is not the tunnel CA, and it is
//! name-constrained (RFC 5280, 4.2.1.10) to the edge's zones and to no IP address at all, so a
//! client that trusts it trusts it for those zones and nothing else; its key in the store can
//! vouch for nothing beyond them. One per set of zones, made on first start and kept in the
//! store (nodes on one store with the same `--zone` flags share it).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::authority::{CaError, StoredCa, hex, load_or_insert, random_serial};
use super::issued::ServerIssuer;
use crate::store::Store;

/// Where the CA for a set of zones lives in the store's settings: this, then the SHA-256 of
/// the sorted zones.
const SETTING_PREFIX: &str = "visitor-ca:";

/// The visitors' CA for the edge's zones.
pub(crate) struct VisitorCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    zones: Vec<String>,
}

impl std::fmt::Debug for VisitorCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorCa")
            .field("zones", &self.zones)
            .finish()
    }
}

impl VisitorCa {
    /// Loads the CA for `zones` from the store, creating it on first start.
    pub(crate) async fn load_or_create(
        store: &dyn Store,
        zones: &[String],
    ) -> Result<Self, CaError> {
        let mut zones: Vec<String> = zones.iter().map(|z| z.to_ascii_lowercase()).collect();
        zones.sort();
        zones.dedup();
        let key = format!(
            "{SETTING_PREFIX}{}",
            hex(&Sha256::digest(zones.join(",").as_bytes()))
        );
        let loaded = load_or_insert(store, &key, generate(&zones)?).await?;
        Ok(Self {
            issuer: loaded.issuer,
            cert_pem: loaded.cert_pem,
            cert_der: loaded.cert_der,
            zones,
        })
    }

    /// The CA certificate, PEM: what a client may trust for the edge's zones.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate for `names`, DNS names inside the zones.
    fn issue(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after =
            now + time::Duration::try_from(lifetime).map_err(|_| CaError::Malformed)?;
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.clone());
        }
        params.subject_alt_names = names
            .iter()
            .map(|name| name.clone().try_into().map(SanType::DnsName))
            .collect::<Result<_, _>>()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key))
    }
}

impl ServerIssuer for VisitorCa {
    fn issue_server_chain(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        // Its name constraints would make such a certificate worthless anyway; do not make it.
        if let Some(outside) = names.iter().find(|name| {
            !self
                .zones
                .iter()
                .any(|zone| postern_schema::rules::in_zone(name, zone))
        }) {
            return Err(format!("{outside} is outside the edge's zones"));
        }
        let (cert, key) = self.issue(names, lifetime).map_err(|e| e.to_string())?;
        Ok((vec![cert, self.cert_der.clone()], key))
    }
}

fn generate(zones: &[String]) -> Result<StoredCa, CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Postern visitors' CA");
    name.push(DnType::OrganizationName, "Postern");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: zones
            .iter()
            .map(|zone| GeneralSubtree::DnsName(zone.clone()))
            .collect(),
        // No IP address, of either family.
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    Ok(StoredCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A self-signed certificate for `names` (DNS names or IP addresses), from no CA: what the HTTPS
/// listener shows a hello for a name that is not a hostname (no SNI, an IP address, an unknown
/// name). Nothing trusts it, which is right: no such name is served.
pub(crate) fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "postern edge (no such hostname)");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => name.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;
    use crate::ca::EdgeCa;
    use crate::store::SqliteStore;

    fn verify(ca: &VisitorCa, chain: &[CertificateDer<'static>], name: &str) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der.clone()).expect("root");
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_string()).expect("name"),
                &[],
                UnixTime::now(),
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_visitors_ca_vouches_for_its_zones_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("ca.db")).expect("store"));
        let zones = vec!["example.com".to_string(), "example.net".to_string()];
        let ca = VisitorCa::load_or_create(store.as_ref(), &zones)
            .await
            .expect("ca");
        let tunnel_ca = EdgeCa::load_or_create(store.as_ref()).await.expect("ca");
        assert_ne!(ca.cert_pem(), tunnel_ca.cert_pem(), "not the tunnel CA");
        // The same zones, the same CA (another node on the store, a restart).
        let again = VisitorCa::load_or_create(
            store.as_ref(),
            &["example.net".into(), "example.com".into()],
        )
        .await
        .expect("ca");
        assert_eq!(again.cert_pem(), ca.cert_pem());

        let (chain, _) = ca
            .issue_server_chain(&["app.example.com".into()], Duration::from_secs(3600))
            .expect("issue");
        verify(&ca, &chain, "app.example.com").expect("a name in a zone verifies");

        // It will not issue outside its zones; and what its key signs there is refused.
        assert!(
            ca.issue_server_chain(&["evil.example.org".into()], Duration::from_secs(3600))
                .is_err()
        );
        let (outside, _) = ca
            .issue(&["evil.example.org".into()], Duration::from_secs(3600))
            .expect("signed anyway");
        let refused = verify(&ca, &[outside, ca.cert_der.clone()], "evil.example.org")
            .expect_err("outside the name constraints");
        assert!(refused.to_lowercase().contains("name"), "{refused}");
    }
}
