//! The peers Postern is compared with, each set up in front of the same origin on loopback:
//! rathole (TCP and TLS transports) and bore, installed from crates.io into a cache folder with
//! `cargo install --root`, and nginx as a plain streaming reverse proxy when it is installed.
//! A peer that cannot be had is a [`Peer`] with a skip reason, never silently left out.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::load::{self, Endpoint};

/// How long a peer may take to carry its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The crates.io packages the benchmark installs, and the executable each provides.
pub const RATHOLE: Package = Package {
    krate: "rathole",
    version: "0.5.0",
    bin: "rathole",
};

/// bore, from the `bore-cli` package.
pub const BORE: Package = Package {
    krate: "bore-cli",
    version: "0.6.0",
    bin: "bore",
};

/// A crates.io package with an executable.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// The crate.
    pub krate: &'static str,
    /// The exact version installed.
    pub version: &'static str,
    /// Its executable.
    pub bin: &'static str,
}

/// A running peer (its processes are killed when dropped).
pub struct Peer {
    /// Its name in the table.
    pub name: String,
    /// Where visitors reach it.
    pub endpoint: Endpoint,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Peer {
    /// The ids of its processes (and their children).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .children
            .iter()
            .flat_map(|c| super::procs::tree(c.id()))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers; anything left is killed.
        let pids = self.pids();
        for child in &self.children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for child in &mut self.children {
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in pids {
            if crate::process::resident(pid).is_some() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The executable of `package` in `cache`, installed first (`cargo install --root cache`) when
/// missing and `install` allows it. Errors say why it cannot be had.
pub fn installed(package: Package, cache: &Path, install: bool) -> Result<PathBuf, String> {
    let path = cache.join("bin").join(package.bin);
    if path.exists() {
        return Ok(path);
    }
    if !install {
        return Err(format!(
            "{} is not in {} and --no-install was given",
            package.bin,
            cache.display()
        ));
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let log = cache.join(format!("{}-install.log", package.krate));
    eprintln!(
        "bench: installing {} {} into {} (once; log in {})",
        package.krate,
        package.version,
        cache.display(),
        log.display()
    );
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--root"])
        .arg(cache)
        .args([package.krate, "--version", package.version])
        // Build outside the workspace's target dir, so the workspace's lock is not held.
        .env("CARGO_TARGET_DIR", cache.join("build"))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    // The build directory is large and of no further use.
    let _ = std::fs::remove_dir_all(cache.join("build"));
    if !status.success() || !path.exists() {
        return Err(format!(
            "cargo install {} {} failed (see {})",
            package.krate,
            package.version,
            log.display()
        ));
    }
    Ok(path)
}

/// A free loopback port (bound and released; good enough on a quiet loopback).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn spawn(program: &Path, args: &[&str], dir: &Path, log: &str) -> Result<Child, String> {
    let log_path = dir.join(log);
    let log_file = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let log_out = log_file
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

async fn ready(
    name: &str,
    endpoint: Endpoint,
    children: Vec<Child>,
    dir: tempfile::TempDir,
) -> Result<Peer, String> {
    let mut peer = Peer {
        name: name.to_string(),
        endpoint,
        children,
        dir,
    };
    if load::wait_ready(&peer.endpoint, READY_TIMEOUT).await {
        return Ok(peer);
    }
    let mut logs = String::new();
    for entry in std::fs::read_dir(peer.dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    for child in &mut peer.children {
        let _ = child.kill();
    }
    let tail: String = logs.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    Err(format!(
        "did not carry a request within {READY_TIMEOUT:?} ({tail})"
    ))
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("no temp dir: {e}"))
}

/// rathole in front of `origin`: server and client on loopback, over TCP or over TLS (a
/// PKCS#12 identity for the server, made with the `openssl` command, and its CA for the client).
pub async fn rathole(bin: &Path, origin: SocketAddr, tls: bool) -> Result<Peer, String> {
    let dir = temp_dir("postern-bench-rathole-")?;
    let control = free_port()?;
    let visitor = free_port()?;
    let (server_transport, client_transport) = if tls {
        make_tls_identity(dir.path())?;
        (
            "[server.transport]\ntype = \"tls\"\n[server.transport.tls]\npkcs12 = \"identity.pfx\"\npkcs12_password = \"postern-bench\"\n".to_string(),
            "[client.transport]\ntype = \"tls\"\n[client.transport.tls]\ntrusted_root = \"ca.pem\"\nhostname = \"localhost\"\n".to_string(),
        )
    } else {
        (
            "[server.transport]\ntype = \"tcp\"\n".to_string(),
            "[client.transport]\ntype = \"tcp\"\n".to_string(),
        )
    };
    let server = format!(
        "[server]\nbind_addr = \"127.0.0.1:{control}\"\ndefault_token = \"postern-bench\"\n{server_transport}[server.services.bench]\nbind_addr = \"127.0.0.1:{visitor}\"\n"
    );
    let client = format!(
        "[client]\nremote_addr = \"127.0.0.1:{control}\"\ndefault_token = \"postern-bench\"\n{client_transport}[client.services.bench]\nlocal_addr = \"{origin}\"\n"
    );
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("server.toml", &server)?;
    write("client.toml", &client)?;
    let server = spawn(bin, &["--server", "server.toml"], dir.path(), "server.log")?;
    let client = spawn(bin, &["--client", "client.toml"], dir.path(), "client.log")?;
    let endpoint = Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], visitor)),
        host: "bench.example.com".into(),
        tls: None,
    };
    let name = if tls { "rathole-tls" } else { "rathole-tcp" };
    ready(name, endpoint, vec![server, client], dir).await
}

/// A CA and a `localhost` server certificate: `ca.pem`, and `identity.pfx` (password
/// `postern-bench`) for rathole's native-tls server.
fn make_tls_identity(dir: &Path) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(|e| fail("CA key", &e))?;
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", &e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf whose subject equals its issuer for self-signed.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postern bench CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| fail("CA", &e))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().map_err(|e| fail("key", &e))?;
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(|e| fail("certificate", &e))?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf_params
        .signed_by(&key, &issuer)
        .map_err(|e| fail("certificate", &e))?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("ca.pem", ca.pem())?;
    write("cert.pem", leaf.pem())?;
    write("key.pem", key.serialize_pem())?;
    let status = Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-out",
            "identity.pfx",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-passout",
            "pass:postern-bench",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("the openssl command is needed for rathole's TLS identity: {e}"))?;
    if !status.success() {
        return Err("openssl pkcs12 -export failed".into());
    }
    Ok(())
}

/// bore in front of `origin`: `bore server` bound to 127.0.0.1 (its control port is the
/// fixed 7835) with one tunnel port, and `bore local` forwarding it to the origin.
pub async fn bore(bin: &Path, origin: SocketAddr) -> Result<Peer, String> {
    let dir = temp_dir("postern-bench-bore-")?;
    if TcpListener::bind("127.0.0.1:7835").is_err() {
        return Err("bore's fixed control port 7835 is in use".into());
    }
    let port = free_port()?.to_string();
    let server = spawn(
        bin,
        &[
            "server",
            "--bind-addr",
            "127.0.0.1",
            "--min-port",
            &port,
            "--max-port",
            &port,
        ],
        dir.path(),
        "server.log",
    )?;
    // The client retries nothing: give the server a moment to bind its control port.
    for _ in 0..100 {
        if std::net::TcpStream::connect("127.0.0.1:7835").is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let origin_port = origin.port().to_string();
    let client = spawn(
        bin,
        &[
            "local",
            &origin_port,
            "--local-host",
            "127.0.0.1",
            "--to",
            "127.0.0.1",
            "--port",
            &port,
        ],
        dir.path(),
        "client.log",
    )?;
    let endpoint = Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap_or(0))),
        host: "bench.example.com".into(),
        tls: None,
    };
    ready("bore", endpoint, vec![server, client], dir).await
}

/// nginx (when on PATH or in /usr/sbin) as a plain reverse proxy in front of `origin`:
/// keep-alive upstream connections, bodies streamed both ways (no buffering), no access log.
pub async fn nginx(origin: SocketAddr) -> Result<Peer, String> {
    let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("nginx is not installed (apt-get install -y nginx)")?;
    let dir = temp_dir("postern-bench-nginx-")?;
    let port = free_port()?;
    let prefix = dir.path().display().to_string();
    let config = format!(
        r#"daemon off;
master_process on;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 0;
    keepalive_requests 1000000;
    upstream origin {{ server {origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), config)
        .map_err(|e| format!("cannot write nginx.conf: {e}"))?;
    let conf = dir.path().join("nginx.conf").display().to_string();
    let child = spawn(
        &bin,
        &["-p", &prefix, "-c", &conf],
        dir.path(),
        "stderr.log",
    )?;
    let endpoint = Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        host: "bench.example.com".into(),
        tls: None,
    };
    ready("nginx", endpoint, vec![child], dir).await
}
