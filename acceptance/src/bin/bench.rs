//! `bench`: the performance benchmark of the performance issue. It puts the Postern tunnel
//! beside the direct path and the peer tunnels on loopback, prints Markdown tables and writes
//! the results as JSON. Run it with `cargo run --release -p acceptance --bin bench -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use acceptance::bench::{origin, run};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Benchmarks Postern against the direct path and peer tunnels (loopback only).
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
struct Cli {
    /// A smoke run of a few seconds (short runs, small transfers, N = 10 for the provider).
    #[arg(long)]
    quick: bool,
    /// Repetitions of every workload on every target [default: 1 with --quick, 3 otherwise].
    #[arg(long)]
    reps: Option<usize>,
    /// Only these targets, comma-separated: direct, postern-http, postern-https, rathole-tcp,
    /// rathole-tls, bore, nginx (direct is always measured: ratios need it).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Which workloads, as letters: a (small keep-alive), b (new connection per request),
    /// c (one sequential connection), d (bulk download and upload), f (Terraform provider);
    /// (e), memory and CPU, is measured during the others.
    #[arg(long, default_value = "abcdf")]
    workloads: String,
    /// Where rathole and bore are installed (`cargo install --root`)
    /// [default: <workspace>/target/bench/peers].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Never install missing peers (they are reported as skipped).
    #[arg(long)]
    no_install: bool,
    /// Hostnames in the provider workload [default: 10 with --quick, 200 otherwise].
    #[arg(long)]
    hostnames: Option<usize>,
    /// An environment variable for the edge and the connector, as KEY=VALUE (repeatable; for
    /// tuning experiments, e.g. TOKIO_WORKER_THREADS=1).
    #[arg(long = "postern-env", value_parser = parse_env)]
    postern_env: Vec<(String, String)>,
    /// The JSON results file [default: <workspace>/target/bench/results.json].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// (Internal) the benchmark's origin, started by the benchmark itself.
    #[command(hide = true)]
    Origin {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Origin { listen }) = cli.command {
        return origin::serve_forever(listen);
    }
    let root = acceptance::binaries::workspace_root();
    let out = cli
        .out
        .unwrap_or_else(|| root.join("target").join("bench").join("results.json"));
    let mut targets = cli.targets;
    if !targets.is_empty() && !targets.iter().any(|t| t == "direct") {
        targets.push("direct".into());
    }
    let options = run::Options {
        quick: cli.quick,
        repetitions: cli.reps,
        targets,
        workloads: cli.workloads,
        cache: cli
            .cache
            .unwrap_or_else(|| root.join("target").join("bench").join("peers")),
        install: !cli.no_install,
        hostnames: cli.hostnames,
        postern_env: cli.postern_env,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let report = runtime.block_on(run::run(options))?;
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report).context("encoding the results")?;
    std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(out.with_extension("md"), &markdown)
        .with_context(|| format!("writing {}", out.with_extension("md").display()))?;
    eprintln!("bench: results written to {}", out.display());
    Ok(())
}
