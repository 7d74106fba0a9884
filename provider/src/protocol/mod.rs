//! Terraform's plugin protocol: the go-plugin handshake with AutoMTLS, the tfplugin6
//! gRPC service and go-plugin's controller, and the value codec. This layer knows no
//! resource: it decodes each request, hands it to the framework's
//! [`Runtime`](crate::framework::Runtime), and encodes the answer.

pub mod codec;
pub mod convert;
pub mod handshake;
pub mod server;

pub use server::{ServeError, serve};

/// Code generated from `proto/` at build time (protox + tonic-prost-build).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    /// Terraform plugin protocol 6.8.
    pub mod tfplugin6 {
        tonic::include_proto!("tfplugin6");
    }
    /// go-plugin's GRPCController and GRPCStdio.
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
    /// gRPC health checking.
    pub mod health {
        tonic::include_proto!("grpc.health.v1");
    }
}
