//! `EdgeProcess`: the real `postern-edge` binary on loopback, port 0, with its own data dir.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use postern_schema::client::{Client, ClientOptions};
use postern_schema::secret::Secret;
use serde::Deserialize;

use crate::api::Api;
use crate::binaries::binary;

/// How long an edge may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The edge's ready line.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "ReadyLine")]
pub struct Ready {
    /// Control API.
    pub api: SocketAddr,
    /// Whether the control API is served over TLS (the line said `https://…`).
    pub api_tls: bool,
    /// `/metrics` without a token (`--metrics-listen`).
    pub metrics: Option<SocketAddr>,
    /// Public HTTP.
    pub http: SocketAddr,
    /// Public HTTPS.
    pub https: SocketAddr,
    /// Tunnel listener.
    pub tunnel: SocketAddr,
    /// DNS.
    pub dns: SocketAddr,
}

/// The ready line as printed: `api` is `host:port`, or `https://host:port` with TLS.
#[derive(Deserialize)]
struct ReadyLine {
    api: String,
    http: SocketAddr,
    https: SocketAddr,
    tunnel: SocketAddr,
    dns: SocketAddr,
    #[serde(default)]
    metrics: Option<SocketAddr>,
}

impl TryFrom<ReadyLine> for Ready {
    type Error = String;

    fn try_from(line: ReadyLine) -> Result<Self, String> {
        let (api, api_tls) = match line.api.strip_prefix("https://") {
            Some(address) => (address, true),
            None => (line.api.as_str(), false),
        };
        Ok(Ready {
            api: api
                .parse()
                .map_err(|e| format!("api {:?}: {e}", line.api))?,
            api_tls,
            metrics: line.metrics,
            http: line.http,
            https: line.https,
            tunnel: line.tunnel,
            dns: line.dns,
        })
    }
}

/// How to start an edge.
#[derive(Debug, Clone, Default)]
pub struct EdgeOptions {
    /// The data dir; a fresh temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Zones (`--zone`); the edge's default when empty.
    pub zones: Vec<String>,
    /// More flags.
    pub args: Vec<String>,
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// Bind exactly these addresses instead of port 0 (used by restarts).
    pub addrs: Option<Ready>,
    /// The address the public HTTP and HTTPS listeners bind (port 0); 127.0.0.1 when `None`.
    pub public_ip: Option<std::net::IpAddr>,
    /// Start the edge with this soft limit of open files (its hard limit stays), as a system
    /// with a low default would.
    pub soft_nofile: Option<u64>,
    /// The CA certificate (PEM) clients trust for an API over TLS; `None`: the edge's own
    /// `<data-dir>/ca.pem` (`--api-tls edge-ca`).
    pub api_ca_pem: Option<String>,
}

/// A running `postern-edge` process; killed when dropped.
pub struct EdgeProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addrs: Ready,
    /// The admin API token.
    pub admin_token: String,
    options: EdgeOptions,
    data_dir: PathBuf,
    log: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl EdgeProcess {
    /// Starts an edge with default options.
    pub fn start() -> Self {
        Self::start_with(EdgeOptions::default())
    }

    /// Starts an edge with `options`; panics (with the edge's log) if it does not get ready.
    pub fn start_with(options: EdgeOptions) -> Self {
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("postern-edge-")
                    .tempdir()
                    .expect("temp dir");
                let dir = temp.path().join("data");
                (Some(temp), dir)
            }
        };
        let log = data_dir.with_extension("log");
        let (child, addrs) = spawn(&options, &data_dir, &log);
        let admin_token = std::fs::read_to_string(data_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .or_else(|_| {
                options
                    .env
                    .iter()
                    .find(|(k, _)| k == "POSTERN_ADMIN_TOKEN")
                    .map(|(_, v)| v.clone())
                    .ok_or(())
            })
            .or_else(|_| {
                // `--admin-token-file FILE`.
                let file = options
                    .args
                    .iter()
                    .skip_while(|arg| *arg != "--admin-token-file")
                    .nth(1)
                    .ok_or(())?;
                std::fs::read_to_string(file)
                    .map(|t| t.trim().to_string())
                    .map_err(|_| ())
            })
            .expect("the edge wrote no admin-token file");
        Self {
            child: Some(child),
            addrs,
            admin_token,
            options,
            data_dir,
            log,
            _temp: temp,
        }
    }

    /// `http://<api address>`, or `https://…` when the API is served over TLS.
    pub fn api_url(&self) -> String {
        let scheme = if self.addrs.api_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addrs.api)
    }

    /// The CA certificate (PEM) a client of the API must trust: the one the options gave, else
    /// the edge's `<data-dir>/ca.pem`; `None` for plain HTTP.
    pub fn api_ca_pem(&self) -> Option<String> {
        if !self.addrs.api_tls {
            return None;
        }
        self.options
            .api_ca_pem
            .clone()
            .or_else(|| std::fs::read_to_string(self.data_dir.join("ca.pem")).ok())
    }

    /// The typed client with the admin token.
    pub fn client(&self) -> Client {
        self.client_with(&self.admin_token)
    }

    /// The typed client with `token`.
    pub fn client_with(&self, token: &str) -> Client {
        let options = ClientOptions {
            ca_cert_pem: self.api_ca_pem(),
            ..ClientOptions::default()
        };
        Client::with_options(&self.api_url(), Secret::new(token), &options).expect("client")
    }

    /// A raw API client with the admin token that checks every answer against openapi.json.
    pub fn api(&self) -> Api {
        Api::with_ca(
            &self.api_url(),
            Some(&self.admin_token),
            self.api_ca_pem().as_deref(),
        )
    }

    /// The value of one series of `GET /metrics` (`name{labels}` as the edge writes it), or 0
    /// when the edge shows no such series.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.api().get("/metrics").await.text;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the edge wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; the exit status and how long the edge took to exit, or `None` when it was
    /// still running after `limit` (it is killed then).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let mut child = self.child.take().expect("the edge is not running");
        let started = Instant::now();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, started.elapsed()));
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, and wait (at most 30 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the edge is not running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the edge did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the edge again on the same data dir and the same addresses, with `args` added
    /// to its flags from now on.
    pub fn restart_with_args(&mut self, args: &[String]) {
        self.options.args.extend(args.iter().cloned());
        self.restart();
    }

    /// Starts the edge again on the same data dir and the same addresses.
    pub fn restart(&mut self) {
        self.kill();
        let mut options = self.options.clone();
        options.addrs = Some(self.addrs);
        let (child, addrs) = spawn(&options, &self.data_dir, &self.log);
        self.child = Some(child);
        self.addrs = addrs;
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(options: &EdgeOptions, data_dir: &Path, log: &Path) -> (Child, Ready) {
    let listen = |addr: Option<SocketAddr>| {
        addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string())
    };
    let fixed = options.addrs;
    let public = |addr: Option<SocketAddr>| match (addr, options.public_ip) {
        (None, Some(ip)) => SocketAddr::new(ip, 0).to_string(),
        (addr, _) => listen(addr),
    };
    let mut command = match options.soft_nofile {
        None => Command::new(binary("postern-edge")),
        Some(soft) => {
            // The shell lowers its own soft limit, then becomes the edge (same process).
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -S -n {soft} && exec \"$0\" \"$@\""))
                .arg(binary("postern-edge"));
            shell
        }
    };
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--api-listen", &listen(fixed.map(|a| a.api))])
        .args(["--http-listen", &public(fixed.map(|a| a.http))])
        .args(["--https-listen", &public(fixed.map(|a| a.https))])
        .args(["--tunnel-listen", &listen(fixed.map(|a| a.tunnel))])
        .args(["--dns-listen", &listen(fixed.map(|a| a.dns))])
        .args(&options.args)
        .env_remove("POSTERN_ADMIN_TOKEN")
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for zone in &options.zones {
        command.args(["--zone", zone]);
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("edge log file");
    command.stderr(log_file);
    let mut child = command.spawn().expect("spawning postern-edge");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = sender.send(line);
        }
        // Keep draining so the edge never blocks on a full pipe.
        for _ in lines {}
    });
    match receiver.recv_timeout(READY_TIMEOUT) {
        Ok(line) => {
            let ready: Ready = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("bad ready line {line:?}: {e}"));
            (child, ready)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "postern-edge did not print its ready line within {READY_TIMEOUT:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}
