//! `terraform-provider-postern`: the Terraform provider binary. Terraform starts it;
//! it serves Postern's resources over the plugin protocol until Terraform shuts it
//! down. Run by hand, it explains that and exits with status 1.

use std::process::ExitCode;

use anyhow::Context as _;
use terraform_provider_postern::protocol::handshake::{HandshakeError, RUN_BY_HAND_MESSAGE};
use terraform_provider_postern::protocol::{self, ServeError};
use terraform_provider_postern::{logging, registry};

fn main() -> ExitCode {
    logging::install();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(ServeError::Handshake(HandshakeError::RunByHand)) =
                error.downcast_ref::<ServeError>()
            {
                eprintln!("{RUN_BY_HAND_MESSAGE}");
            } else {
                tracing::error!(error = format!("{error:#}"), "provider failed");
                eprintln!("Error: {error:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(protocol::serve(registry()))?;
    // Do not wait for detached tasks (a stuck TLS handshake, a slow request).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}
