//! The edge's certificate authorities and the certificates issued from them: the tunnel CA
//! (connectors' client certificates, bound to their tunnel; edge nodes' certificates; the tunnel
//! listener's), and the visitors' CA, name-constrained to the edge's zones, which HTTPS falls
//! back to for a hostname without a public certificate. Server certificates are issued on
//! demand and cached per name.

mod authority;
mod issued;
mod visitors;

pub(crate) use authority::{CaError, EdgeCa, node_of_certificate, tunnel_of_certificate};
pub(crate) use issued::CertCache;
pub(crate) use visitors::{VisitorCa, self_signed};
