//! The edge's certificate authority: created on first start and kept in the store (so edge
//! nodes sharing a store share it). It signs connectors' client certificates, bound to their
//! tunnel, and the edge's own server certificates.

use std::time::Duration;

use postern_schema::ids::TunnelId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::issued::ServerIssuer;
use crate::store::{Store, StoreError};

/// The URI SAN prefix that binds a client certificate to its tunnel.
const TUNNEL_URI_PREFIX: &str = "urn:postern:tunnel:";

/// The URI SAN prefix that names an edge node in its peer certificate.
const NODE_URI_PREFIX: &str = "urn:postern:node:";

/// Where the CA lives in the store's settings.
const SETTING: &str = "ca";

/// Why the CA could not do its job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaError {
    /// The store failed.
    #[error("cannot load or save the CA")]
    Store(#[from] StoreError),
    /// Generating, parsing or signing failed.
    #[error("certificate operation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The stored CA is malformed.
    #[error("the stored CA is malformed")]
    Malformed,
}

/// A CA as the store's settings keep it.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredCa {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
}

/// A CA read back from the store: what signs, and its certificate in both encodings.
pub(super) struct LoadedCa {
    pub(super) issuer: Issuer<'static, KeyPair>,
    pub(super) cert_pem: String,
    pub(super) cert_der: CertificateDer<'static>,
}

/// The CA stored under the setting `setting`, storing `fresh` there first when there is none
/// (on a shared store, the first node's wins).
pub(super) async fn load_or_insert(
    store: &dyn Store,
    setting: &str,
    fresh: StoredCa,
) -> Result<LoadedCa, CaError> {
    let stored = store
        .setting_or_insert(
            setting,
            serde_json::to_string(&fresh).map_err(|_| CaError::Malformed)?,
        )
        .await?;
    let stored: StoredCa = serde_json::from_str(&stored).map_err(|_| CaError::Malformed)?;
    let key = KeyPair::from_pem(&stored.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&stored.cert_pem, key)?;
    let cert_der = rustls_pki_types::pem::PemObject::from_pem_slice(stored.cert_pem.as_bytes())
        .map_err(|_| CaError::Malformed)?;
    Ok(LoadedCa {
        issuer,
        cert_pem: stored.cert_pem,
        cert_der,
    })
}

/// The edge CA.
pub(crate) struct EdgeCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for EdgeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeCa")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl EdgeCa {
    /// Loads the CA from the store, creating it on first start.
    pub(crate) async fn load_or_create(store: &dyn Store) -> Result<Self, CaError> {
        let loaded = load_or_insert(store, SETTING, generate_ca()?).await?;
        Ok(Self {
            issuer: loaded.issuer,
            cert_pem: loaded.cert_pem,
            cert_der: loaded.cert_der,
        })
    }

    /// The CA certificate, PEM.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub(crate) fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Lowercase hex SHA-256 of the CA certificate's DER: what tokens pin.
    pub(crate) fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.cert_der.as_ref()))
    }

    /// Signs a connector's CSR as a client certificate bound to `tunnel`, valid for `lifetime`.
    /// Only the CSR's public key is used; everything else is the edge's choice.
    pub(crate) fn sign_tunnel_csr(
        &self,
        csr_der: &[u8],
        tunnel: TunnelId,
        lifetime: Duration,
    ) -> Result<CertificateDer<'static>, CaError> {
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())?;
        let mut params = leaf_params(lifetime)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tunnel {tunnel}"));
        params.subject_alt_names = vec![SanType::URI(
            format!("{TUNNEL_URI_PREFIX}{tunnel}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params = params;
        Ok(csr.signed_by(&self.issuer)?.der().clone())
    }

    /// Issues a server certificate and key for `names` (DNS names or IP addresses), usable for
    /// server authentication only.
    pub(crate) fn issue_server_cert(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(lifetime)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names
                .first()
                .cloned()
                .unwrap_or_else(|| "postern edge".into()),
        );
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        // A server only: such a certificate (and its key, which sits in the edge's memory for
        // every hostname it serves) is no good as a client certificate anywhere.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key))
    }

    /// Issues the certificate and key edge node `node_id` presents to other nodes on
    /// `postern-peer/1`, as server and as client: named [`PEER_SERVER_NAME`] and, by URI SAN,
    /// `urn:postern:node:<node_id>`, usable for both server and client authentication (nodes
    /// dial each other's tunnel listeners). Only a holder of the CA key (an edge node) can make
    /// one.
    ///
    /// [`PEER_SERVER_NAME`]: postern_schema::wire::PEER_SERVER_NAME
    pub(crate) fn issue_node_cert(
        &self,
        node_id: &str,
        lifetime: Duration,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(lifetime)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("edge node {node_id}"));
        params.subject_alt_names = vec![
            SanType::DnsName(postern_schema::wire::PEER_SERVER_NAME.try_into()?),
            SanType::URI(format!("{NODE_URI_PREFIX}{node_id}").try_into()?),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key))
    }
}

impl ServerIssuer for EdgeCa {
    fn issue_server_chain(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let (cert, key) = self
            .issue_server_cert(names, lifetime)
            .map_err(|e| e.to_string())?;
        Ok((vec![cert, self.cert_der.clone()], key))
    }
}

/// The tunnel a client certificate (already verified against the CA) is bound to.
pub(crate) fn tunnel_of_certificate(cert: &CertificateDer<'_>) -> Option<TunnelId> {
    uri_san(cert, TUNNEL_URI_PREFIX).and_then(|id| id.parse().ok())
}

/// The edge node a peer certificate (already verified against the CA) names; `None` for any
/// other certificate of the CA, such as a connector's.
pub(crate) fn node_of_certificate(cert: &CertificateDer<'_>) -> Option<String> {
    uri_san(cert, NODE_URI_PREFIX).filter(|id| !id.is_empty())
}

/// The rest of the first URI SAN that starts with `prefix`.
fn uri_san(cert: &CertificateDer<'_>, prefix: &str) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(prefix).map(str::to_string)
        }
        _ => None,
    })
}

fn generate_ca() -> Result<StoredCa, CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Postern edge CA");
    name.push(DnType::OrganizationName, "Postern");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
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

fn leaf_params(lifetime: Duration) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let now = OffsetDateTime::now_utc();
    // Allow for clocks a little behind ours.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::try_from(lifetime).map_err(|_| CaError::Malformed)?;
    params.serial_number = Some(random_serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

pub(super) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, non-zero leading byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::SqliteStore;

    const LIFETIME: Duration = Duration::from_secs(3_600);

    /// (server auth, client auth) in the certificate's extended key usage.
    fn usages(cert: &CertificateDer<'_>) -> (bool, bool) {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).expect("a certificate");
        let usage = parsed
            .extended_key_usage()
            .expect("a well-formed extension")
            .expect("an extended key usage")
            .value;
        assert!(!usage.any, "anyExtendedKeyUsage");
        assert!(usage.other.is_empty(), "{:?}", usage.other);
        (usage.server_auth, usage.client_auth)
    }

    #[tokio::test]
    async fn each_certificate_may_be_used_only_the_way_it_is_used() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("ca.db")).expect("store"));
        let ca = EdgeCa::load_or_create(store.as_ref()).await.expect("ca");

        // The tunnel listener's and the HTTPS fallback's: a server only.
        let (server, _) = ca
            .issue_server_cert(&["tunnel.postern.invalid".into()], LIFETIME)
            .expect("server certificate");
        assert_eq!(usages(&server), (true, false));

        // A connector's: a client only.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .expect("csr");
        let client = ca
            .sign_tunnel_csr(csr.der(), TunnelId::new_random(), LIFETIME)
            .expect("client certificate");
        assert_eq!(usages(&client), (false, true));

        // An edge node's: both, since nodes dial each other and accept each other's links.
        let (node, _) = ca
            .issue_node_cert("node-a", LIFETIME)
            .expect("node certificate");
        assert_eq!(usages(&node), (true, true));
    }
}
