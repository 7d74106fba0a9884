//! Which certificate names cover which hostname: an exact name covers itself; a wildcard
//! `*.apps.example.com` covers one more label, `a.apps.example.com` (not `apps.example.com`,
//! not `b.a.apps.example.com`), as RFC 6125 and the CA/Browser Forum rules have it.

/// Whether certificate name `pattern` covers `hostname` (both lowercase), and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cover {
    /// The name is the hostname.
    Exact,
    /// A wildcard covers it.
    Wildcard,
}

/// How `pattern` covers `hostname`, if it does.
pub(crate) fn cover(pattern: &str, hostname: &str) -> Option<Cover> {
    if pattern == hostname {
        return Some(Cover::Exact);
    }
    let suffix = pattern.strip_prefix("*.")?;
    let (label, parent) = hostname.split_once('.')?;
    (!label.is_empty() && parent == suffix).then_some(Cover::Wildcard)
}

/// The best way any of `names` covers `hostname`.
pub(crate) fn best_cover(names: &[String], hostname: &str) -> Option<Cover> {
    names.iter().filter_map(|name| cover(name, hostname)).min()
}

/// The wildcard name that would cover `hostname`: `*.` and its parent.
pub(crate) fn wildcard_of(hostname: &str) -> Option<String> {
    let (_, parent) = hostname.split_once('.')?;
    parent.contains('.').then(|| format!("*.{parent}"))
}

/// The domain an ACME identifier validates: the name without its `*.`.
pub(crate) fn base_domain(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_wildcards_of_one_label() {
        let cases = [
            ("app.example.com", "app.example.com", Some(Cover::Exact)),
            (
                "*.apps.example.com",
                "a.apps.example.com",
                Some(Cover::Wildcard),
            ),
            ("*.apps.example.com", "apps.example.com", None),
            ("*.apps.example.com", "b.a.apps.example.com", None),
            ("*.example.com", "example.com", None),
            ("app.example.com", "other.example.com", None),
        ];
        for (pattern, hostname, expected) in cases {
            assert_eq!(cover(pattern, hostname), expected, "{pattern} / {hostname}");
        }
        let names = [
            "*.apps.example.com".to_string(),
            "a.apps.example.com".to_string(),
        ];
        assert_eq!(best_cover(&names, "a.apps.example.com"), Some(Cover::Exact));
        assert_eq!(
            wildcard_of("a.apps.example.com").as_deref(),
            Some("*.apps.example.com")
        );
        assert_eq!(wildcard_of("example.com"), None);
        assert_eq!(base_domain("*.apps.example.com"), "apps.example.com");
    }
}
