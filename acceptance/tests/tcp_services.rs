//! Raw TCP services through the tunnel (issue 30): a real OpenSSH server behind a real
//! connector, reached with the real `ssh` and `scp` through the edge's TCP port; `psql` to a
//! real PostgreSQL the same way; IP lists and a connection-rate limit refusing at accept (an
//! origin that counts connections proves refused ones never reached it); and a connector killed
//! mid-transfer closing the visitor's connection, a second connector taking the next ones.
//! Different 127.x.y.z source addresses stand in for different clients.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acceptance::fixture::create_tunnel;
use acceptance::{ConnectorProcess, EdgeOptions, EdgeProcess, PostgresServer, eventually};
use postern_schema::api::{Policy, TcpService, TcpServiceSpec, Tunnel};
use postern_schema::client::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Where Debian's `openssh-server` puts the server.
const SSHD: &str = "/usr/sbin/sshd";

/// An edge that serves TCP services on ports the system picks, and one tunnel with a
/// connected connector.
struct Stage {
    edge: EdgeProcess,
    client: Client,
    tunnel: Tunnel,
    connector: ConnectorProcess,
}

impl Stage {
    async fn start() -> Self {
        let edge = EdgeProcess::start_with(EdgeOptions {
            args: vec!["--tcp-ports".into(), "0".into()],
            ..EdgeOptions::default()
        });
        let client = edge.client();
        let tunnel = create_tunnel(&client, "origin-host", &[]).await;
        let connector = connect(&client, &tunnel).await;
        Self {
            edge,
            client,
            tunnel,
            connector,
        }
    }

    /// Declares a TCP service to `origin` (a `host:port`) behind `policies`.
    async fn service(&self, name: &str, origin: &str, policies: &[&Policy]) -> TcpService {
        let service = self
            .client
            .create_tcp_service(&TcpServiceSpec {
                name: name.into(),
                service: format!("tcp://{origin}"),
                tunnel_id: Some(self.tunnel.id),
                routes: None,
                policy_ids: policies.iter().map(|p| p.id).collect(),
                listen_port: None,
            })
            .await
            .expect("create TCP service");
        assert!(
            service.listen.starts_with("127.0.0.1:"),
            "listen: {}",
            service.listen
        );
        service
    }

    async fn policy(&self, body: Value) -> Policy {
        let response = self.edge.api().post("/v1/policies", &body).await;
        assert_eq!(response.status, 201, "{}", response.text);
        serde_json::from_value(response.body).expect("policy")
    }
}

/// Runs a connector for `tunnel` and waits until the edge has it.
async fn connect(client: &Client, tunnel: &Tunnel) -> ConnectorProcess {
    let connector = ConnectorProcess::run(tunnel.token.as_deref().expect("token"), 1, &[]);
    eventually(Duration::from_secs(20), "the connector", || async {
        (!client.tunnel_connections(tunnel.id).await.ok()?.is_empty()).then_some(())
    })
    .await;
    connector
}

fn address(service: &TcpService) -> SocketAddr {
    service.listen.parse().expect("listen is an address")
}

// === a real OpenSSH server ===

/// `sshd` on a loopback port with its own host key, letting in the key the test made.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the TCP services test runs a real OpenSSH server. Install it \
             (Debian: apt-get install openssh-server); scripts/test does so when it can"
        );
        let dir = tempfile::Builder::new()
            .prefix("postern-sshd-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path();
        keygen(&path.join("host_key"));
        keygen(&path.join("client_key"));
        std::fs::copy(path.join("client_key.pub"), path.join("authorized_keys"))
            .expect("authorized_keys");
        if nix::unistd::geteuid().is_root() {
            // sshd, run as root, wants its privilege separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {keys}\n\
             PidFile {pid}\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             UsePAM no\n\
             Subsystem sftp internal-sftp\n",
            host_key = path.join("host_key").display(),
            keys = path.join("authorized_keys").display(),
            pid = path.join("sshd.pid").display(),
        );
        std::fs::write(path.join("sshd_config"), config).expect("sshd_config");
        let log = std::fs::File::create(path.join("sshd.log")).expect("sshd log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(path.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        let sshd = Self { child, port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "sshd did not listen within 20 s:\n{}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The options every `ssh` and `scp` here takes: the test's key only, no known hosts, no
    /// questions.
    fn client_options(&self) -> Vec<String> {
        let mut options: Vec<String> = vec!["-F".into(), "/dev/null".into()];
        options.push("-i".into());
        options.push(self.key().display().to_string());
        for option in [
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "ConnectTimeout=20",
            "LogLevel=ERROR",
        ] {
            options.push("-o".into());
            options.push(option.into());
        }
        options
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian: openssh-client)");
    assert!(output.status.success(), "ssh-keygen: {output:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the current user's name")
}

async fn run(command: &mut Command) -> Output {
    let mut command =
        tokio::process::Command::from(std::mem::replace(command, Command::new("true")));
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the command finished within 2 minutes")
        .expect("the command ran")
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_and_scp_go_through_the_edge() {
    let stage = Stage::start().await;
    let sshd = Sshd::start();
    let service = stage
        .service("ssh", &format!("127.0.0.1:{}", sshd.port), &[])
        .await;
    let edge = address(&service);

    let output = run(Command::new("ssh")
        .args(sshd.client_options())
        .args(["-p", &edge.port().to_string()])
        .arg(format!("{}@127.0.0.1", user()))
        .arg("echo through-the-edge; uname -s"))
    .await;
    assert!(
        output.status.success(),
        "ssh failed: {}\nsshd: {}\nedge: {}",
        String::from_utf8_lossy(&output.stderr),
        sshd.log(),
        stage.edge.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "through-the-edge\nLinux\n"
    );

    // 64 MiB of random bytes arrive byte for byte.
    let files = tempfile::tempdir().expect("temp dir");
    let source = files.path().join("payload.bin");
    let mut payload = vec![0u8; 64 * 1024 * 1024];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in payload.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&source, &payload).expect("payload");
    let target = files.path().join("arrived.bin");
    let output = run(Command::new("scp")
        .args(sshd.client_options())
        .args(["-P", &edge.port().to_string()])
        .arg(&source)
        .arg(format!("{}@127.0.0.1:{}", user(), target.display())))
    .await;
    assert!(
        output.status.success(),
        "scp failed: {}\nsshd: {}",
        String::from_utf8_lossy(&output.stderr),
        sshd.log()
    );
    let arrived = std::fs::read(&target).expect("the copied file");
    assert_eq!(arrived.len(), payload.len());
    assert_eq!(Sha256::digest(&arrived), Sha256::digest(&payload));

    // The edge counted the connections and the bytes.
    let carried = stage
        .edge
        .metric("postern_edge_tcp_connections_total{service=\"ssh\",outcome=\"carried\"}")
        .await;
    let to_origin = stage
        .edge
        .metric("postern_edge_tcp_bytes_total{service=\"ssh\",direction=\"to_origin\"}")
        .await;
    assert_eq!(
        carried,
        2,
        "{}",
        stage.edge.api().get("/metrics").await.text
    );
    assert!(to_origin > 64 * 1024 * 1024, "to_origin {to_origin}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_runs_a_query_through_the_edge() {
    let stage = Stage::start().await;
    let postgres = PostgresServer::start();
    let service = stage
        .service("db", &format!("127.0.0.1:{}", postgres.port()), &[])
        .await;
    let edge = address(&service);
    let output = run(Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &edge.port().to_string()])
        .args(["-U", acceptance::postgres::SUPERUSER, "-d", "postgres"])
        .args(["-X", "-A", "-t", "-c", "select 6 * 7"])
        .env("PGCONNECT_TIMEOUT", "20")
        .env("PGSSLMODE", "disable"))
    .await;
    assert!(
        output.status.success(),
        "psql failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        postgres.log()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
}

// === a counting echo origin ===

/// An origin that echoes every byte and counts the connections it accepted.
struct EchoOrigin {
    address: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl EchoOrigin {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        Self { address, accepted }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Connects to `edge` from `source` (a 127.x.y.z address).
async fn connect_from(source: &str, edge: SocketAddr) -> TcpStream {
    let source: IpAddr = source.parse().expect("source address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    socket.connect(edge).await.expect("the edge accepts")
}

/// Whether a connection from `source` gets its bytes echoed (`false`: the edge closed it).
async fn echoes(source: &str, edge: SocketAddr) -> bool {
    let mut stream = connect_from(source, edge).await;
    if stream.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer)).await,
        Ok(Ok(_)) if &answer == b"ping"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_outside_allow_ips_is_refused_before_the_origin() {
    let stage = Stage::start().await;
    let origin = EchoOrigin::start().await;
    let policy = stage
        .policy(json!({"name": "office", "allow_ips": ["127.0.0.2/32"]}))
        .await;
    let service = stage
        .service("echo", &origin.address.to_string(), &[&policy])
        .await;
    let edge = address(&service);

    assert!(
        !echoes("127.0.0.3", edge).await,
        "127.0.0.3 was let through"
    );
    assert_eq!(
        origin.accepted(),
        0,
        "a refused connection reached the origin"
    );
    assert!(echoes("127.0.0.2", edge).await, "127.0.0.2 was refused");
    assert_eq!(origin.accepted(), 1);
    assert_eq!(
        stage
            .edge
            .metric("postern_edge_tcp_connections_total{service=\"echo\",outcome=\"ip\"}")
            .await,
        1
    );

    // The status page's source lists the service with its counts (the carried connection is
    // counted once it has ended).
    let listed = eventually(
        Duration::from_secs(10),
        "the status to count the connection",
        || async {
            let status = stage.edge.api().get("/v1/status").await;
            let listed = status.body["tcp_services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "echo")?
                .clone();
            (listed["connections"] == 1).then_some(listed)
        },
    )
    .await;
    assert_eq!(listed["refused"], 1, "{listed}");
    assert_eq!(listed["listen"], json!(service.listen), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_rate_limit_refuses_the_excess() {
    let stage = Stage::start().await;
    let origin = EchoOrigin::start().await;
    let policy = stage
        .policy(json!({
            "name": "slow",
            "rate_limit": {"requests_per_second": 0.1, "burst": 2}
        }))
        .await;
    let service = stage
        .service("echo", &origin.address.to_string(), &[&policy])
        .await;
    let edge = address(&service);

    let mut carried = 0;
    for _ in 0..5 {
        if echoes("127.0.0.4", edge).await {
            carried += 1;
        }
    }
    assert_eq!(carried, 2, "the burst of 2 passes, the rest is refused");
    assert_eq!(origin.accepted(), 2);
    // Another client has its own bucket.
    assert!(echoes("127.0.0.5", edge).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policies_http_rules_are_refused_on_a_tcp_service() {
    let stage = Stage::start().await;
    let policy = stage
        .policy(json!({"name": "gets", "allow_methods": ["GET"]}))
        .await;
    let response = stage
        .edge
        .api()
        .post(
            "/v1/tcp-services",
            &json!({
                "name": "ssh",
                "service": "tcp://127.0.0.1:22",
                "tunnel_id": stage.tunnel.id,
                "policy_ids": [policy.id],
            }),
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.error_path(), Some("/policy_ids/0"));
    let response = stage
        .edge
        .api()
        .post(
            "/v1/tcp-services",
            &json!({"name": "web", "service": "http://127.0.0.1:80", "tunnel_id": stage.tunnel.id}),
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.error_path(), Some("/service"));

    // A policy a TCP service uses cannot gain HTTP rules later.
    let office = stage
        .policy(json!({"name": "office", "allow_ips": ["127.0.0.0/8"]}))
        .await;
    stage.service("ssh", "127.0.0.1:22", &[&office]).await;
    let response = stage
        .edge
        .api()
        .put(
            &format!("/v1/policies/{}", office.id),
            &json!({"name": "office", "allow_ips": ["127.0.0.0/8"], "allow_paths": ["/api/**"]}),
            None,
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.error_path(), Some("/allow_paths"));
    assert!(
        response.text.contains("TCP service ssh"),
        "{}",
        response.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_connector_closes_the_visitor_and_a_second_one_takes_over() {
    let mut stage = Stage::start().await;
    let origin = EchoOrigin::start().await;
    let service = stage
        .service("echo", &origin.address.to_string(), &[])
        .await;
    let edge = address(&service);

    // A transfer in progress: bytes sent and echoed.
    let mut stream = connect_from("127.0.0.6", edge).await;
    let chunk = vec![7u8; 64 * 1024];
    let mut echoed = vec![0u8; chunk.len()];
    for _ in 0..4 {
        stream.write_all(&chunk).await.expect("write");
        stream.read_exact(&mut echoed).await.expect("echo");
    }

    stage.connector.kill();
    // The visitor's connection ends (EOF or reset) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            match stream.read(&mut echoed).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the visitor's connection still hangs 15 s after the connector died"
    );

    // A second connector for the same tunnel takes the new connections.
    let _second = connect(&stage.client, &stage.tunnel).await;
    eventually(
        Duration::from_secs(20),
        "a new connection through the second connector",
        || async { echoes("127.0.0.6", edge).await.then_some(()) },
    )
    .await;
}
