//! The `postern` command line: `postern tunnel run --token TOKEN`, and quick mode
//! `postern --hostname NAME URL|--hello-world`, with the options both share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// postern: the connector. It runs beside a service, dials out to a postern edge, and serves
/// the hostnames declared for its tunnel; nothing listens on the public internet.
///
/// Run a declared tunnel with `postern tunnel run --token TOKEN`, or try it out in one
/// command with `postern --hostname app.example.com http://localhost:4000`.
#[derive(Debug, Parser)]
#[command(
    name = "postern",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Quick mode (without a subcommand).
    #[command(flatten)]
    pub quick: QuickArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tunnels.
    Tunnel {
        /// What to do with a tunnel.
        #[command(subcommand)]
        command: TunnelCommand,
    },
}

/// `postern tunnel …`.
#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Run the connector of a tunnel declared on the edge (for example by Terraform).
    Run(RunArgs),
}

/// `postern tunnel run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tunnel's token (`terraform output -raw …`, or GET /v1/tunnels/{id}/token).
    #[arg(long, env = "POSTERN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Options shared with quick mode.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Quick mode: create a tunnel and hostname through the API, serve, and clean up on exit.
#[derive(Debug, Args)]
pub struct QuickArgs {
    /// Quick mode: the public hostname to create and serve (inside one of the edge's zones).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Quick mode: the local service, such as http://localhost:4000.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// The edge's control API.
    #[arg(
        long = "api",
        env = "POSTERN_ENDPOINT",
        default_value = "http://127.0.0.1:7070"
    )]
    pub api: String,
    /// A control API token.
    #[arg(long = "api-token", env = "POSTERN_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Options shared with `tunnel run`.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of every mode that runs a connector.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Where the connector keeps its key and certificate (default: ~/.postern).
    #[arg(long, env = "POSTERN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Tunnel connections to keep open to the edge.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub connections: u16,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub grace_period: Duration,
    /// Serve /ready and /metrics on this address, e.g. 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve every hostname with the built-in hello-world origin instead of its service.
    #[arg(long)]
    pub hello_world: bool,
    /// How long to wait for an origin's response before answering 504.
    #[arg(long, default_value = "100s", value_parser = parse_duration)]
    pub origin_timeout: Duration,
    /// Extra CA certificates (PEM file) trusted for https origins (repeatable).
    #[arg(long, value_name = "PEM")]
    pub origin_ca: Vec<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "POSTERN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?} is not a duration such as 30s or 500ms")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `~/.postern`, when the home directory is known.
pub fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".postern"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "abc", "10x", "-1s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "postern",
            "tunnel",
            "run",
            "--token",
            "t",
            "--connections",
            "3",
        ])
        .expect("parses");
        assert!(matches!(cli.command, Some(Command::Tunnel { .. })));
        let cli = Cli::try_parse_from([
            "postern",
            "--hostname",
            "a.example.com",
            "http://localhost:1",
        ])
        .expect("parses");
        assert_eq!(cli.quick.url.as_deref(), Some("http://localhost:1"));
        assert!(
            Cli::try_parse_from([
                "postern",
                "tunnel",
                "run",
                "--token",
                "t",
                "--connections",
                "0"
            ])
            .is_err()
        );
    }
}
