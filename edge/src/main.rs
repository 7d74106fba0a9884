//! `postern-edge`: reads its flags, starts every listener, prints the ready line, and runs
//! until SIGTERM or SIGINT.

use std::io::Write;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use postern_edge::{EdgeConfig, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let matches = EdgeConfig::command().get_matches();
    let config = EdgeConfig::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Err(message) = config.check() {
        eprintln!("error: {message}");
        std::process::exit(2);
    }
    init_tracing(config.log_format);
    for flag in EdgeConfig::secrets_on_command_line(&matches) {
        tracing::warn!(
            flag,
            "a secret was given on the command line, which every local user can read (ps); use \
             the -file flag or the environment variable instead"
        );
    }
    // The control plane (API, DNS, store, catalog, cluster membership) runs on this thread;
    // the data plane on the workers the edge starts (`--workers`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: EdgeConfig) -> anyhow::Result<()> {
    postern_heap::spawn_trimmer();
    let edge = postern_edge::start(config)
        .await
        .map_err(|e| anyhow::Error::new(e).context("the edge could not start"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", edge.addrs.ready_line()).context("writing the ready line")?;
    stdout.flush().context("writing the ready line")?;
    drop(stdout);

    wait_for_signal().await?;
    tracing::info!("shutting down");
    edge.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    // hickory-server logs every DNS query at info; the edge counts them in /metrics instead.
    let filter = EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
