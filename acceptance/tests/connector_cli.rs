//! The connector's command-line habits (issue 26): the real `postern` binary configured by
//! nothing but `POSTERN_*` variables, and again by nothing but a `--config` TOML file,
//! connects to a real edge and serves the same way; a flag beats its variable, which beats
//! the file; a bad key is refused naming it and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{EdgeProcess, TestOrigin, binary, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use postern_schema::api::{HostnameSpec, Tunnel, TunnelSpec};
use postern_schema::client::Client;

/// A `postern` process started with a cleared environment plus exactly what a test gives
/// it; killed when dropped.
struct Connector {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Connector {
    /// `postern ARGS` with only `env` (and `HOME` in its own temporary directory).
    fn start(args: &[&str], env: &[(&str, String)], dir: tempfile::TempDir) -> Self {
        let log = dir.path().join("connector.log");
        let child = Command::new(binary("postern"))
            .args(args)
            .env_clear()
            .env("HOME", dir.path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawning postern");
        Self {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits at most `timeout` for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then the exit status (at most 30 s later).
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        self.wait_exit(Duration::from_secs(30))
    }

    /// The address `--metrics 127.0.0.1:0` got, read from the log.
    async fn metrics_addr(&self) -> std::net::SocketAddr {
        eventually(Duration::from_secs(20), "the metrics address", || async {
            self.log().lines().find_map(|line| {
                if !line.contains("serving /ready and /metrics") {
                    return None;
                }
                let (_, rest) = line.split_once("address=")?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .await
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("postern-cli-")
        .tempdir()
        .expect("temp dir")
}

/// A tunnel serving `hostname` with `service`.
async fn tunnel_for(client: &Client, name: &str, hostname: &str, service: &str) -> Tunnel {
    let tunnel = client
        .create_tunnel(&TunnelSpec {
            name: name.into(),
            labels: BTreeMap::new(),
        })
        .await
        .expect("create tunnel");
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: hostname.into(),
            service: service.into(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: Vec::new(),
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("create hostname");
    tunnel
}

fn token(tunnel: &Tunnel) -> String {
    tunnel
        .token
        .clone()
        .expect("a new tunnel carries its token")
}

/// Waits until the tunnel has exactly `count` registered connections.
async fn wait_for_connections(client: &Client, tunnel: &Tunnel, count: usize) {
    eventually(
        Duration::from_secs(30),
        &format!("{count} registered connections"),
        || async {
            let list = client.tunnel_connections(tunnel.id).await.ok()?;
            (list.len() == count).then_some(())
        },
    )
    .await;
}

/// What a user sees of one connector run.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    body: String,
    ready: u16,
    metrics_connections: bool,
    debug_logged: bool,
    grace_period_logged: bool,
    exit_code: Option<i32>,
}

/// Drives a connector configured to keep two connections, serve /ready and /metrics, log at
/// debug and give in-flight requests 90 s: what a user sees of it.
async fn observe(
    connector: &mut Connector,
    edge: &EdgeProcess,
    tunnel: &Tunnel,
    host: &str,
) -> Seen {
    let client = edge.client();
    wait_for_connections(&client, tunnel, 2).await;
    let response = edge_http_client(edge, host)
        .get(http_url(edge, host, "/hello"))
        .send()
        .await
        .expect("request through the edge");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();

    let metrics = connector.metrics_addr().await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let ready = plain
        .get(format!("http://{metrics}/ready"))
        .send()
        .await
        .expect("/ready")
        .status()
        .as_u16();
    let text = plain
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .unwrap_or_default();

    let exit = connector.terminate();
    let log = connector.log();
    Seen {
        status,
        body,
        ready,
        metrics_connections: text.contains("postern_connector_connections 2"),
        debug_logged: log.contains(" DEBUG "),
        grace_period_logged: log.contains("grace_period_s=90"),
        exit_code: exit.and_then(|status| status.code()),
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_configured_by_variables_or_by_a_file_behaves_the_same() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "cli.example.com";
    let tunnel = tunnel_for(&client, "cli", host, &origin.url()).await;

    // Nothing but environment variables (the way a systemd EnvironmentFile sets them).
    let dir = temp_dir();
    let state = dir.path().join("state");
    let env = [
        ("POSTERN_TOKEN", token(&tunnel)),
        ("POSTERN_STATE_DIR", state.display().to_string()),
        ("POSTERN_CONNECTIONS", "2".to_string()),
        ("POSTERN_GRACE_PERIOD", "1m30s".to_string()),
        ("POSTERN_METRICS", "127.0.0.1:0".to_string()),
        ("POSTERN_ORIGIN_TIMEOUT", "30s".to_string()),
        ("POSTERN_LOG_LEVEL", "debug".to_string()),
        ("POSTERN_LOG_FORMAT", "text".to_string()),
    ];
    let mut by_env = Connector::start(&["tunnel", "run"], &env, dir);
    let from_env = observe(&mut by_env, &edge, &tunnel, host).await;
    wait_for_connections(&client, &tunnel, 0).await;

    // Nothing but a config file; 90s is written the other way.
    let dir = temp_dir();
    let state = dir.path().join("state");
    let file = write_file(
        dir.path(),
        "postern.toml",
        &format!(
            "token = \"{}\"\nstate-dir = \"{}\"\nconnections = 2\ngrace-period = \"90s\"\n\
             metrics = \"127.0.0.1:0\"\norigin-timeout = \"30s\"\nlog-level = \"debug\"\n\
             log-format = \"text\"\n",
            token(&tunnel),
            state.display()
        ),
    );
    let file = file.display().to_string();
    let mut by_file = Connector::start(&["tunnel", "run", "--config", &file], &[], dir);
    let from_file = observe(&mut by_file, &edge, &tunnel, host).await;

    assert_eq!(from_env.status, 200, "{}", by_env.log());
    assert_eq!(from_env.body, "hello from the origin");
    assert_eq!(
        origin.hits(),
        2,
        "one request of each run reached the origin"
    );
    assert_eq!(from_env.ready, 200);
    assert!(from_env.metrics_connections, "{from_env:?}");
    assert!(from_env.debug_logged, "--log-level debug: {}", by_env.log());
    assert!(
        from_env.grace_period_logged,
        "1m30s is 90 s: {}",
        by_env.log()
    );
    assert_eq!(from_env.exit_code, Some(0));
    assert_eq!(from_file, from_env, "{}", by_file.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flag_beats_its_variable_which_beats_the_file() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "order", "order.example.com", &origin.url()).await;

    let run = |flags: &[&str]| {
        let dir = temp_dir();
        let file = write_file(
            dir.path(),
            "postern.toml",
            &format!("token = \"{}\"\nconnections = 1\n", token(&tunnel)),
        );
        let file = file.display().to_string();
        let mut args = vec!["tunnel", "run", "--config", file.as_str()];
        args.extend_from_slice(flags);
        let env = [("POSTERN_CONNECTIONS", "2".to_string())];
        Connector::start(&args, &env, dir)
    };

    // The file says 1, the variable 2: two connections.
    let mut connector = run(&[]);
    wait_for_connections(&client, &tunnel, 2).await;
    assert_eq!(
        connector.terminate().and_then(|s| s.code()),
        Some(0),
        "{}",
        connector.log()
    );
    wait_for_connections(&client, &tunnel, 0).await;

    // And the flag says 3: three.
    let mut connector = run(&["--connections", "3"]);
    wait_for_connections(&client, &tunnel, 3).await;
    assert_eq!(connector.terminate().and_then(|s| s.code()), Some(0));
}

#[test]
fn a_bad_key_or_value_in_the_config_file_is_refused_naming_it_and_the_file() {
    for (text, expected) in [
        (
            "token = \"t\"\ngrace_period = \"30s\"\n",
            "unknown key \"grace_period\" in the config file",
        ),
        (
            "token = \"t\"\ngrace-period = \"forever\"\n",
            "bad value for \"grace-period\" in the config file",
        ),
    ] {
        let dir = temp_dir();
        let file = write_file(dir.path(), "postern.toml", text);
        let path = file.display().to_string();
        let mut connector = Connector::start(&["tunnel", "run", "--config", &path], &[], dir);
        let status = connector
            .wait_exit(Duration::from_secs(30))
            .expect("the connector exits at once");
        let log = connector.log();
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.starts_with("error: "), "{log}");
        assert!(log.contains(expected), "{log}");
        assert!(log.contains(&path), "the message names the file: {log}");
    }
    let dir = temp_dir();
    let file = write_file(dir.path(), "postern.toml", "grace_period = \"30s\"\n");
    let path = file.display().to_string();
    let mut connector = Connector::start(&["tunnel", "run", "--config", &path], &[], dir);
    connector.wait_exit(Duration::from_secs(30));
    assert!(
        connector.log().contains("did you mean \"grace-period\"?"),
        "{}",
        connector.log()
    );
}
