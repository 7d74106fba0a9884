//! Certificates and keys in PEM: an operator's upload checked before it is stored (a chain that
//! parses, a leaf that has not expired and names DNS names, a key that is the leaf's), and what
//! the edge needs of any stored chain (its names and validity, a rustls [`CertifiedKey`]).
//! Messages never quote the PEM: a private key must not reach an answer or a log.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

/// What a leaf certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafFacts {
    /// Its DNS names (SANs), lowercase, in order, each once.
    pub(crate) names: Vec<String>,
    /// Unix seconds.
    pub(crate) not_before: i64,
    /// Unix seconds.
    pub(crate) not_after: i64,
}

/// Why an upload was refused: the field at fault (`/certificate_pem`, `/private_key_pem`) and
/// why, in words that never repeat the PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub(crate) struct UploadError {
    /// The JSON pointer of the field at fault.
    pub(crate) pointer: &'static str,
    /// Why.
    pub(crate) message: String,
}

const CERTIFICATE: &str = "/certificate_pem";
const KEY: &str = "/private_key_pem";

fn refuse(pointer: &'static str, message: impl Into<String>) -> UploadError {
    UploadError {
        pointer,
        message: message.into(),
    }
}

/// An upload that passed every check.
#[derive(Debug)]
pub(crate) struct CheckedUpload {
    /// The leaf's names and validity.
    pub(crate) facts: LeafFacts,
    /// The chain as the edge will store and serve it, PEM.
    pub(crate) chain_pem: String,
    /// The key, PKCS#8 (or as given) PEM.
    pub(crate) key_pem: String,
}

/// Checks an upload at `now` (Unix seconds).
pub(crate) fn check_upload(
    chain_pem: &str,
    key_pem: &str,
    now: i64,
    provider: &Arc<CryptoProvider>,
) -> Result<CheckedUpload, UploadError> {
    let chain = parse_chain(chain_pem).map_err(|message| refuse(CERTIFICATE, message))?;
    let facts = leaf_facts(&chain[0]).map_err(|message| refuse(CERTIFICATE, message))?;
    if facts.not_after <= now {
        return Err(refuse(
            CERTIFICATE,
            format!(
                "the certificate expired at {}; upload a current one",
                rfc3339(facts.not_after)
            ),
        ));
    }
    if facts.names.is_empty() {
        return Err(refuse(
            CERTIFICATE,
            "the certificate names no DNS name (subject alternative names): the edge picks a \
             certificate by the name a visitor asks for",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        refuse(
            KEY,
            "not a PEM private key (PKCS#8 \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| refuse(KEY, "the private key is of a kind the edge cannot use"))?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        // A key whose public half the provider cannot tell: as rustls itself, take it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(refuse(
                KEY,
                "the private key does not match the certificate",
            ));
        }
    }
    Ok(CheckedUpload {
        facts,
        chain_pem: chain_to_pem(&chain),
        key_pem: key_pem.trim().to_string() + "\n",
    })
}

/// Every certificate of a PEM chain, leaf first; at least one.
pub(crate) fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM certificate chain (\"CERTIFICATE\" blocks)".to_string())?;
    if chain.is_empty() {
        return Err("not a PEM certificate chain: no \"CERTIFICATE\" block".into());
    }
    for (i, der) in chain.iter().enumerate() {
        if x509_parser::parse_x509_certificate(der.as_ref()).is_err() {
            return Err(format!(
                "certificate {} of the chain is not a valid X.509 certificate",
                i + 1
            ));
        }
    }
    Ok(chain)
}

/// The chain written back as PEM.
pub(crate) fn chain_to_pem(chain: &[CertificateDer<'_>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// The names and validity of a leaf certificate.
pub(crate) fn leaf_facts(der: &CertificateDer<'_>) -> Result<LeafFacts, String> {
    let (_, leaf) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|_| "the first certificate is not a valid X.509 certificate".to_string())?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                if !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    Ok(LeafFacts {
        names,
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
    })
}

/// A stored chain and key as rustls serves them.
pub(crate) fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = parse_chain(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "the stored private key is not PEM".to_string())?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("the stored certificate and key cannot be used: {e}"))
}

/// Unix seconds as RFC 3339, UTC.
pub(crate) fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// A self-signed certificate for `names`, valid from `from` to `until` (offsets in days
    /// from now), and its key.
    fn make(names: &[&str], from: i64, until: i64) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let today = time::OffsetDateTime::now_utc();
        params.not_before = today + time::Duration::days(from);
        params.not_after = today + time::Duration::days(until);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_upload_gives_its_names_and_validity() {
        let (cert, key) = make(&["App.Example.com", "*.apps.example.com"], -1, 30);
        let checked = check_upload(&cert, &key, now(), &provider()).expect("accepted");
        assert_eq!(
            checked.facts.names,
            vec![
                "app.example.com".to_string(),
                "*.apps.example.com".to_string()
            ]
        );
        assert!(checked.facts.not_after > now());
        certified_key(&checked.chain_pem, &checked.key_pem, &provider()).expect("servable");
    }

    #[test]
    fn bad_uploads_are_refused_at_their_field_without_quoting_it() {
        let (cert, key) = make(&["app.example.com"], -1, 30);
        let (_, other_key) = make(&["app.example.com"], -1, 30);
        let (expired, expired_key) = make(&["app.example.com"], -30, -1);
        let cases = [
            ("garbage", key.as_str(), CERTIFICATE),
            (cert.as_str(), "garbage", KEY),
            (cert.as_str(), other_key.as_str(), KEY),
            (expired.as_str(), expired_key.as_str(), CERTIFICATE),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                key.as_str(),
                CERTIFICATE,
            ),
        ];
        for (chain, private, pointer) in cases {
            let error = check_upload(chain, private, now(), &provider()).expect_err("refused");
            assert_eq!(error.pointer, pointer, "{error}");
            for line in private
                .lines()
                .chain(chain.lines())
                .filter(|l| l.len() > 20)
            {
                assert!(!error.message.contains(line), "{error}");
            }
        }
    }
}
