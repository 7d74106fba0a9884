//! `postern-edge`: reads its flags, raises its open-file limit, starts every listener, prints
//! the ready line, and runs until SIGTERM or SIGINT (then shuts down within
//! `--shutdown-timeout`).

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
    raise_open_file_limit();
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
    let result = runtime.block_on(run(config));
    // Shutdown has had its deadline; a blocking call still running (a store call) does not
    // hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// Raises the soft limit of open files to the hard limit: every visitor, tunnel, API, DNS
/// and store connection is a file, and a soft limit of 1,024 (a common default) would let a
/// few hundred visitors starve the rest. Logs what it did.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(error) => {
                tracing::warn!(%error, soft, hard, "cannot raise the open-file limit")
            }
        },
        Ok((soft, _)) => tracing::info!(limit = soft, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot read the open-file limit"),
    }
}

async fn run(config: EdgeConfig) -> anyhow::Result<()> {
    postern_heap::spawn_trimmer();
    let config_timeout = config.shutdown_timeout;
    let edge = postern_edge::start(config)
        .await
        .map_err(|e| anyhow::Error::new(e).context("the edge could not start"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", edge.addrs.ready_line()).context("writing the ready line")?;
    stdout.flush().context("writing the ready line")?;
    drop(stdout);

    wait_for_signal().await?;
    tracing::info!(shutdown_timeout = ?config_timeout, "shutting down");
    // The edge keeps its own deadline; this one only guards against a shutdown step that
    // would not end (the process exits either way).
    let guard = config_timeout + std::time::Duration::from_secs(2);
    if tokio::time::timeout(guard, edge.shutdown()).await.is_err() {
        tracing::warn!("shutdown did not finish in time; exiting");
    }
    tracing::info!("stopped");
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
