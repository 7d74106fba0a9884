//! Code generated from `proto/` at build time (protox + tonic-prost-build): Terraform's
//! plugin protocol, go-plugin's services and gRPC health checking.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

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
