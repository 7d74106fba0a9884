//! Terraform's plugin protocol: the go-plugin handshake with AutoMTLS, the tfplugin6
//! gRPC service and go-plugin's controller, and the value codec. This layer knows no
//! resource: it decodes each request, hands it to the framework's
//! [`Runtime`](crate::framework::Runtime), and encodes the answer.

pub mod codec;
mod convert;
pub mod handshake;
pub mod proto;
pub mod server;

pub use server::{ServeError, serve};
