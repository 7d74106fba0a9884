//! The `postern` command line: `postern tunnel run --token TOKEN`, and quick mode
//! `postern --hostname NAME URL|--hello-world`, with the options both share. Every flag also
//! reads a `POSTERN_*` environment variable and a key of the TOML file named by `--config`;
//! a flag wins over its variable, which wins over the file, which wins over the default.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use postern_schema::duration;

/// How the config file is written, shown by `--help`.
const CONFIG_FILE_HELP: &str = "\
Config file (--config FILE or POSTERN_CONFIG): TOML, one key per flag, named as the flag
without its leading dashes. For example:

    token = \"…\"                      # tunnel run
    connections = 4
    grace-period = \"1m30s\"
    metrics = \"127.0.0.1:9090\"
    origin-ca = [\"/etc/postern/internal-ca.pem\"]
    log-level = \"info\"

A flag wins over its POSTERN_* variable, which wins over the file, which wins over the
default. An unknown key or a bad value is an error. Durations are numbers with a unit (ms, s,
m, h), added up: 500ms, 30s, 1m30s, 1h.";

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
    after_help = CONFIG_FILE_HELP,
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
    #[command(after_help = CONFIG_FILE_HELP)]
    Run(RunArgs),
}

/// `postern tunnel run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tunnel's token (`terraform output -raw …`, or GET /v1/tunnels/{id}/token). Prefer
    /// --token-file or POSTERN_TOKEN: a command line is visible to every local user.
    #[arg(long, env = "POSTERN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file that holds the tunnel's token, so that it is not on the command line (it wins
    /// over --token).
    #[arg(long, env = "POSTERN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Options shared with quick mode.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Quick mode: create a tunnel and hostname through the API, serve, and clean up on exit.
#[derive(Debug, Args)]
pub struct QuickArgs {
    /// Quick mode: the public hostname to create and serve (inside one of the edge's zones).
    #[arg(long, env = "POSTERN_HOSTNAME")]
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
    /// A control API token (an editor token is enough). Prefer --api-token-file or
    /// POSTERN_API_TOKEN: a command line is visible to every local user.
    #[arg(long = "api-token", env = "POSTERN_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file that holds the control API token (it wins over --api-token).
    #[arg(long, env = "POSTERN_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// For an https:// --api: the CA certificate (PEM file) that signed the edge API's
    /// certificate; only it is trusted then (with `postern-edge --api-tls edge-ca`, the
    /// edge's <data-dir>/ca.pem). Default: the system's trusted roots.
    #[arg(long, env = "POSTERN_API_CA", value_name = "FILE")]
    pub api_ca: Option<PathBuf>,
    /// Options shared with `tunnel run`.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of every mode that runs a connector.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Read settings from this TOML file (see the end of this help); flags and POSTERN_*
    /// variables win over it.
    #[arg(long, env = "POSTERN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the connector keeps its key and certificate (default: ~/.postern).
    #[arg(long, env = "POSTERN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Tunnel connections to keep open to the edge (default: 2, or as many as the edge asks
    /// for, one per edge worker, up to 32).
    #[arg(
        long,
        env = "POSTERN_CONNECTIONS",
        value_parser = clap::value_parser!(u16).range(1..=32)
    )]
    pub connections: Option<u16>,
    /// Worker threads serving the tunnel connections, each a single-threaded runtime that
    /// serves a stream and its origin request on one thread (default: the number of CPU
    /// cores).
    #[arg(
        long,
        env = "POSTERN_WORKERS",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub workers: Option<u16>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT (e.g. 30s, 1m30s).
    #[arg(
        long,
        env = "POSTERN_GRACE_PERIOD",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = duration::parse
    )]
    pub grace_period: Duration,
    /// Serve /ready and /metrics on this address, e.g. 127.0.0.1:9090.
    #[arg(long, env = "POSTERN_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve every hostname with the built-in hello-world origin instead of its service.
    #[arg(
        long,
        env = "POSTERN_HELLO_WORLD",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub hello_world: bool,
    /// How long to wait for an origin's response before answering 504 (e.g. 100s, 2m).
    #[arg(
        long,
        env = "POSTERN_ORIGIN_TIMEOUT",
        value_name = "DURATION",
        default_value = "100s",
        value_parser = duration::parse
    )]
    pub origin_timeout: Duration,
    /// Extra CA certificates (PEM file) trusted for https origins (repeatable; the variable
    /// names one file, which may hold several certificates).
    #[arg(long, env = "POSTERN_ORIGIN_CA", value_name = "PEM")]
    pub origin_ca: Vec<PathBuf>,
    /// Reach the edge (enrolment, tunnel connections and, in quick mode, the control API)
    /// through this HTTP proxy with CONNECT: `http://[user:password@]host:port`. Default: the
    /// proxy HTTPS_PROXY or ALL_PROXY names (NO_PROXY lists hosts reached directly), else none.
    #[arg(long, env = "POSTERN_PROXY", value_name = "URL")]
    pub proxy: Option<String>,
    /// Only proxy to these origins (repeatable, or comma-separated in the variable):
    /// `host:port`, `host` (any port) or `scheme://host[:port]`. A hostname the edge points at
    /// any other origin is refused: not served, and reported to the edge, so that
    /// `terraform apply` fails naming this connector and the reason. Default: any origin.
    #[arg(
        long,
        env = "POSTERN_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,
    /// Log format on stderr.
    #[arg(long, env = "POSTERN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What to log: error, warn, info, debug or trace, or a tracing filter such as
    /// `info,postern_runtime=debug` (default: info; without this flag and its variable, a
    /// filter in POSTERN_LOG is still honoured).
    #[arg(
        long,
        env = "POSTERN_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = parse_log_level
    )]
    pub log_level: Option<String>,
}

impl Cli {
    /// The options of the mode that runs.
    pub fn common(&self) -> &CommonArgs {
        match &self.command {
            Some(Command::Tunnel {
                command: TunnelCommand::Run(args),
            }) => &args.common,
            None => &self.quick.common,
        }
    }
}

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the command line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The flags themselves (or `--help`, `--version`): clap prints and exits.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The config file.
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// It cannot be read.
    #[error("cannot read the config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not TOML.
    #[error("the config file {path} is not valid TOML")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: toml::de::Error,
    },
    /// It names a key that is no flag.
    #[error(
        "unknown key {key:?} in the config file {path}{hint}; the keys are the flags' names: {known}"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// A likely correction, if any (` (did you mean "grace-period"?)`).
        hint: String,
        /// Every key the file may hold.
        known: String,
    },
    /// A key's value is not one its flag accepts.
    #[error("bad value for {key:?} in the config file {path}: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why, in the flag's words.
        reason: String,
    },
}

/// Parses the command line `args` (the program name first), with defaults from the config
/// file that `--config` or, failing that, `POSTERN_CONFIG` names.
pub fn parse_args<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if let Some(path) = config_path(&args, |name| std::env::var_os(name)) {
        command = apply_config_file(command, &path)?;
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The config file named by `--config FILE` or `--config=FILE` (before any `--`), else by
/// the variable `POSTERN_CONFIG` (read with `env`).
fn config_path(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    env("POSTERN_CONFIG")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// Reads the config file at `path` and makes its values the defaults of `command`'s flags
/// (in quick mode and in `tunnel run`: a key of the other mode is ignored).
fn apply_config_file(
    command: clap::Command,
    path: &Path,
) -> Result<clap::Command, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let flags = file_keys(&command);
    let mut command = command;
    for (key, value) in &table {
        let Some(flag) = flags.iter().find(|flag| flag.get_long() == Some(key)) else {
            let suggestion = key.replace('_', "-");
            let hint = if flags.iter().any(|f| f.get_long() == Some(&suggestion)) {
                format!(" (did you mean {suggestion:?}?)")
            } else {
                String::new()
            };
            let known: Vec<&str> = flags.iter().filter_map(|f| f.get_long()).collect();
            return Err(ConfigFileError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                hint,
                known: known.join(", "),
            });
        };
        let values = file_values(flag, value).map_err(|reason| ConfigFileError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            reason,
        })?;
        let id = flag.get_id().clone();
        let set_default = |arg: clap::Arg| {
            let secret = arg.is_hide_env_values_set();
            arg.required(false)
                .default_values(values.clone())
                .hide_default_value(secret)
        };
        if command.get_arguments().any(|a| a.get_id() == &id) {
            command = command.mut_arg(&id, set_default);
        }
        let in_run = command
            .find_subcommand("tunnel")
            .and_then(|tunnel| tunnel.find_subcommand("run"))
            .is_some_and(|run| run.get_arguments().any(|a| a.get_id() == &id));
        if in_run {
            command = command.mut_subcommand("tunnel", |tunnel| {
                tunnel.mut_subcommand("run", |run| run.mut_arg(&id, set_default))
            });
        }
    }
    Ok(command)
}

/// The flags a config file may set: every named flag of quick mode and `tunnel run` except
/// `--config` itself, `--help` and `--version`.
fn file_keys(command: &clap::Command) -> Vec<clap::Arg> {
    let run = command
        .find_subcommand("tunnel")
        .and_then(|tunnel| tunnel.find_subcommand("run"));
    let mut flags: Vec<clap::Arg> = Vec::new();
    for arg in command
        .get_arguments()
        .chain(run.into_iter().flat_map(|run| run.get_arguments()))
    {
        let settable = arg
            .get_long()
            .is_some_and(|long| !matches!(long, "config" | "help" | "version"));
        if settable && !flags.iter().any(|f| f.get_id() == arg.get_id()) {
            flags.push(arg.clone());
        }
    }
    flags.sort_by(|a, b| a.get_long().cmp(&b.get_long()));
    flags
}

/// The values of `flag` that a file's `value` stands for, each checked as the flag checks
/// it; otherwise why not.
fn file_values(flag: &clap::Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let is_switch = matches!(flag.get_action(), ArgAction::SetTrue);
    let repeatable = matches!(flag.get_action(), ArgAction::Append);
    let values = match value {
        toml::Value::Boolean(on) if is_switch => return Ok(vec![on.to_string()]),
        _ if is_switch => return Err("write true or false".into()),
        toml::Value::Array(items) if repeatable => {
            items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
        }
        toml::Value::Array(_) => return Err("write one value, not a list".into()),
        other => vec![scalar(other)?],
    };
    for value in &values {
        check_value(flag, value)?;
    }
    Ok(values)
}

/// A string, number or boolean of the file as the text a flag would be given.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(on) => Ok(on.to_string()),
        _ => Err("write a string, a number or a boolean".into()),
    }
}

/// Does `flag` accept `value`? Asks the flag's own parser, so the file and the command line
/// accept exactly the same values.
fn check_value(flag: &clap::Arg, value: &str) -> Result<(), String> {
    let Some(long) = flag.get_long() else {
        return Ok(());
    };
    let check = clap::Command::new("postern")
        .no_binary_name(true)
        .arg(flag.clone().required(false).env(None::<&str>));
    match check.try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(error) => Err(match std::error::Error::source(&error) {
            Some(source) => source.to_string(),
            None => error
                .render()
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_string(),
        }),
    }
}

/// `--log-level`: one of the five levels (or `off`), or a tracing filter with directives
/// such as `warn,postern_runtime=debug`.
fn parse_log_level(text: &str) -> Result<String, String> {
    let text = text.trim();
    let level = text.to_ascii_lowercase();
    if matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace" | "off"
    ) {
        return Ok(level);
    }
    if text.contains(['=', ',', '[']) {
        return tracing_subscriber::EnvFilter::builder()
            .parse(text)
            .map(|_| text.to_string())
            .map_err(|error| format!("{text:?} is not a tracing filter: {error}"));
    }
    Err(format!(
        "{text:?} is not a log level: write error, warn, info, debug or trace, or a filter such as info,postern_runtime=debug"
    ))
}

/// The trimmed contents of a file that holds one secret (a token), refused when empty.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

impl RunArgs {
    /// The tunnel's token: `--token` (or its variable or the config file), or the contents of
    /// `--token-file`.
    pub fn token(&self) -> Result<String, String> {
        match (&self.token, &self.token_file) {
            (_, Some(path)) => read_secret_file(path).map_err(|e| format!("--token-file: {e}")),
            (Some(token), None) => Ok(token.clone()),
            (None, None) => Err("give --token-file FILE (or --token, POSTERN_TOKEN)".into()),
        }
    }
}

impl QuickArgs {
    /// The control API token: `--api-token` (or its variable or the config file), or the
    /// contents of `--api-token-file`; `None` when neither is given.
    pub fn api_token(&self) -> Result<Option<String>, String> {
        match (&self.api_token, &self.api_token_file) {
            (_, Some(path)) => read_secret_file(path)
                .map(Some)
                .map_err(|e| format!("--api-token-file: {e}")),
            (token, None) => Ok(token.clone()),
        }
    }
}

/// `~/.postern`, when the home directory is known.
pub fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".postern"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn run_args(cli: &Cli) -> &RunArgs {
        match &cli.command {
            Some(Command::Tunnel {
                command: TunnelCommand::Run(args),
            }) => args,
            None => panic!("not tunnel run"),
        }
    }

    /// A config file holding `text`, and `postern tunnel run --config FILE` plus `extra`.
    fn with_file(text: &str, extra: &[&str]) -> (tempfile::NamedTempFile, Result<Cli, CliError>) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        let path = file.path().to_string_lossy().into_owned();
        let mut args = vec!["postern", "tunnel", "run", "--config", path.as_str()];
        args.extend(extra);
        let parsed = parse_args(args);
        (file, parsed)
    }

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = parse_args([
            "postern",
            "tunnel",
            "run",
            "--token",
            "t",
            "--connections",
            "3",
        ])
        .expect("parses");
        assert_eq!(run_args(&cli).common.connections, Some(3));
        let cli = parse_args([
            "postern",
            "--hostname",
            "a.example.com",
            "http://localhost:1",
        ])
        .expect("parses");
        assert_eq!(cli.quick.url.as_deref(), Some("http://localhost:1"));
        assert!(
            parse_args([
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

    #[test]
    fn every_flag_has_a_postern_variable_shown_in_help() {
        let command = Cli::command();
        let mut help = command.clone();
        let help = help.render_long_help().to_string();
        for flag in file_keys(&command).iter().chain(
            command
                .get_arguments()
                .filter(|a| a.get_long() == Some("config")),
        ) {
            let env = flag
                .get_env()
                .and_then(|e| e.to_str())
                .unwrap_or_else(|| panic!("--{:?} has no variable", flag.get_long()));
            assert!(env.starts_with("POSTERN_"), "{env}");
            assert!(
                ["token", "token_file"].contains(&flag.get_id().as_str())
                    || help.contains(&format!("[env: {env}")),
                "{env} is not in --help"
            );
        }
        assert!(help.contains("grace-period = \"1m30s\""), "{help}");
    }

    #[test]
    fn durations_use_the_shared_grammar() {
        let cli = parse_args([
            "postern",
            "tunnel",
            "run",
            "--token",
            "t",
            "--grace-period",
            "1m30s",
            "--origin-timeout",
            "500ms",
        ])
        .expect("parses");
        assert_eq!(run_args(&cli).common.grace_period, Duration::from_secs(90));
        assert_eq!(
            run_args(&cli).common.origin_timeout,
            Duration::from_millis(500)
        );
        assert!(
            parse_args([
                "postern",
                "tunnel",
                "run",
                "--token",
                "t",
                "--grace-period",
                "30"
            ])
            .is_err()
        );
    }

    #[test]
    fn the_file_sets_what_flags_set_and_flags_win() {
        let text = r#"
token = "from-the-file"
connections = 4
grace-period = "1m30s"
metrics = "127.0.0.1:9090"
hello-world = true
origin-ca = ["a.pem", "b.pem"]
log-level = "debug"
log-format = "json"
hostname = "quick.example.com"
"#;
        let (file, parsed) = with_file(text, &[]);
        let cli = parsed.expect("parses");
        let run = run_args(&cli);
        assert_eq!(run.token.as_deref(), Some("from-the-file"));
        assert_eq!(run.common.connections, Some(4));
        assert_eq!(run.common.grace_period, Duration::from_secs(90));
        assert_eq!(run.common.metrics, "127.0.0.1:9090".parse().ok());
        assert!(run.common.hello_world);
        assert_eq!(
            run.common.origin_ca,
            vec![PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
        assert_eq!(run.common.log_level.as_deref(), Some("debug"));
        assert_eq!(run.common.log_format, LogFormat::Json);
        assert_eq!(run.common.origin_timeout, Duration::from_secs(100));

        // Quick mode reads the same file and ignores `token`.
        let quick = parse_args([
            "postern",
            "--config",
            &file.path().to_string_lossy(),
            "http://localhost:4000",
        ])
        .expect("parses");
        assert!(quick.command.is_none());
        assert_eq!(quick.quick.hostname.as_deref(), Some("quick.example.com"));
        assert_eq!(quick.quick.common.connections, Some(4));

        let (_file, parsed) = with_file(text, &["--connections", "2", "--token", "flag"]);
        let cli = parsed.expect("parses");
        assert_eq!(run_args(&cli).common.connections, Some(2));
        assert_eq!(run_args(&cli).token.as_deref(), Some("flag"));
    }

    #[test]
    fn a_token_from_the_file_is_not_shown_in_help() {
        let (file, _) = with_file("token = \"secret-token-value\"\n", &[]);
        let command = apply_config_file(Cli::command(), file.path()).expect("applies");
        let mut run = command
            .find_subcommand("tunnel")
            .and_then(|t| t.find_subcommand("run"))
            .expect("tunnel run")
            .clone();
        let help = run.render_long_help().to_string();
        assert!(!help.contains("secret-token-value"), "{help}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_key_and_file() {
        let (file, parsed) = with_file("grace_period = \"30s\"\n", &[]);
        let Err(CliError::ConfigFile(error)) = parsed else {
            panic!("refused")
        };
        let message = error.to_string();
        let path = file.path().display().to_string();
        assert!(
            message.contains("unknown key \"grace_period\""),
            "{message}"
        );
        assert!(message.contains(&path), "{message}");
        assert!(
            message.contains("did you mean \"grace-period\"?"),
            "{message}"
        );

        for (text, key, reason) in [
            (
                "grace-period = \"forever\"",
                "grace-period",
                "is not a duration",
            ),
            ("connections = 0", "connections", "0 is not in 1..=32"),
            ("connections = [1, 2]", "connections", "not a list"),
            (
                "hello-world = \"yes\"",
                "hello-world",
                "write true or false",
            ),
            ("metrics = \"nowhere\"", "metrics", "invalid socket address"),
            (
                "log-format = \"xml\"",
                "log-format",
                "possible values: text, json",
            ),
            ("log-level = \"loud\"", "log-level", "is not a log level"),
            ("token = { a = 1 }", "token", "write a string"),
        ] {
            let (file, parsed) = with_file(text, &[]);
            let Err(CliError::ConfigFile(error)) = parsed else {
                panic!("{text} should be refused")
            };
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "bad value for {key:?} in the config file {}: ",
                    file.path().display()
                )),
                "{message}"
            );
            assert!(message.contains(reason), "{text}: {message}");
        }

        let (_file, parsed) = with_file("connections = ", &[]);
        assert!(matches!(
            parsed,
            Err(CliError::ConfigFile(ConfigFileError::Syntax { .. }))
        ));
        let missing = parse_args([
            "postern",
            "tunnel",
            "run",
            "--config",
            "/nonexistent/postern.toml",
        ]);
        assert!(matches!(
            missing,
            Err(CliError::ConfigFile(ConfigFileError::Read { .. }))
        ));
    }

    #[test]
    fn the_config_path_comes_from_the_flag_then_the_variable() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let none = |_: &str| None;
        let env = |_: &str| Some(OsString::from("/etc/postern/env.toml"));
        assert_eq!(
            config_path(
                &args(&["postern", "tunnel", "run", "--config", "a.toml"]),
                env
            ),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["postern", "--config=b.toml"]), none),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_path(&args(&["postern", "tunnel", "run"]), env),
            Some(PathBuf::from("/etc/postern/env.toml"))
        );
        assert_eq!(
            config_path(&args(&["postern", "--", "--config", "c.toml"]), none),
            None
        );
    }

    #[test]
    fn log_levels_are_levels_or_filters() {
        assert_eq!(parse_log_level("DEBUG"), Ok("debug".into()));
        assert_eq!(
            parse_log_level("info,postern_runtime=trace"),
            Ok("info,postern_runtime=trace".into())
        );
        assert!(parse_log_level("verbose").is_err());
        assert!(parse_log_level("info,postern_runtime=loud").is_err());
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "postern1.from-a-file").expect("write");
        let path = file.path().display().to_string();
        let cli = parse_args(["postern", "tunnel", "run", "--token-file", &path]).expect("parses");
        assert_eq!(
            run_args(&cli).token().as_deref(),
            Ok("postern1.from-a-file")
        );
        let without = parse_args(["postern", "tunnel", "run"]).expect("parses");
        assert!(run_args(&without).token().is_err());
        let missing = parse_args(["postern", "tunnel", "run", "--token-file", "/nonexistent"])
            .expect("parses");
        let error = run_args(&missing).token().expect_err("unreadable");
        assert!(
            error.starts_with("--token-file: cannot read /nonexistent"),
            "{error}"
        );
    }
}
