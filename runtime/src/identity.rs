//! The connector's identity: its own P-256 key (generated here, kept in a 0600 file under the
//! state directory, never sent anywhere), the short-lived client certificate the edge signed
//! for it, and the pinned edge CA. Enrolment turns the token's secret and a CSR into that
//! certificate; renewal (over the authenticated tunnel) replaces it before it expires.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_schema::token::TunnelToken;
use postern_schema::wire::{
    self, EnrollAnswer, EnrollRequest, RefusalReason, decode_der, encode_der, encode_frame,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::egress::Egress;
use crate::tls::{self, TlsConfigError, edge_server_name, fingerprint};

/// The private key file, PKCS#8 PEM, mode 0600.
const KEY_FILE: &str = "key.pem";
/// The client certificate, PEM.
const CERT_FILE: &str = "cert.pem";
/// The edge CA certificate, PEM.
const CA_FILE: &str = "ca.pem";

/// How long one enrolment attempt may take.
const ENROL_TIMEOUT: Duration = Duration::from_secs(15);

/// A certificate is treated as expired this long before its end (or a quarter of its
/// lifetime, if that is shorter).
const EXPIRY_MARGIN: i64 = 60;

/// Why the identity could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file or directory could not be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a usable key.
    #[error("the key in {path} is not a usable P-256 key; remove the file to make a new one")]
    BadKey {
        /// The path.
        path: String,
    },
    /// Generating a key or CSR failed.
    #[error("cannot generate a key or certificate request")]
    Generate(#[from] rcgen::Error),
    /// A certificate from the edge is not acceptable.
    #[error("the certificate from the edge is not acceptable: {0}")]
    BadCertificate(String),
}

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The edge could not be reached.
    #[error("cannot reach the edge at {address}")]
    Unreachable {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (for example, the edge's CA is not the pinned one).
    #[error("TLS with the edge at {address} failed")]
    Tls {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The edge broke the enrolment protocol.
    #[error("the edge at {address} answered the enrolment wrongly: {detail}")]
    Protocol {
        /// The address.
        address: String,
        /// What was wrong.
        detail: String,
    },
    /// The edge refused.
    #[error("the edge refused enrolment: {message}")]
    Refused {
        /// Why.
        reason: RefusalReason,
        /// The edge's words.
        message: String,
    },
    /// The granted certificate could not be stored.
    #[error("cannot store the enrolled certificate")]
    Identity(#[from] IdentityError),
    /// TLS could not be configured.
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    /// The token names no edge address.
    #[error("the token names no edge address")]
    NoAddress,
}

impl EnrolError {
    /// Will retrying never help?
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, EnrolError::Refused { reason, .. } if reason.is_permanent())
    }

    /// Was the tunnel deleted?
    pub(crate) fn is_unknown_tunnel(&self) -> bool {
        matches!(
            self,
            EnrolError::Refused {
                reason: RefusalReason::UnknownTunnel,
                ..
            }
        )
    }
}

/// A client certificate signed by the pinned CA, with its validity (Unix seconds).
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// The client certificate.
    pub(crate) cert: CertificateDer<'static>,
    /// Start of validity.
    pub(crate) not_before: i64,
    /// End of validity.
    pub(crate) not_after: i64,
    /// When this connector got it (or loaded it from disk).
    pub(crate) received_at: i64,
}

impl Credentials {
    /// Usable for a new connection at `now` (Unix seconds)?
    pub(crate) fn is_valid_at(&self, now: i64) -> bool {
        let start = self.received_at.max(self.not_before);
        let margin = EXPIRY_MARGIN.min((self.not_after - start) / 4);
        now + margin < self.not_after
    }

    /// When to ask for a new certificate: two thirds of the way from when it was received
    /// (the edge backdates `not_before` for clock skew) to its end.
    pub(crate) fn renew_at(&self) -> i64 {
        let start = self.received_at.max(self.not_before);
        start + (self.not_after - start) * 2 / 3
    }
}

/// The connector's key, certificate and pinned CA.
pub struct Identity {
    dir: PathBuf,
    token: TunnelToken,
    key: KeyPair,
    current: RwLock<Option<Arc<Credentials>>>,
    /// Counts stored certificates, so a renewal can wait for the next one.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("dir", &self.dir)
            .field("tunnel_id", &self.token.tunnel_id)
            .finish()
    }
}

impl Identity {
    /// Opens (creating) `<state_dir>/tunnels/<tunnel id>/`: loads or generates the key, and
    /// loads a stored certificate that is still valid and signed by the pinned CA.
    pub fn open(state_dir: &Path, token: TunnelToken) -> Result<Self, IdentityError> {
        let dir = state_dir.join("tunnels").join(token.tunnel_id.to_string());
        create_private_dir(state_dir)?;
        create_private_dir(&state_dir.join("tunnels"))?;
        create_private_dir(&dir)?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        let identity = Self {
            dir,
            token,
            key,
            current: RwLock::new(None),
            generation: watch::channel(0).0,
        };
        if let Some(credentials) = identity.load_stored()
            && credentials.is_valid_at(unix_now())
        {
            *identity.current.write().unwrap_or_else(|p| p.into_inner()) =
                Some(Arc::new(credentials));
        }
        Ok(identity)
    }

    /// The token.
    pub(crate) fn token(&self) -> &TunnelToken {
        &self.token
    }

    /// The current certificate, if it is still usable for new connections.
    pub(crate) fn credentials(&self) -> Option<Arc<Credentials>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.clone().filter(|c| c.is_valid_at(unix_now()))
    }

    /// Forgets the current certificate (the edge refused it), so the next connection enrols.
    pub(crate) fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// TLS for a tunnel connection with the current certificate; `None` without one.
    pub(crate) fn tunnel_config(
        &self,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, TlsConfigError> {
        let Some(credentials) = self.credentials() else {
            return Ok(None);
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        tls::tunnel_config(&self.token.ca_sha256, credentials.cert.clone(), key).map(Some)
    }

    /// A certificate signing request for the connector's key.
    pub(crate) fn csr_der(&self) -> Result<Vec<u8>, IdentityError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "postern connector");
        params.distinguished_name = name;
        Ok(params.serialize_request(&self.key)?.der().to_vec())
    }

    /// Enrols with the token at the first edge address that answers.
    pub(crate) async fn enrol(&self, egress: &Egress) -> Result<(), EnrolError> {
        let connector = TlsConnector::from(tls::enrol_config(&self.token.ca_sha256)?);
        let mut last = None;
        for address in &self.token.edge_addresses {
            match self.enrol_at(&connector, egress, address).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_permanent() => return Err(error),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(EnrolError::NoAddress))
    }

    async fn enrol_at(
        &self,
        connector: &TlsConnector,
        egress: &Egress,
        address: &str,
    ) -> Result<(), EnrolError> {
        let exchange = async {
            let tcp = egress
                .connect(address)
                .await
                .map_err(|source| EnrolError::Unreachable {
                    address: address.to_string(),
                    source,
                })?;
            let mut stream =
                connector
                    .connect(edge_server_name(), tcp)
                    .await
                    .map_err(|source| EnrolError::Tls {
                        address: address.to_string(),
                        source,
                    })?;
            let request = EnrollRequest {
                tunnel_id: self.token.tunnel_id,
                secret: self.token.secret.clone(),
                csr_der: encode_der(&self.csr_der()?),
            };
            let protocol = |detail: String| EnrolError::Protocol {
                address: address.to_string(),
                detail,
            };
            stream
                .write_all(&encode_frame(&request))
                .await
                .map_err(|e| protocol(format!("sending the request: {e}")))?;
            let mut header = [0u8; 4];
            stream
                .read_exact(&mut header)
                .await
                .map_err(|e| protocol(format!("reading the answer: {e}")))?;
            let len = wire::frame_len(header).map_err(|e| protocol(e.to_string()))?;
            let mut body = vec![0u8; len];
            stream
                .read_exact(&mut body)
                .await
                .map_err(|e| protocol(format!("reading the answer: {e}")))?;
            let answer: EnrollAnswer =
                wire::from_json(&body).map_err(|e| protocol(e.to_string()))?;
            match answer {
                EnrollAnswer::Granted { cert_der, ca_der } => {
                    let cert =
                        decode_der(&cert_der, "cert_der").map_err(|e| protocol(e.to_string()))?;
                    let ca = decode_der(&ca_der, "ca_der").map_err(|e| protocol(e.to_string()))?;
                    self.accept(&cert, &ca)?;
                    Ok(())
                }
                EnrollAnswer::Refused { reason, message } => {
                    Err(EnrolError::Refused { reason, message })
                }
            }
        };
        tokio::time::timeout(ENROL_TIMEOUT, exchange)
            .await
            .map_err(|_| EnrolError::Unreachable {
                address: address.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "enrolment timed out"),
            })?
    }

    /// Takes a certificate from the edge (enrolment or renewal): it must be for this key and
    /// signed by the pinned CA; then it is stored and used for new connections.
    pub(crate) fn accept(&self, cert_der: &[u8], ca_der: &[u8]) -> Result<(), IdentityError> {
        let credentials = self.check(cert_der, ca_der)?;
        write_file(
            &self.dir.join(CERT_FILE),
            &pem("CERTIFICATE", cert_der),
            false,
        )?;
        write_file(&self.dir.join(CA_FILE), &pem("CERTIFICATE", ca_der), false)?;
        tracing::info!(
            tunnel_id = %self.token.tunnel_id,
            valid_until = credentials.not_after,
            "stored a new client certificate"
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(credentials));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// When the current certificate should be renewed (Unix seconds), if there is one.
    pub(crate) fn renew_at(&self) -> Option<i64> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|c| c.renew_at())
    }

    /// Sees every certificate stored from now on.
    pub(crate) fn watch_renewals(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn check(&self, cert_der: &[u8], ca_der: &[u8]) -> Result<Credentials, IdentityError> {
        if fingerprint(ca_der) != self.token.ca_sha256.to_ascii_lowercase() {
            return Err(IdentityError::BadCertificate(
                "its CA is not the one pinned in the token".into(),
            ));
        }
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != self.key.public_key_raw() {
            return Err(IdentityError::BadCertificate(
                "it is not for this connector's key".into(),
            ));
        }
        Ok(Credentials {
            cert: CertificateDer::from(cert_der.to_vec()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            received_at: unix_now(),
        })
    }

    fn load_stored(&self) -> Option<Credentials> {
        let cert = read_pem(&self.dir.join(CERT_FILE))?;
        let ca = read_pem(&self.dir.join(CA_FILE))?;
        self.check(&cert, &ca).ok()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn load_or_create_key(path: &Path) -> Result<KeyPair, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            return KeyPair::from_pem(&text).map_err(|_| IdentityError::BadKey {
                path: path.display().to_string(),
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    match write_file(path, &key.serialize_pem(), true) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated the connector's key");
            Ok(key)
        }
        // Another connector process with the same state directory made it first.
        Err(IdentityError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            let text = std::fs::read_to_string(path).map_err(io)?;
            KeyPair::from_pem(&text).map_err(|_| IdentityError::BadKey {
                path: path.display().to_string(),
            })
        }
        Err(error) => Err(error),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the key file is readable by others; chmod 600 it");
        }
    }
}

fn create_private_dir(path: &Path) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes a 0600 file: `exclusive` fails if it exists; otherwise it is replaced atomically.
fn write_file(path: &Path, contents: &str, exclusive: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    let target = if exclusive {
        path.to_path_buf()
    } else {
        path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&target).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    if !exclusive {
        std::fs::rename(&target, path).map_err(io)?;
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn read_pem(path: &Path) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let text = std::fs::read(path).ok()?;
    CertificateDer::from_pem_slice(&text)
        .ok()
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use postern_schema::ids::TunnelId;
    use postern_schema::secret::Secret;

    use super::*;

    fn token() -> TunnelToken {
        TunnelToken {
            edge_addresses: vec!["127.0.0.1:1".into()],
            tunnel_id: TunnelId::new_random(),
            secret: Secret::new("s"),
            ca_sha256: "00".repeat(32),
        }
    }

    #[test]
    fn the_key_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = token();
        let first = Identity::open(dir.path(), token.clone()).expect("opens");
        let key_path = first.dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Identity::open(dir.path(), token).expect("opens again");
        assert_eq!(first.key.public_key_raw(), again.key.public_key_raw());
        assert!(first.credentials().is_none());
        assert!(!first.csr_der().expect("csr").is_empty());
    }

    #[test]
    fn certificates_from_another_ca_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Identity::open(dir.path(), token()).expect("opens");
        let result = identity.accept(b"not a cert", b"not the pinned ca");
        assert!(matches!(result, Err(IdentityError::BadCertificate(_))));
    }

    #[test]
    fn renewal_is_due_two_thirds_into_validity() {
        let credentials = Credentials {
            cert: CertificateDer::from(Vec::new()),
            not_before: 0,
            not_after: 3000,
            received_at: 0,
        };
        assert_eq!(credentials.renew_at(), 2000);
        let backdated = Credentials {
            not_before: -300,
            received_at: 0,
            ..credentials.clone()
        };
        assert_eq!(backdated.renew_at(), 2000);
        assert!(credentials.is_valid_at(2900));
        assert!(!credentials.is_valid_at(2950));
    }
}
