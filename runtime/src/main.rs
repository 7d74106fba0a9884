//! `postern`: reads its command line, then runs a connector (`tunnel run`) or quick mode,
//! until SIGTERM or SIGINT. Exit codes: 0 after a clean stop, 1 on an error, 2 on bad usage,
//! 3 when the tunnel was deleted on the edge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use postern_runtime::config::{
    Cli, CliError, Command, CommonArgs, LogFormat, QuickArgs, TunnelCommand,
};
use postern_runtime::metrics::ConnectorMetrics;
use postern_runtime::supervisor::{self, Connections, RunError, RunOptions};
use postern_runtime::{
    AllowedOrigins, Connector, Egress, Identity, Orchestrator, Origins, config, hello_world,
    metrics, quick,
};
use postern_schema::client::{Client, ClientOptions};
use postern_schema::error_chain;
use postern_schema::secret::Secret;
use postern_schema::token::TunnelToken;
use postern_workers::Workers;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Exit code on bad usage (clap's, for a bad flag; ours, for a bad config file).
const EXIT_USAGE: u8 = 2;

/// Exit code when the tunnel was deleted on the edge.
const EXIT_TUNNEL_DELETED: u8 = 3;

/// Tunnel connections kept without `--connections`, unless the edge asks for more.
const DEFAULT_CONNECTIONS: usize = 2;

/// How many workers to run: `--workers`, else one per CPU core.
fn worker_count(common: &CommonArgs) -> usize {
    match common.workers {
        Some(count) => usize::from(count),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

fn main() -> ExitCode {
    let cli = match config::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(CliError::Usage(error)) => error.exit(),
        Err(CliError::ConfigFile(error)) => {
            eprintln!("error: {}", error_chain(&error));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(cli.common());
    // Supervision, the metrics listener and the built-in origin run on this thread; the tunnel
    // connections and everything they serve on the workers (`--workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    postern_heap::spawn_trimmer();
    match cli.command {
        Some(Command::Tunnel {
            command: TunnelCommand::Run(args),
        }) => {
            let token = args.token().map_err(|message| anyhow::anyhow!(message))?;
            let token = TunnelToken::parse(&token).context("--token")?;
            run_connector(token, &args.common, None).await
        }
        None => run_quick(cli.quick).await,
    }
}

/// Runs a connector for `token` until a stop signal; `hello` is the address of an already
/// started hello-world origin (quick mode).
async fn run_connector(
    token: TunnelToken,
    common: &CommonArgs,
    hello: Option<String>,
) -> anyhow::Result<ExitCode> {
    let signals = Signals::install()?;
    let egress = Egress::from_settings(common.proxy.as_deref())?;
    let allowed =
        AllowedOrigins::parse(&common.allow_origin).map_err(|why| anyhow::anyhow!(why))?;
    if egress.uses_proxy() {
        tracing::info!(?egress, "reaching the edge through a proxy");
    }
    let state_dir = state_dir(common)?;
    let tunnel_id = token.tunnel_id;
    let edges = token.edge_addresses.clone();
    let identity = Identity::open(&state_dir, token)
        .with_context(|| format!("opening the state directory {}", state_dir.display()))?;
    let cancel = CancellationToken::new();
    let _stop_helpers = cancel.clone().drop_guard();

    let hello = match (hello, common.hello_world) {
        (Some(address), _) => Some(address),
        (None, true) => Some(
            hello_world::start(cancel.clone())
                .await
                .context("starting the hello-world origin")?
                .to_string(),
        ),
        (None, false) => None,
    };
    let extra_roots = load_origin_cas(&common.origin_ca)?;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let metrics = Arc::new(ConnectorMetrics::default());
    if let Some(address) = common.metrics {
        let listener = metrics::bind(address)
            .await
            .with_context(|| format!("--metrics: cannot listen on {address}"))?;
        tracing::info!(address = %listener.local_addr().unwrap_or(address), "serving /ready and /metrics");
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            connector_id.clone(),
            tunnel_id.to_string(),
            cancel.clone(),
        ));
    }
    let connector = Arc::new(Connector::new(
        identity,
        Orchestrator::new(hello, allowed),
        Origins::new(extra_roots, common.origin_timeout, &connector_id),
        metrics,
        connector_id.clone(),
        egress,
    ));
    let workers = Workers::start(worker_count(common)).context("starting the workers")?;
    let connections = match common.connections {
        Some(count) => Connections::Fixed(usize::from(count)),
        None => Connections::AsTheEdgeAsks(DEFAULT_CONNECTIONS),
    };
    tracing::info!(
        %connector_id,
        tunnel_id = %tunnel_id,
        ?edges,
        ?connections,
        workers = workers.count(),
        "connector starting"
    );
    let options = RunOptions {
        connections,
        grace_period: common.grace_period,
        workers: (0..workers.count())
            .map(|index| workers.handle(index).clone())
            .collect(),
    };
    let outcome = supervisor::run(connector, options, signals.wait()).await;
    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    match outcome {
        Ok(()) => {
            tracing::info!("connector stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ RunError::TunnelDeleted(_)) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(EXIT_TUNNEL_DELETED))
        }
        Err(error) => Err(anyhow::Error::new(error)),
    }
}

/// Quick mode: create, run, and remove again.
async fn run_quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let Some(hostname) = args.hostname.clone() else {
        eprintln!(
            "error: nothing to do.\n\n  postern tunnel run --token TOKEN            run a declared tunnel\n  postern --hostname NAME URL|--hello-world   create a tunnel for NAME and serve URL\n\nSee postern --help."
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    postern_schema::rules::check_fqdn(&hostname)
        .map_err(|message| anyhow::anyhow!("--hostname: {message}"))?;
    let cancel = CancellationToken::new();
    let _stop_hello = cancel.clone().drop_guard();
    let (service, hello) = match (&args.url, args.common.hello_world) {
        (Some(_), true) => bail!("give either a service URL or --hello-world, not both"),
        (None, false) => {
            bail!(
                "quick mode needs the service to expose: a URL such as http://localhost:4000, or --hello-world"
            )
        }
        (Some(url), false) => {
            postern_schema::rules::parse_service(url).map_err(|m| anyhow::anyhow!("URL: {m}"))?;
            (url.clone(), None)
        }
        (None, true) => {
            let address = hello_world::start(cancel.clone())
                .await
                .context("starting the hello-world origin")?;
            (format!("http://{address}"), Some(address.to_string()))
        }
    };
    let Some(api_token) = args
        .api_token()
        .map_err(|message| anyhow::anyhow!(message))?
    else {
        bail!(
            "quick mode needs a control API token: --api-token-file, POSTERN_API_TOKEN or \
             --api-token"
        );
    };
    let ca_cert_pem = match &args.api_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--api-ca: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let options = ClientOptions {
        ca_cert_pem,
        proxy: args.common.proxy.clone(),
        ..ClientOptions::default()
    };
    let client = Client::with_options(&args.api, Secret::new(api_token), &options)
        .context("--api, --api-ca")?;
    let created = quick::create(&client, &hostname, &service).await?;
    eprintln!(
        "postern: serving {hostname} through the edge (tunnel {}); press Ctrl-C to stop and remove it",
        created.name
    );
    let state_dir = state_dir(&args.common)?;
    let result = run_connector(created.token.clone(), &args.common, hello).await;
    let errors = quick::remove(&client, &created).await;
    let tunnel_dir = state_dir
        .join("tunnels")
        .join(created.tunnel_id.to_string());
    let _ = std::fs::remove_dir_all(&tunnel_dir);
    for error in &errors {
        eprintln!("error: cleaning up: {error}");
    }
    match result {
        Ok(code) if errors.is_empty() => Ok(code),
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(error) => Err(error),
    }
}

fn state_dir(common: &CommonArgs) -> anyhow::Result<PathBuf> {
    match &common.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => config::default_state_dir()
            .context("the home directory is unknown: give --state-dir or POSTERN_STATE_DIR"),
    }
}

fn load_origin_cas(
    paths: &[PathBuf],
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let mut certs = Vec::new();
    for path in paths {
        let found: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(Path::new(path))
            .with_context(|| format!("--origin-ca: cannot read {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--origin-ca: {} is not PEM", path.display()))?;
        if found.is_empty() {
            bail!("--origin-ca: {} holds no certificate", path.display());
        }
        certs.extend(found);
    }
    Ok(certs)
}

/// SIGTERM and SIGINT, installed before anything starts.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Logs to stderr in `--log-format`, filtered by `--log-level` (or its variable or the config
/// file); without one, by `POSTERN_LOG`, as before `--log-level` existed; else at info.
fn init_tracing(common: &CommonArgs) {
    let filter = match &common.log_level {
        // Checked while parsing the command line; `info` is only a fallback that cannot
        // happen.
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_env("POSTERN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match common.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
