//! One ACME account and one order at a time (RFC 8555, through `instant-acme`): the account is
//! made once per directory and kept in the store's settings, shared by every node; an order
//! publishes each challenge's answer in the store (so whichever node the CA asks answers it),
//! tells the CA, waits for the order to be ready, sends a CSR for a fresh P-256 key made here,
//! and withdraws the answers whatever happened.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use sha2::{Digest, Sha256};

use super::http::AcmeHttp;
use super::names::base_domain;
use super::pem::{LeafFacts, leaf_facts, parse_chain};
use super::served::{Certificates, now};
use crate::store::{ChallengeKind, PendingChallenge, Store, StoreError};

/// Where an account lives in the store's settings: this, then the SHA-256 of the directory URL.
const ACCOUNT_SETTING: &str = "acme-account:";

/// How long a published challenge answer is kept at most (an order that never cleaned up).
const CHALLENGE_TTL: i64 = 3_600;

/// How long the other nodes get to hear of a published answer before the CA is told to look.
const SETTLE: Duration = Duration::from_millis(500);

/// How the edge waits for an order to become ready, and for its certificate.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(60));

/// Why an account or an order failed; its text is what `last_error` shows.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// The ACME server refused or could not be reached.
    #[error("the ACME server: {0}")]
    Server(#[from] instant_acme::Error),
    /// The store failed.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    /// No challenge the edge may answer was offered for a name.
    #[error(
        "the ACME server offers no challenge for {name} that --acme-challenges allows ({allowed}); a wildcard can only be validated by dns-01"
    )]
    NoChallenge {
        /// The name.
        name: String,
        /// What the edge may answer.
        allowed: String,
    },
    /// An authorization is in a state no challenge can change.
    #[error("the authorization of {name} is {status}")]
    Authorization {
        /// The name.
        name: String,
        /// Its status.
        status: String,
    },
    /// The CA tried a challenge and it failed.
    #[error("{kind} for {name} failed: {detail}")]
    Validation {
        /// The challenge.
        kind: &'static str,
        /// The name.
        name: String,
        /// What the CA said.
        detail: String,
    },
    /// The order ended in a state other than ready.
    #[error("the order ended {0}")]
    Order(String),
    /// The key or the CSR could not be made.
    #[error("cannot make the key or the CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// The issued chain could not be read.
    #[error("the issued chain cannot be read: {0}")]
    Chain(String),
    /// The stored account could not be read.
    #[error("the stored ACME account is malformed")]
    StoredAccount,
}

/// A certificate just issued.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The chain, leaf first, PEM.
    pub(crate) chain_pem: String,
    /// Its key, PKCS#8 PEM.
    pub(crate) key_pem: String,
    /// What the leaf says.
    pub(crate) facts: LeafFacts,
}

/// Opens the edge's account on `directory`: the one in the store, else a new one (kept there).
pub(crate) async fn open_account(
    directory: &str,
    email: Option<&str>,
    http: &AcmeHttp,
    store: &Arc<dyn Store>,
) -> Result<Account, AcmeError> {
    let key = account_setting(directory);
    // An empty value marks "none yet" (only the node holding the ordering lease makes one).
    let stored = store.setting_or_insert(&key, String::new()).await?;
    if !stored.is_empty() {
        let credentials: AccountCredentials =
            serde_json::from_str(&stored).map_err(|_| AcmeError::StoredAccount)?;
        return Ok(Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(credentials)
            .await?);
    }
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await?;
    let text = serde_json::to_string(&credentials).map_err(|_| AcmeError::StoredAccount)?;
    store.take_setting(&key).await?;
    store.setting_or_insert(&key, text).await?;
    tracing::info!(directory, "made an ACME account");
    Ok(account)
}

/// Forgets the stored account for `directory` (the server no longer knows it).
pub(crate) async fn forget_account(directory: &str, store: &Arc<dyn Store>) {
    let _ = store.take_setting(&account_setting(directory)).await;
}

fn account_setting(directory: &str) -> String {
    let digest = Sha256::digest(directory.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{ACCOUNT_SETTING}{hex}")
}

/// Whether the server said the account does not exist (it was reset, as a test CA is).
pub(crate) fn account_is_gone(error: &AcmeError) -> bool {
    matches!(error, AcmeError::Server(instant_acme::Error::Api(problem))
        if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
}

/// Orders a certificate for `names`, answering with the first of `allowed` each authorization
/// offers.
pub(crate) async fn obtain(
    account: &Account,
    names: &[String],
    allowed: &[ChallengeKind],
    certificates: &Certificates,
) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut published: Vec<PendingChallenge> = Vec::new();
    let outcome = answer_and_finish(&mut order, allowed, certificates, &mut published).await;
    if !published.is_empty() {
        if let Err(error) = certificates.store().remove_challenges(&published).await {
            tracing::warn!(%error, "cannot withdraw ACME challenge answers; they expire on their own");
        }
        let _ = certificates.reload().await;
    }
    outcome
}

async fn answer_and_finish(
    order: &mut instant_acme::Order,
    allowed: &[ChallengeKind],
    certificates: &Certificates,
    published: &mut Vec<PendingChallenge>,
) -> Result<Issued, AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        let identifier = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Authorization {
                    name: identifier,
                    status: format!("{status:?}").to_lowercase(),
                });
            }
        }
        let offered: Vec<ChallengeType> = authorization
            .challenges
            .iter()
            .map(|c| c.r#type.clone())
            .collect();
        let Some(kind) = allowed
            .iter()
            .copied()
            .find(|kind| offered.contains(&challenge_type(*kind)))
        else {
            return Err(AcmeError::NoChallenge {
                name: identifier,
                allowed: allowed
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        };
        let Some(mut challenge) = authorization.challenge(challenge_type(kind)) else {
            continue;
        };
        let authorization_key = challenge.key_authorization();
        let domain = base_domain(&identifier).to_string();
        let answer = PendingChallenge {
            kind,
            key: match kind {
                ChallengeKind::Http01 => challenge.token.clone(),
                ChallengeKind::TlsAlpn01 | ChallengeKind::Dns01 => domain,
            },
            value: match kind {
                ChallengeKind::Http01 => authorization_key.as_str().to_string(),
                ChallengeKind::TlsAlpn01 => {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(authorization_key.digest())
                }
                ChallengeKind::Dns01 => authorization_key.dns_value(),
            },
            expires_at: now() + CHALLENGE_TTL,
        };
        certificates
            .store()
            .add_challenges(std::slice::from_ref(&answer))
            .await?;
        published.push(answer);
        certificates.reload().await?;
        tokio::time::sleep(SETTLE).await;
        tracing::debug!(name = %identifier, challenge = kind.as_str(), "answering an ACME challenge");
        challenge.set_ready().await?;
    }

    let status = order.poll_ready(&POLL).await?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(order)
            .await
            .unwrap_or_else(|| AcmeError::Order(format!("{status:?}").to_lowercase())));
    }

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut names = Vec::new();
    let mut identifiers = order.identifiers();
    while let Some(identifier) = identifiers.next().await {
        names.push(identifier?.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&POLL).await?;
    let chain = parse_chain(&chain_pem).map_err(AcmeError::Chain)?;
    let facts = leaf_facts(&chain[0]).map_err(AcmeError::Chain)?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
        facts,
    })
}

/// What the CA said about the challenge that failed, read from the order's authorizations.
async fn why_invalid(order: &mut instant_acme::Order) -> Option<AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else {
            continue;
        };
        let name = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                let kind = match challenge.r#type {
                    ChallengeType::Http01 => "http-01",
                    ChallengeType::TlsAlpn01 => "tls-alpn-01",
                    ChallengeType::Dns01 => "dns-01",
                    _ => "a challenge",
                };
                return Some(AcmeError::Validation {
                    kind,
                    name,
                    detail: problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                });
            }
        }
    }
    None
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}
