//! Compiles the provider's protocol definitions (tfplugin6, go-plugin, gRPC
//! health) with protox, a pure-Rust protobuf compiler: no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["tfplugin6.proto", "go_plugin.proto", "health.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The client half serves our own tests (they speak to the binary).
        .build_client(true)
        .build_server(true)
        // RPCs we do not override answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
