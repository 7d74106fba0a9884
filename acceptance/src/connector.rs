//! `ConnectorProcess`: the real `postern` connector binary, started with a token (or any
//! arguments, for quick mode), with its own state directory; killed when dropped. Plus
//! [`eventually`], the bounded polling loop tests wait with instead of sleeping.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::binaries::binary;

/// How to start a connector.
#[derive(Debug, Clone, Default)]
pub struct ConnectorOptions {
    /// Its state directory; a fresh temporary one when `None`.
    pub state_dir: Option<PathBuf>,
    /// Arguments after `postern` (for example `tunnel run --token …`).
    pub args: Vec<String>,
    /// More environment variables.
    pub env: Vec<(String, String)>,
}

/// A running `postern` process; killed when dropped.
pub struct ConnectorProcess {
    child: Option<Child>,
    log: PathBuf,
    state_dir: PathBuf,
    status: Option<ExitStatus>,
    _temp: tempfile::TempDir,
}

impl ConnectorProcess {
    /// `postern tunnel run --token TOKEN --connections N` plus `extra` arguments.
    pub fn run(token: &str, connections: u16, extra: &[&str]) -> Self {
        let mut args = vec![
            "tunnel".to_string(),
            "run".into(),
            "--token".into(),
            token.into(),
            "--connections".into(),
            connections.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start(ConnectorOptions {
            args,
            ..ConnectorOptions::default()
        })
    }

    /// Starts `postern` with `options`.
    pub fn start(options: ConnectorOptions) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("postern-connector-")
            .tempdir()
            .expect("temp dir");
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("state"));
        let log = temp.path().join("connector.log");
        let log_file = std::fs::File::create(&log).expect("connector log");
        let child = Command::new(binary("postern"))
            .args(&options.args)
            .env("POSTERN_STATE_DIR", &state_dir)
            .env("HOME", temp.path())
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_API_TOKEN")
            .env_remove("POSTERN_ENDPOINT")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawning postern");
        Self {
            child: Some(child),
            log,
            state_dir,
            status: None,
            _temp: temp,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }

    /// The exit status, once it exited (waiting at most `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.status = Some(status);
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The connector's id (what the edge lists as `connector_id` and the origin sees in
    /// `x-postern-connector`), read from its log.
    pub async fn connector_id(&self) -> String {
        eventually(Duration::from_secs(10), "the connector's id", || async {
            self.log().lines().find_map(|line| {
                let (_, rest) = line.split_once("connector_id=")?;
                Some(rest.split_whitespace().next()?.to_string())
            })
        })
        .await
    }

    /// The address of `--metrics 127.0.0.1:0`, read from its log.
    pub async fn metrics_addr(&self) -> SocketAddr {
        eventually(
            Duration::from_secs(10),
            "the connector's metrics address",
            || async {
                self.log().lines().find_map(|line| {
                    if !line.contains("serving /ready and /metrics") {
                        return None;
                    }
                    let (_, rest) = line.split_once("address=")?;
                    rest.split_whitespace().next()?.parse().ok()
                })
            },
        )
        .await
    }
}

impl Drop for ConnectorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 10 ms until it returns `Some`, at most `timeout`; panics naming
/// `what` otherwise.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
