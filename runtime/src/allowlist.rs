//! `--allow-origin`: the origins this connector will proxy to, whatever the edge says. An edge
//! (or whoever controls its API) can point a hostname at any service; on a host that can reach
//! more than the applications it should expose, the connector's own list is the last word.
//! An empty list allows every origin, as before the flag.

use std::fmt;

/// The origins a connector may proxy to.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    entries: Vec<Entry>,
}

/// One `--allow-origin` value.
#[derive(Clone, PartialEq, Eq)]
enum Entry {
    /// `host` (any port, any scheme).
    Host(String),
    /// `host:port` (any scheme).
    HostPort(String, u16),
    /// `scheme://host[:port]` (the scheme's default port when none is given).
    Url {
        scheme: String,
        host: String,
        port: u16,
    },
}

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("any origin");
        }
        let list: Vec<String> = self.entries.iter().map(Entry::to_string).collect();
        f.write_str(&list.join(", "))
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Host(host) => write!(f, "{}", bracket(host)),
            Entry::HostPort(host, port) => write!(f, "{}:{port}", bracket(host)),
            Entry::Url { scheme, host, port } => write!(f, "{scheme}://{}:{port}", bracket(host)),
        }
    }
}

impl AllowedOrigins {
    /// Every origin (no `--allow-origin`).
    pub fn any() -> Self {
        Self::default()
    }

    /// Reads the `--allow-origin` values; the error names the value and what is wrong.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for value in values {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            entries.push(
                parse_entry(value).map_err(|why| format!("--allow-origin {value:?}: {why}"))?,
            );
        }
        Ok(Self { entries })
    }

    /// `Ok` when the connector may proxy to `service` (an origin URL, or `http_status:NNN`,
    /// which reaches no origin); otherwise why not.
    pub(crate) fn check(&self, service: &str) -> Result<(), String> {
        if self.entries.is_empty() || service.starts_with("http_status:") {
            return Ok(());
        }
        let Some((scheme, host, port)) = origin_of(service) else {
            return Err(format!(
                "service {service:?} names no origin this connector can check"
            ));
        };
        let allowed = self.entries.iter().any(|entry| match entry {
            Entry::Host(allowed) => *allowed == host,
            Entry::HostPort(allowed, allowed_port) => *allowed == host && *allowed_port == port,
            Entry::Url {
                scheme: allowed_scheme,
                host: allowed,
                port: allowed_port,
            } => *allowed_scheme == scheme && *allowed == host && *allowed_port == port,
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "service {service:?} is not in this connector's --allow-origin list ({self:?})"
            ))
        }
    }
}

fn parse_entry(value: &str) -> Result<Entry, String> {
    if value.contains("://") {
        let (scheme, host, port) =
            origin_of(value).ok_or("expected scheme://host[:port], e.g. http://127.0.0.1:8080")?;
        let rest = value.split_once("://").map_or("", |(_, rest)| rest);
        if rest.trim_end_matches('/').contains('/') {
            return Err("an origin has no path".into());
        }
        return Ok(Entry::Url { scheme, host, port });
    }
    if value.contains('/') {
        return Err("expected host, host:port or scheme://host[:port]".into());
    }
    match split_host_port(value)? {
        (host, Some(port)) => Ok(Entry::HostPort(host, port)),
        (host, None) => Ok(Entry::Host(host)),
    }
}

/// The scheme, host (lower case, without brackets) and port of `scheme://authority[/…]`; the
/// port defaults to the scheme's (none for schemes without one).
fn origin_of(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority).ok()?;
    let port = match port {
        Some(port) => port,
        None => match scheme.as_str() {
            "http" | "h2c" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        },
    };
    Some((scheme, host, port))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the host in lower case without brackets.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("expected :port after ]")?),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err("an IPv6 address goes in brackets: [::1]:8080".into()),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => Some(port),
            _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .expect("valid")
    }

    #[test]
    fn no_list_allows_everything() {
        assert_eq!(AllowedOrigins::any().check("http://10.0.0.1:22"), Ok(()));
    }

    #[test]
    fn each_form_allows_what_it_names_and_nothing_else() {
        let allowed = list(&[
            "127.0.0.1:8080",
            "app.internal",
            "https://api.internal",
            "[::1]:9000",
        ]);
        assert_eq!(allowed.check("http://127.0.0.1:8080/base"), Ok(()));
        assert_eq!(allowed.check("https://127.0.0.1:8080"), Ok(()));
        assert!(allowed.check("http://127.0.0.1:8081").is_err());
        assert!(allowed.check("http://127.0.0.2:8080").is_err());
        assert_eq!(allowed.check("http://APP.internal:3000"), Ok(()));
        assert_eq!(allowed.check("https://api.internal"), Ok(()));
        assert_eq!(allowed.check("https://api.internal:443/v1"), Ok(()));
        assert!(
            allowed.check("http://api.internal").is_err(),
            "another scheme"
        );
        assert!(allowed.check("https://api.internal:8443").is_err());
        assert_eq!(allowed.check("http://[::1]:9000"), Ok(()));
        assert_eq!(allowed.check("http_status:404"), Ok(()), "no origin");
        let refusal = allowed
            .check("http://169.254.169.254/latest")
            .expect_err("metadata");
        assert!(refusal.contains("--allow-origin"), "{refusal}");
        assert!(refusal.contains("169.254.169.254"), "{refusal}");
    }

    #[test]
    fn bad_values_are_errors_that_name_them() {
        for bad in [
            "127.0.0.1:0",
            "host:port",
            "::1",
            "[::1",
            "http://",
            "http://a/b",
            "a/b",
            ":80",
        ] {
            let error = AllowedOrigins::parse(&[bad.to_string()]).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
