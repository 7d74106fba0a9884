//! `postern-edge`'s settings: every flag also reads `POSTERN_EDGE_<FLAG>`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use postern_schema::duration;
use postern_schema::secret::Secret;

/// The edge: control API, tunnel listener, public HTTP/HTTPS proxy and authoritative DNS.
///
/// Every address accepts port 0; once all listeners are bound the edge prints one JSON line on
/// stdout with the bound addresses (keys api, http, https, tunnel, dns).
#[derive(Debug, Clone, Parser)]
#[command(name = "postern-edge", version, about, long_about = None)]
pub struct EdgeConfig {
    /// Control API (REST/JSON with bearer tokens, /healthz, /ready, /metrics). Plain HTTP
    /// unless TLS is turned on (--api-tls-cert and --api-tls-key, or --api-tls); the edge
    /// refuses plain HTTP on an address other than loopback unless --api-insecure says so.
    #[arg(
        long,
        env = "POSTERN_EDGE_API_LISTEN",
        default_value = "127.0.0.1:7070"
    )]
    pub(crate) api_listen: SocketAddr,

    /// Serve the control API over TLS with this certificate chain (PEM, the server's
    /// certificate first); needs --api-tls-key.
    #[arg(
        long,
        env = "POSTERN_EDGE_API_TLS_CERT",
        value_name = "FILE",
        requires = "api_tls_key",
        conflicts_with = "api_tls"
    )]
    pub(crate) api_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --api-tls-cert.
    #[arg(
        long,
        env = "POSTERN_EDGE_API_TLS_KEY",
        value_name = "FILE",
        requires = "api_tls_cert"
    )]
    pub(crate) api_tls_key: Option<PathBuf>,

    /// Serve the control API over TLS with a certificate the edge makes itself: edge-ca (from
    /// the edge's CA for every --api-name; clients trust <data-dir>/ca.pem) or acme (from the
    /// ACME server, for --api-name).
    #[arg(long, env = "POSTERN_EDGE_API_TLS", value_name = "SOURCE")]
    pub(crate) api_tls: Option<ApiTlsSource>,

    /// A name clients reach the control API by, a DNS name or an IP address, written into its
    /// certificate (repeatable; with --api-tls).
    #[arg(
        long = "api-name",
        env = "POSTERN_EDGE_API_NAME",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub(crate) api_names: Vec<String>,

    /// Serve the control API over plain HTTP on an address other than loopback: API tokens
    /// then cross the network in clear. Only behind a TLS terminator or on a network you trust.
    #[arg(long, env = "POSTERN_EDGE_API_INSECURE")]
    pub(crate) api_insecure: bool,

    /// Failed authentications a client address may make in a minute before the control API
    /// answers it 429 for every request that needs a token (IPv6 addresses count by /64).
    #[arg(
        long,
        env = "POSTERN_EDGE_API_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) api_auth_failures_per_minute: u32,

    /// Serve /metrics without a token on this address too (off by default), for a Prometheus
    /// server on a private network.
    #[arg(long, env = "POSTERN_EDGE_METRICS_LISTEN", value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// Tunnel listener: connectors dial in here (TLS 1.3, client certificate required).
    #[arg(
        long,
        env = "POSTERN_EDGE_TUNNEL_LISTEN",
        default_value = "127.0.0.1:7844"
    )]
    pub(crate) tunnel_listen: SocketAddr,

    /// Public HTTP listener for visitors, routed by Host.
    #[arg(
        long,
        env = "POSTERN_EDGE_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub(crate) http_listen: SocketAddr,

    /// Public HTTPS listener for visitors, routed by SNI and Host.
    #[arg(
        long,
        env = "POSTERN_EDGE_HTTPS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub(crate) https_listen: SocketAddr,

    /// Authoritative DNS for the edge's zones, UDP and TCP on the same port.
    #[arg(
        long,
        env = "POSTERN_EDGE_DNS_LISTEN",
        default_value = "127.0.0.1:5353"
    )]
    pub(crate) dns_listen: SocketAddr,

    /// DNS over TCP: connections held at once. At the cap, a new connection makes room by
    /// closing the one that has waited longest for a query (refused only when none waits).
    #[arg(
        long,
        env = "POSTERN_EDGE_DNS_TCP_MAX_CONNECTIONS",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) dns_tcp_max_connections: u32,

    /// DNS over TCP: a connection that sends no complete query for this long is closed (so is
    /// one that does not read its answer within it).
    #[arg(
        long,
        env = "POSTERN_EDGE_DNS_TCP_IDLE_TIMEOUT",
        default_value = "10s",
        value_parser = duration::parse
    )]
    pub(crate) dns_tcp_idle_timeout: Duration,

    /// DNS response-rate limiting: identical UDP answers per second (and at once) to one
    /// client prefix. Beyond it answers are dropped, some sent truncated instead (see
    /// --dns-rate-limit-slip) so a real client retries over TCP, which is not limited. Keeps
    /// spoofed queries from turning the edge into a reflector. 0 turns it off.
    #[arg(long, env = "POSTERN_EDGE_DNS_RATE_LIMIT", default_value_t = 100)]
    pub(crate) dns_rate_limit: u32,

    /// Of the UDP answers over --dns-rate-limit, every Nth is sent truncated (TC set, no
    /// records) instead of dropped; 0 drops them all, 1 truncates them all.
    #[arg(long, env = "POSTERN_EDGE_DNS_RATE_LIMIT_SLIP", default_value_t = 2)]
    pub(crate) dns_rate_limit_slip: u32,

    /// The IPv4 prefix length whose clients count as one for --dns-rate-limit.
    #[arg(
        long,
        env = "POSTERN_EDGE_DNS_RATE_LIMIT_IPV4_PREFIX",
        default_value_t = 24,
        value_parser = clap::value_parser!(u8).range(0..=32)
    )]
    pub(crate) dns_rate_limit_ipv4_prefix: u8,

    /// The IPv6 prefix length whose clients count as one for --dns-rate-limit.
    #[arg(
        long,
        env = "POSTERN_EDGE_DNS_RATE_LIMIT_IPV6_PREFIX",
        default_value_t = 56,
        value_parser = clap::value_parser!(u8).range(0..=128)
    )]
    pub(crate) dns_rate_limit_ipv6_prefix: u8,

    /// Where the embedded store and the admin token live.
    #[arg(long, env = "POSTERN_EDGE_DATA_DIR", default_value = "./postern-data")]
    pub(crate) data_dir: PathBuf,

    /// The store shared by several edge nodes: a PostgreSQL URL,
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE. Without it, the embedded store under
    /// --data-dir (one node). Nodes on one database share tunnels, hostnames, policies, the CA
    /// and API tokens; each keeps its own data dir for its admin-token file.
    /// Prefer --store-file or the variable: a command line is visible to every local user.
    #[arg(long, env = "POSTERN_EDGE_STORE", hide_env_values = true)]
    pub(crate) store: Option<StoreUrl>,

    /// A file that holds the --store URL (with its password), so that it is not on the
    /// command line.
    #[arg(
        long,
        env = "POSTERN_EDGE_STORE_FILE",
        value_name = "FILE",
        conflicts_with = "store"
    )]
    pub(crate) store_file: Option<PathBuf>,

    /// A DNS zone the edge serves hostnames in (repeatable; comma-separated in the env var).
    #[arg(
        long = "zone",
        env = "POSTERN_EDGE_ZONE",
        value_delimiter = ',',
        default_value = "example.com"
    )]
    pub(crate) zones: Vec<String>,

    /// An address DNS answers for hostnames (repeatable).
    #[arg(
        long = "public-address",
        env = "POSTERN_EDGE_PUBLIC_ADDRESS",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub(crate) public_addresses: Vec<IpAddr>,

    /// A tunnel address written into tokens, HOST:PORT (repeatable; default: the bound tunnel address).
    #[arg(
        long = "advertise-tunnel",
        env = "POSTERN_EDGE_ADVERTISE_TUNNEL",
        value_delimiter = ','
    )]
    pub(crate) advertise_tunnel: Vec<String>,

    /// Where the other edge nodes on the shared --store reach this node's tunnel listener to
    /// forward requests to it, HOST:PORT (default: the first --advertise-tunnel, else the bound
    /// tunnel address). Set it when the advertised address is shared by several nodes (a load
    /// balancer): forwarding needs this very node.
    #[arg(long, env = "POSTERN_EDGE_PEER_ADDRESS")]
    pub(crate) peer_address: Option<String>,

    /// The admin API token to accept, instead of one generated on first start. Prefer
    /// --admin-token-file or the variable: a command line is visible to every local user.
    #[arg(long, env = "POSTERN_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<Secret>,

    /// A file that holds the admin API token to accept (see --admin-token).
    #[arg(
        long,
        env = "POSTERN_EDGE_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "admin_token"
    )]
    pub(crate) admin_token_file: Option<PathBuf>,

    /// Worker threads for the data plane (public listeners, tunnel sessions, links between
    /// nodes), each a single-threaded runtime that serves a request start to finish on one
    /// thread. Default: the number of CPU cores.
    #[arg(long, env = "POSTERN_EDGE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) workers: Option<u16>,

    /// Obtain public certificates for the hostnames from this ACME (RFC 8555) directory, e.g.
    /// Let's Encrypt's staging directory first, then its production one. Off by default:
    /// hostnames are then served with the visitors' CA's certificates (and any uploaded ones).
    #[arg(long, env = "POSTERN_EDGE_ACME_DIRECTORY")]
    pub(crate) acme_directory: Option<String>,

    /// The contact address of the edge's ACME account (the CA writes about expiring
    /// certificates and problems).
    #[arg(long, env = "POSTERN_EDGE_ACME_EMAIL")]
    pub(crate) acme_email: Option<String>,

    /// A PEM file of extra roots to trust for the ACME server's own HTTPS (a private ACME
    /// server); the system's roots are trusted too.
    #[arg(long, env = "POSTERN_EDGE_ACME_CA_CERT")]
    pub(crate) acme_ca_cert: Option<PathBuf>,

    /// The ACME challenges the edge answers, in order of preference: tls-alpn-01 (on the HTTPS
    /// listener), http-01 (on the HTTP listener, under /.well-known/acme-challenge/), dns-01
    /// (from the edge's own zones; the only one that can get a wildcard).
    #[arg(
        long,
        env = "POSTERN_EDGE_ACME_CHALLENGES",
        value_delimiter = ',',
        default_value = "tls-alpn-01,http-01,dns-01"
    )]
    pub(crate) acme_challenges: Vec<String>,

    /// Visitor connections one client may hold at once on the public listeners (HTTP and
    /// HTTPS together, upgraded WebSockets included), across every worker. A client is an
    /// IPv4 address or an IPv6 /64. Beyond it, new connections are closed at once.
    #[arg(
        long,
        env = "POSTERN_EDGE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_connections_per_ip: u32,

    /// How long a visitor's HTTP/2 connection may stay open with no stream before the edge
    /// closes it (GOAWAY).
    #[arg(
        long,
        env = "POSTERN_EDGE_HTTP2_IDLE_TIMEOUT",
        default_value = "1m",
        value_parser = positive_duration
    )]
    pub(crate) http2_idle_timeout: Duration,

    /// How often the edge pings a visitor's HTTP/2 connection; one that does not answer a ping
    /// within the same time is closed.
    #[arg(
        long,
        env = "POSTERN_EDGE_HTTP2_KEEPALIVE_INTERVAL",
        default_value = "20s",
        value_parser = positive_duration
    )]
    pub(crate) http2_keepalive_interval: Duration,

    /// How long a visitor's HTTP/1.1 keep-alive connection may wait for its next request
    /// after answering one (a request head, once started, has 10 s to arrive whole).
    #[arg(
        long,
        env = "POSTERN_EDGE_HTTP1_IDLE_TIMEOUT",
        default_value = "10s",
        value_parser = positive_duration
    )]
    pub(crate) http1_idle_timeout: Duration,

    /// How long the edge waits for a connector's response head (after the request went down
    /// the tunnel) before it answers the visitor 504 itself. Above the connector's own
    /// --origin-timeout (100 s by default), so a connector's own answer normally comes first.
    #[arg(
        long,
        env = "POSTERN_EDGE_RESPONSE_HEAD_TIMEOUT",
        default_value = "2m",
        value_parser = positive_duration
    )]
    pub(crate) response_head_timeout: Duration,

    /// How long a request waits for a free stream on a tunnel connection whose streams are all
    /// in use before the edge answers 504.
    #[arg(
        long,
        env = "POSTERN_EDGE_STREAM_SLOT_TIMEOUT",
        default_value = "10s",
        value_parser = positive_duration
    )]
    pub(crate) stream_slot_timeout: Duration,

    /// Live connections one tunnel may hold on this node (connectors ask for one per edge
    /// worker); more are closed after the TLS handshake. A tunnel's certificates are good for
    /// that tunnel only, so this bounds what a stolen certificate can hold.
    #[arg(
        long,
        env = "POSTERN_EDGE_MAX_CONNECTIONS_PER_TUNNEL",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_connections_per_tunnel: u32,

    /// How long this node keeps serving its last snapshot of tunnels, hostnames and policies
    /// when it cannot read its store; after that, visitors get 503 saying why until the store
    /// answers again.
    #[arg(
        long,
        env = "POSTERN_EDGE_MAX_STALENESS",
        default_value = "5m",
        value_parser = positive_duration
    )]
    pub(crate) max_staleness: Duration,

    /// The hard deadline of shutdown (SIGTERM, SIGINT): in-flight requests, WebSockets, tunnel
    /// sessions and API connections get until then; whatever is left is closed and the process
    /// exits.
    #[arg(
        long,
        env = "POSTERN_EDGE_SHUTDOWN_TIMEOUT",
        default_value = "30s",
        value_parser = positive_duration
    )]
    pub shutdown_timeout: Duration,

    /// Log format: text or json.
    #[arg(long, env = "POSTERN_EDGE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// A `--store` URL. `Debug` shows where the store is and who connects to it, with `***` for
/// the password (in the user part, or a `password=` parameter).
#[derive(Clone)]
pub(crate) struct StoreUrl(String);

impl StoreUrl {
    /// The URL itself, for the one place that connects with it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for StoreUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0.as_str();
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), url),
        };
        // Everything up to the last `@` is the user part, so that a password holding `/`, `?`,
        // `#` or `@` is hidden whole (at worst, more than the password is hidden).
        let (user, host) = match rest.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => (format!("{user}:***@"), host),
                None => (format!("{user_info}@"), host),
            },
            None => (String::new(), rest),
        };
        let host = match host.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                            format!("{key}=***")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => host.to_string(),
        };
        write!(f, "\"{scheme}{user}{host}\"")
    }
}

/// Where the control API's TLS certificate comes from, besides files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ApiTlsSource {
    /// Issued by the edge's CA for every --api-name.
    EdgeCa,
    /// Ordered from the ACME server (--acme-directory) for every --api-name, like a
    /// hostname's; the edge CA's certificate serves until it is issued.
    Acme,
}

/// How the edge writes its logs (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl EdgeConfig {
    /// How many workers to run: `--workers`, else one per CPU core.
    pub(crate) fn worker_count(&self) -> usize {
        match self.workers {
            Some(count) => usize::from(count),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The admin token to accept, from `POSTERN_ADMIN_TOKEN` (or `--admin-token`) or the
    /// file `--admin-token-file` names, as a secret.
    pub(crate) fn admin_token(&self) -> Result<Option<Secret>, String> {
        if let Some(path) = &self.admin_token_file {
            let token = read_secret_file(path).map_err(|e| format!("--admin-token-file: {e}"))?;
            return Ok(Some(Secret::new(token)));
        }
        Ok(self.admin_token.clone())
    }

    /// The PostgreSQL URL, from `--store` or the file `--store-file` names; `None`: the
    /// embedded store.
    pub(crate) fn store_url(&self) -> Result<Option<StoreUrl>, String> {
        if let Some(path) = &self.store_file {
            let url = read_secret_file(path).map_err(|e| format!("--store-file: {e}"))?;
            return Ok(Some(StoreUrl::from(url)));
        }
        Ok(self.store.clone())
    }

    /// The flags that carried a secret on the command line, where every local user can read
    /// it (`ps`); `matches` are the command line's.
    pub fn secrets_on_command_line(matches: &clap::ArgMatches) -> Vec<&'static str> {
        [("admin_token", "--admin-token"), ("store", "--store")]
            .into_iter()
            .filter(|(id, _)| {
                matches!(
                    matches.value_source(id),
                    Some(clap::parser::ValueSource::CommandLine)
                )
            })
            .map(|(_, flag)| flag)
            .collect()
    }

    /// Checks what clap cannot: zones are lowercase domain names, the store URL is one, the
    /// control API is not served in clear beyond loopback unless `--api-insecure` says so.
    pub fn check(&self) -> Result<(), String> {
        for zone in &self.zones {
            postern_schema::rules::check_fqdn(zone).map_err(|e| format!("--zone: {e}"))?;
        }
        let flag = if self.store_file.is_some() {
            "--store-file"
        } else {
            "--store"
        };
        if let Some(url) = self.store_url()? {
            crate::store::check_url(url.expose()).map_err(|e| format!("{flag}: {e}"))?;
        }
        if self.dns_tcp_idle_timeout.is_zero() {
            return Err("--dns-tcp-idle-timeout: must be more than 0".into());
        }
        if let Some(directory) = &self.acme_directory
            && !directory.starts_with("https://")
        {
            return Err(format!(
                "--acme-directory: {directory:?} is not an https:// URL"
            ));
        }
        if self.acme_challenges.is_empty() {
            return Err("--acme-challenges: name at least one challenge".into());
        }
        for challenge in &self.acme_challenges {
            if !matches!(challenge.as_str(), "tls-alpn-01" | "http-01" | "dns-01") {
                return Err(format!(
                    "--acme-challenges: {challenge:?} is not one of tls-alpn-01, http-01, dns-01"
                ));
            }
        }
        if let Some(email) = &self.acme_email
            && (!email.contains('@') || email.contains(char::is_whitespace))
        {
            return Err(format!("--acme-email: {email:?} is not an email address"));
        }
        self.admin_token()?;
        self.check_api_tls()?;
        if self.public_addresses.is_empty() {
            return Err("--public-address: at least one address is needed".into());
        }
        let flagged = self
            .advertise_tunnel
            .iter()
            .map(|a| ("--advertise-tunnel", a))
            .chain(self.peer_address.iter().map(|a| ("--peer-address", a)));
        for (flag, address) in flagged {
            if address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(format!("{flag}: {address:?} is not HOST:PORT"));
            }
        }
        Ok(())
    }
}

/// A duration flag (`30s`, `1m30s`, `500ms`; the grammar of `postern_schema::duration`), more
/// than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = postern_schema::duration::parse(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err(format!("{text:?} is zero; give a duration above zero"));
    }
    Ok(duration)
}

impl EdgeConfig {
    /// Whether the control API is served over TLS.
    pub(crate) fn api_tls_on(&self) -> bool {
        self.api_tls_cert.is_some() || self.api_tls.is_some()
    }

    fn check_api_tls(&self) -> Result<(), String> {
        match self.api_tls {
            Some(ApiTlsSource::Acme) if self.acme_directory.is_none() => {
                return Err(
                    "--api-tls acme needs --acme-directory: the ACME server the \
                            API's certificate is ordered from"
                        .into(),
                );
            }
            Some(ApiTlsSource::Acme) if self.api_names.is_empty() => {
                return Err(
                    "--api-tls acme needs --api-name NAME: the DNS name clients use to \
                            reach the API (repeatable)"
                        .into(),
                );
            }
            Some(ApiTlsSource::Acme) => {
                if let Some(ip) = self.api_names.iter().find(|n| n.parse::<IpAddr>().is_ok()) {
                    return Err(format!(
                        "--api-name {ip}: an ACME server certifies DNS names, not IP addresses; \
                         use --api-tls edge-ca for an address"
                    ));
                }
            }
            Some(ApiTlsSource::EdgeCa) if self.api_names.is_empty() => {
                return Err(
                    "--api-tls edge-ca needs --api-name NAME: the DNS name or IP \
                            address clients use to reach the API (repeatable)"
                        .into(),
                );
            }
            None if !self.api_names.is_empty() => {
                return Err(
                    "--api-name is the name in a certificate the edge makes: use it \
                            with --api-tls edge-ca"
                        .into(),
                );
            }
            _ => {}
        }
        for name in &self.api_names {
            let valid = name.parse::<IpAddr>().is_ok()
                || postern_schema::rules::check_fqdn(name).is_ok()
                || name == "localhost";
            if !valid {
                return Err(format!(
                    "--api-name {name:?} is neither a DNS name nor an IP address"
                ));
            }
        }
        let ip = self.api_listen.ip();
        if !self.api_tls_on() && !ip.is_loopback() && !self.api_insecure {
            return Err(format!(
                "--api-listen {}: the control API would be served over plain HTTP on an \
                 address other than loopback, so API tokens would cross the network in clear. \
                 Turn on TLS (--api-tls-cert FILE --api-tls-key FILE, or --api-tls edge-ca \
                 --api-name NAME), or, behind a TLS terminator or on a network you trust, say \
                 so with --api-insecure",
                self.api_listen
            ));
        }
        Ok(())
    }
}

/// The trimmed contents of a file that holds one secret (a token, a URL), refused when empty.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// What the edge serves, as far as the API tells clients: the flags, resolved at start.
#[derive(Debug, Clone)]
pub(crate) struct EdgeSettings {
    /// DNS zones hostnames must lie in.
    pub(crate) zones: Vec<String>,
    /// This node's `--public-address` values (DNS answers every node's, see
    /// `Cluster::public_addresses`).
    pub(crate) public_addresses: Vec<String>,
    /// This node's tunnel addresses (tokens list every node's, see
    /// `Cluster::tunnel_addresses`).
    pub(crate) tunnel_addresses: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn debug_hides_the_admin_token_and_the_store_password() {
        let config = EdgeConfig::try_parse_from([
            "postern-edge",
            "--admin-token",
            "pst_topsecret",
            "--store",
            "postgres://edge:hunter2@db.internal:5432/postern?password=alsosecret",
        ])
        .expect("flags");
        let printed = format!("{config:?}");
        for secret in ["pst_topsecret", "hunter2", "alsosecret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        // The rest stays readable: where the store is, and who connects to it.
        assert!(
            printed.contains("postgres://edge:***@db.internal:5432/postern?password=***"),
            "{printed}"
        );
        assert!(printed.contains("admin_token: Some(***)"), "{printed}");
    }

    #[test]
    fn a_store_password_with_url_delimiters_is_hidden_whole() {
        let config = EdgeConfig::try_parse_from([
            "postern-edge",
            "--store",
            "postgres://edge:a/b?c#d@e@db.internal/postern",
        ])
        .expect("flags");
        let printed = format!("{:?}", config.store);
        assert_eq!(printed, "Some(\"postgres://edge:***@db.internal/postern\")");
    }

    #[test]
    fn the_limits_have_their_defaults_and_durations_use_the_shared_grammar() {
        let config = EdgeConfig::try_parse_from(["postern-edge"]).expect("defaults");
        assert_eq!(config.max_connections_per_ip, 256);
        assert_eq!(config.max_connections_per_tunnel, 32);
        assert_eq!(config.http2_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.http1_idle_timeout, Duration::from_secs(10));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.max_staleness, Duration::from_secs(300));
        let tuned = EdgeConfig::try_parse_from([
            "postern-edge",
            "--shutdown-timeout",
            "1m30s",
            "--response-head-timeout",
            "500ms",
        ])
        .expect("durations");
        assert_eq!(tuned.shutdown_timeout, Duration::from_secs(90));
        assert_eq!(tuned.response_head_timeout, Duration::from_millis(500));
        for bad in [
            ["--shutdown-timeout", "0s"],
            ["--shutdown-timeout", "30"],
            ["--max-connections-per-ip", "0"],
        ] {
            assert!(
                EdgeConfig::try_parse_from(["postern-edge", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn api_tls_acme_needs_an_acme_server_and_dns_names() {
        let check = |args: &[&str]| {
            let mut all = vec!["postern-edge"];
            all.extend_from_slice(args);
            EdgeConfig::try_parse_from(all).expect("flags").check()
        };
        let acme = ["--acme-directory", "https://acme.example.net/dir"];
        let error = check(&["--api-tls", "acme", "--api-name", "api.example.com"])
            .expect_err("no ACME server");
        assert!(error.contains("--acme-directory"), "{error}");
        let error = check(&[&acme[..], &["--api-tls", "acme"]].concat()).expect_err("no name");
        assert!(error.contains("--api-name"), "{error}");
        let error = check(&[&acme[..], &["--api-tls", "acme", "--api-name", "10.0.0.5"]].concat())
            .expect_err("an address");
        assert!(error.contains("not IP addresses"), "{error}");
        check(
            &[
                &acme[..],
                &["--api-tls", "acme", "--api-name", "api.example.com"],
            ]
            .concat(),
        )
        .expect("an ACME server and a DNS name");
    }

    #[test]
    fn every_limit_is_in_help_with_its_variable() {
        let help = EdgeConfig::command().render_long_help().to_string();
        for (flag, variable) in [
            (
                "--max-connections-per-ip",
                "POSTERN_EDGE_MAX_CONNECTIONS_PER_IP",
            ),
            ("--http2-idle-timeout", "POSTERN_EDGE_HTTP2_IDLE_TIMEOUT"),
            (
                "--http2-keepalive-interval",
                "POSTERN_EDGE_HTTP2_KEEPALIVE_INTERVAL",
            ),
            ("--http1-idle-timeout", "POSTERN_EDGE_HTTP1_IDLE_TIMEOUT"),
            (
                "--response-head-timeout",
                "POSTERN_EDGE_RESPONSE_HEAD_TIMEOUT",
            ),
            ("--stream-slot-timeout", "POSTERN_EDGE_STREAM_SLOT_TIMEOUT"),
            (
                "--max-connections-per-tunnel",
                "POSTERN_EDGE_MAX_CONNECTIONS_PER_TUNNEL",
            ),
            ("--max-staleness", "POSTERN_EDGE_MAX_STALENESS"),
            ("--shutdown-timeout", "POSTERN_EDGE_SHUTDOWN_TIMEOUT"),
        ] {
            assert!(help.contains(flag), "{flag} is not in --help");
            assert!(help.contains(variable), "{variable} is not in --help");
        }
    }
}
