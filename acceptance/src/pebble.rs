//! `Pebble`: Let's Encrypt's test ACME server (Debian's `pebble` package) on loopback, pointed
//! at one edge: its `http-01` and `tls-alpn-01` validations go to that edge's HTTP and HTTPS
//! listeners, and it resolves every name through that edge's DNS listener (`-dnsserver`), as a
//! real CA resolves names through the public DNS. Its own HTTPS uses a certificate made here;
//! its root (new at every start) comes from its management interface, and the orders it took
//! are counted from its log.
//!
//! Pebble binds port 0; the ports it got are read from `/proc` (the sockets it listens on).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::edge::Ready;

/// How long Pebble may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How Pebble is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct PebbleOptions {
    /// The certificates' lifetime in seconds (`certificateValidityPeriod`); Pebble's default
    /// (5 years) when `None`.
    pub validity_seconds: Option<u64>,
}

/// A running Pebble; killed when dropped.
pub struct Pebble {
    child: Option<Child>,
    /// The ACME server's port.
    pub acme_port: u16,
    /// The management interface's port.
    pub management_port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    ca_pem: String,
}

impl Pebble {
    /// Starts Pebble validating against `edge` (its HTTP, HTTPS and DNS listeners).
    pub fn start(edge: &Ready, options: PebbleOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pebble-")
            .tempdir()
            .expect("temp dir");
        let (ca_pem, cert_pem, key_pem) = https_certificate();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write");
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write");
        std::fs::write(dir.path().join("key.pem"), &key_pem).expect("write");
        let mut pebble = serde_json::json!({
            "listenAddress": "127.0.0.1:0",
            "managementListenAddress": "127.0.0.1:0",
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": edge.http.port(),
            "tlsPort": edge.https.port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(seconds) = options.validity_seconds {
            pebble["certificateValidityPeriod"] = seconds.into();
        }
        let config = dir.path().join("pebble-config.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string())
            .expect("write config");
        let log = dir.path().join("pebble.log");
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(pebble_binary())
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &edge.dns.to_string()])
            .args(["-strict=false"])
            // Full speed, and no deliberately refused nonces or reused authorizations: every
            // order answers its challenges.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning pebble");
        let mut pebble = Self {
            child: Some(child),
            acme_port: 0,
            management_port: 0,
            dir,
            log,
            ca_pem,
        };
        pebble.find_ports();
        pebble
    }

    /// Reads the two ports Pebble listens on and tells them apart by its log order (the
    /// management interface is announced first) and by asking each.
    fn find_ports(&mut self) {
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ports = listening_ports(pid);
            if ports.len() >= 2 && self.log_text().contains("ACME directory available") {
                // The ACME server answers /dir; the management interface answers /roots/0 and
                // 404s /dir.
                for port in &ports {
                    if get_blocking(*port, "/dir", &self.ca_pem)
                        .is_some_and(|b| b.contains("newOrder"))
                    {
                        self.acme_port = *port;
                    } else {
                        self.management_port = *port;
                    }
                }
                if self.acme_port != 0 && self.management_port != 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not listen within {START_TIMEOUT:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://127.0.0.1:<port>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// A PEM file with the CA of Pebble's own HTTPS certificate: `--acme-ca-cert`.
    pub fn https_ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The edge flags that make it order from this Pebble, answering `challenges`.
    pub fn edge_args(&self, challenges: &str) -> Vec<String> {
        vec![
            "--acme-directory".into(),
            self.directory_url(),
            "--acme-ca-cert".into(),
            self.https_ca_file().display().to_string(),
            "--acme-email".into(),
            "ops@example.com".into(),
            "--acme-challenges".into(),
            challenges.into(),
        ]
    }

    /// The root every certificate Pebble issues chains to (new at each start), PEM.
    pub fn root_pem(&self) -> String {
        get_blocking(self.management_port, "/roots/0", &self.ca_pem)
            .unwrap_or_else(|| panic!("pebble's root; log:\n{}", self.log_text()))
    }

    /// How many orders Pebble took.
    pub fn orders(&self) -> usize {
        self.log_text().matches("Added order").count()
    }

    /// Pebble's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops Pebble (the ACME server is down from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `pebble` binary: on PATH (Debian's package puts it in /usr/bin).
fn pebble_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "pebble is not on PATH: the ACME tests run Let's Encrypt's test server; install \
             it with `apt-get install pebble` (scripts/test does this)"
        )
    })
}

/// A CA and a certificate for `127.0.0.1` and `localhost` it signed: Pebble's own HTTPS.
fn https_certificate() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble test HTTPS CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// The TCP ports process `pid` listens on (IPv4 and IPv6), read from `/proc`.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st field 3 (0A: LISTEN), inode 9.
            if fields.len() > 9
                && fields[3] == "0A"
                && inodes.iter().any(|i| i == fields[9])
                && let Some(port) = fields[1]
                    .rsplit_once(':')
                    .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `GET https://127.0.0.1:<port><path>` trusting `ca_pem`: the body on a 200.
fn get_blocking(port: u16, path: &str, ca_pem: &str) -> Option<String> {
    let url = format!("https://127.0.0.1:{port}{path}");
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).ok()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let client = reqwest::Client::builder()
                        .tls_certs_only([ca])
                        .no_proxy()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .ok()?;
                    let response = client.get(&url).send().await.ok()?;
                    if !response.status().is_success() {
                        return None;
                    }
                    response.text().await.ok()
                })
            })
            .join()
            .ok()
            .flatten()
    })
}

/// What a TLS handshake with ordinary verification showed.
#[derive(Debug, Clone)]
pub struct Served {
    /// The leaf certificate.
    pub leaf: CertificateDer<'static>,
    /// Its serial number, hex.
    pub serial: String,
    /// Its DNS names.
    pub names: Vec<String>,
}

/// A TLS handshake with `addr` for `name`, verifying the chain against `root_pem` the way any
/// client does (rustls with webpki: the chain, the name, the validity); what it served, or why
/// it was refused.
pub async fn handshake(
    addr: std::net::SocketAddr,
    name: &str,
    root_pem: &str,
) -> Result<Served, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("root PEM: {e}"))?)
            .map_err(|e| format!("root: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(server, stream))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .cloned()
        .ok_or("no certificate")?
        .into_owned();
    let _ = tls.shutdown().await;
    let (serial, names) = serial_and_names(&leaf)?;
    Ok(Served {
        serial,
        names,
        leaf,
    })
}

/// The serial number (hex) and DNS names of a certificate, with rcgen's parser.
pub fn serial_and_names(der: &CertificateDer<'_>) -> Result<(String, Vec<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    Ok((serial, names))
}

/// Writes `pem` to a file under `dir` and returns its path.
pub fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}
