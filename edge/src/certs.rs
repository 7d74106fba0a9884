//! Public certificates: what the HTTPS listener shows visitors, so that browsers trust it.
//!
//! - [`served`]: the [`Certificates`] every part shares: the certificates in the store, loaded
//!   and swapped in whole ([`table`]), and the answers at the TLS hello (an uploaded
//!   certificate whose names cover the server name, exact before wildcard; else an ACME one;
//!   else, for a hostname, one from the visitors' CA; else a self-signed one), to `http-01`
//!   requests and to `dns-01` questions;
//! - [`orders`]: the task that obtains and renews ACME certificates on the node holding the
//!   store's lease ([`acme`] for one account and one order, [`http`] for its HTTPS client);
//! - [`pem`]: uploads checked and chains read; [`names`]: which name covers which hostname;
//!   [`report`]: the certificates as the API, the status page and metrics show them.

mod acme;
mod http;
mod names;
mod orders;
mod pem;
mod report;
mod served;
mod table;

pub(crate) use http::HttpError as AcmeHttpError;
pub(crate) use orders::{AcmeSettings, Orders};
pub(crate) use pem::{check_upload, rfc3339};
pub(crate) use report::{
    EDGE_CA_PREFIX, expiry_samples, for_hostname, list, stored as stored_view,
};
pub(crate) use served::{AcmeOffer, Certificates, CertificatesError, now};
