//! The edge's certificate authority and the certificates it issues: connectors' client
//! certificates (bound to their tunnel), edge nodes' certificates, and server certificates
//! issued on demand and cached per name (the tunnel listener's, and visitors' HTTPS before a
//! public certificate exists).

mod authority;
mod issued;

pub(crate) use authority::{CaError, EdgeCa, node_of_certificate, tunnel_of_certificate};
pub(crate) use issued::CertCache;
