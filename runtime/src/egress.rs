//! How the connector reaches the edge: a TCP connection straight to the edge's address, or a
//! tunnel through an HTTP proxy (`CONNECT host:port`), as a network that lets nothing out but
//! its proxy requires. The proxy comes from `--proxy`, else from `HTTPS_PROXY` (or
//! `ALL_PROXY`, either in lower case too) as other tools read them; `NO_PROXY` names the
//! edge addresses reached directly. Every way out (enrolment, tunnel connections, probes)
//! goes through [`Egress::connect`].

use std::fmt;
use std::io;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer to `CONNECT` may take, head included.
const MAX_ANSWER: usize = 8 * 1024;

/// How long a proxy may take to answer `CONNECT`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The way out to the edge.
#[derive(Clone, Default)]
pub struct Egress {
    proxy: Option<Proxy>,
}

/// An HTTP proxy to tunnel through.
#[derive(Clone)]
struct Proxy {
    /// `host:port` of the proxy.
    address: String,
    /// `Basic …`, from the URL's user information.
    authorization: Option<String>,
    /// Hosts reached directly (`NO_PROXY`): a name, a `.suffix`, or `*`.
    bypass: Vec<String>,
}

/// Why a proxy setting cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct EgressError {
    source_name: &'static str,
    reason: String,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.proxy {
            None => f.write_str("direct"),
            Some(proxy) => write!(f, "through the HTTP proxy {}", proxy.address),
        }
    }
}

impl Egress {
    /// Straight to the edge.
    pub fn direct() -> Self {
        Self::default()
    }

    /// Through the proxy `flag` names (`--proxy`), else the one the environment names
    /// (`HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, `all_proxy`), else direct. `NO_PROXY`
    /// (`no_proxy`) lists hosts reached directly.
    pub fn from_settings(flag: Option<&str>) -> Result<Self, EgressError> {
        let from_env = |names: &[&'static str]| {
            names.iter().find_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|value| !value.trim().is_empty())
                    .map(|value| (*name, value))
            })
        };
        let chosen = match flag {
            Some(value) if !value.trim().is_empty() => Some(("--proxy", value.to_string())),
            _ => from_env(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
        };
        let Some((source_name, url)) = chosen else {
            return Ok(Self::direct());
        };
        let bypass = from_env(&["NO_PROXY", "no_proxy"])
            .map(|(_, list)| parse_bypass(&list))
            .unwrap_or_default();
        let proxy = parse_proxy(&url, bypass).map_err(|reason| EgressError {
            source_name,
            reason,
        })?;
        Ok(Self { proxy: Some(proxy) })
    }

    /// Whether a proxy is used at all.
    pub fn uses_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// A TCP connection to `address` (`host:port`), through the proxy unless it is bypassed.
    pub(crate) async fn connect(&self, address: &str) -> io::Result<TcpStream> {
        match &self.proxy {
            Some(proxy) if !proxy.bypasses(address) => proxy.connect(address).await,
            _ => TcpStream::connect(address).await,
        }
    }
}

impl Proxy {
    fn bypasses(&self, address: &str) -> bool {
        let host = host_of(address).to_ascii_lowercase();
        self.bypass.iter().any(|entry| {
            entry == "*"
                || *entry == host
                || entry
                    .strip_prefix('.')
                    .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")) || host == suffix)
        })
    }

    /// `CONNECT address` on a new connection to the proxy; the connection once it answered
    /// 2xx.
    async fn connect(&self, address: &str) -> io::Result<TcpStream> {
        let mut stream = TcpStream::connect(&self.address).await?;
        let mut request = format!("CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let head = tokio::time::timeout(ANSWER_TIMEOUT, read_head(&mut stream))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the proxy {} did not answer CONNECT in time", self.address),
                )
            })??;
        let status = parse_status(&head).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the proxy {} answered CONNECT with no HTTP status",
                    self.address
                ),
            )
        })?;
        if !(200..300).contains(&status) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "the proxy {} refused CONNECT {address} with status {status}",
                    self.address
                ),
            ));
        }
        Ok(stream)
    }
}

/// Reads the proxy's answer head, byte by byte so that nothing after it (the edge's bytes)
/// is taken from the stream; at most [`MAX_ANSWER`] bytes.
async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's answer to CONNECT is too long",
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection before answering CONNECT",
            ));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// The status code of `HTTP/1.x NNN …`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// `http://[user:password@]host[:port][/]`; the port defaults to 80 (3128 is no standard).
fn parse_proxy(url: &str, bypass: Vec<String>) -> Result<Proxy, String> {
    let url = url.trim();
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.contains("://") {
        return Err(format!(
            "{url:?}: only http:// proxies are supported (the tunnel inside is TLS already)"
        ));
    } else {
        url
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(format!("{url:?}: a proxy URL has no path"));
    }
    let (userinfo, authority) = match rest.rsplit_once('@') {
        Some((userinfo, authority)) => (Some(userinfo), authority),
        None => (None, rest),
    };
    if authority.is_empty() {
        return Err(format!("{url:?}: no proxy host"));
    }
    let address = if has_port(authority) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let port_ok = address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .is_some_and(|port| port != 0);
    if !port_ok {
        return Err(format!(
            "{url:?}: the port must be a number from 1 to 65535"
        ));
    }
    let authorization = userinfo.map(|userinfo| {
        let decoded = percent_decode(userinfo);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(decoded)
        )
    });
    Ok(Proxy {
        address,
        authorization,
        bypass,
    })
}

/// Whether `authority` ends in `:port` (an IPv6 literal is bracketed).
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    }
}

/// The host of `host:port` (without brackets).
fn host_of(address: &str) -> &str {
    let host = match address.rfind(']') {
        Some(end) => &address[..=end],
        None => address.rsplit_once(':').map_or(address, |(host, _)| host),
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `NO_PROXY`: names separated by commas or spaces; a leading `*.` means the same as `.`.
fn parse_bypass(list: &str) -> Vec<String> {
    list.split([',', ' '])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = entry.to_ascii_lowercase();
            let entry = entry
                .strip_prefix("*.")
                .map_or(entry.clone(), |rest| format!(".{rest}"));
            // A port in an entry is ignored: the edge's hosts are what it names.
            if let Some(bracketed) = entry.strip_prefix('[') {
                bracketed.split(']').next().unwrap_or_default().to_string()
            } else if entry.matches(':').count() > 1 {
                entry
            } else {
                entry.split(':').next().unwrap_or_default().to_string()
            }
        })
        .collect()
}

/// `%XX` sequences decoded (user information in a URL).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(value) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn proxy_urls_are_read_as_other_tools_read_them() {
        let proxy = parse_proxy("http://user:p%40ss@127.0.0.1:3128/", vec![]).expect("valid");
        assert_eq!(proxy.address, "127.0.0.1:3128");
        assert_eq!(
            proxy.authorization.as_deref(),
            Some("Basic dXNlcjpwQHNz"),
            "user:p@ss"
        );
        assert_eq!(
            parse_proxy("proxy.corp", vec![]).expect("valid").address,
            "proxy.corp:80"
        );
        assert_eq!(
            parse_proxy("http://[::1]:8080", vec![])
                .expect("valid")
                .address,
            "[::1]:8080"
        );
        for bad in [
            "https://proxy:443",
            "socks5://proxy:1080",
            "http://proxy:0",
            "http://proxy:x",
            "http://proxy/path",
            "http://",
        ] {
            assert!(parse_proxy(bad, vec![]).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_names_hosts_suffixes_and_everything() {
        let proxy = parse_proxy(
            "http://127.0.0.1:1",
            parse_bypass("localhost, .internal.example, *.corp.example,[::1]:7844,10.0.0.1:80"),
        )
        .expect("valid");
        assert!(proxy.bypasses("localhost:7844"));
        assert!(proxy.bypasses("edge.internal.example:7844"));
        assert!(proxy.bypasses("internal.example:7844"));
        assert!(proxy.bypasses("a.corp.example:7844"));
        assert!(proxy.bypasses("[::1]:7844"));
        assert!(proxy.bypasses("10.0.0.1:7844"));
        assert!(!proxy.bypasses("edge.example.com:7844"));
        assert!(!proxy.bypasses("notinternal.example:7844"));
        let all = parse_proxy("http://127.0.0.1:1", parse_bypass("*")).expect("valid");
        assert!(all.bypasses("edge.example.com:7844"));
    }

    #[test]
    fn the_status_line_is_read_strictly() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(parse_status(b"HTTP/1.0 407 Proxy Auth\r\n\r\n"), Some(407));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\r\n\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    /// A proxy that answers `answer` to the first request and then echoes.
    async fn fake_proxy(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    return request;
                }
                request.push(byte[0]);
            }
            let _ = stream.write_all(answer).await;
            let mut buf = [0u8; 64];
            if let Ok(n) = stream.read(&mut buf).await {
                let _ = stream.write_all(&buf[..n]).await;
            }
            request
        });
        (address, task)
    }

    #[tokio::test]
    async fn connect_goes_through_the_proxy_and_refusals_are_errors() {
        let (address, proxy) = fake_proxy(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let egress = Egress {
            proxy: Some(parse_proxy(&address, vec![]).expect("valid")),
        };
        let mut stream = egress
            .connect("edge.example.com:7844")
            .await
            .expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(&echoed, b"ping");
        let request = String::from_utf8(proxy.await.expect("proxy")).expect("text");
        assert!(
            request.starts_with("CONNECT edge.example.com:7844 HTTP/1.1\r\n"),
            "{request}"
        );

        let (address, _proxy) =
            fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let egress = Egress {
            proxy: Some(parse_proxy(&address, vec![]).expect("valid")),
        };
        let error = egress
            .connect("edge.example.com:7844")
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("407"), "{error}");
    }
}
