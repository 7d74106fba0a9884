//! The one path a path-restricted hostname checks and forwards. Origins read a raw path in
//! different ways (RFC 3986 resolution, nginx's `merge_slashes`, Tomcat's `;` parameters,
//! Windows' `\`, decoding `%2f` before routing), so `allow_paths` could approve one path while
//! the origin serves another. [`canonical_path`] turns the raw path into the one form every
//! reading agrees on, which the policy checks and the proxy forwards in place of the raw path,
//! and refuses the forms no rewriting makes unambiguous.

use std::borrow::Cow;

/// Why a path cannot be given one meaning: origins differ on what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AmbiguousPath {
    /// `%2f` or `%5c` (an encoded `/` or `\`): one origin sees a character of a segment,
    /// another a separator.
    EncodedSeparator,
    /// A literal `\`, a separator to some origins.
    Backslash,
    /// A dot segment with parameters (`..;`, `.;x`): a directory change to Tomcat and the like,
    /// a plain name to others.
    DotSegmentParameters,
}

impl AmbiguousPath {
    /// What is wrong, for the visitor's error page.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AmbiguousPath::EncodedSeparator => "the path encodes '/' or '\\' (%2f, %5c)",
            AmbiguousPath::Backslash => "the path contains '\\'",
            AmbiguousPath::DotSegmentParameters => {
                "the path has a '.' or '..' segment with parameters (';')"
            }
        }
    }
}

/// The path as every origin reads it: repeated `/` merged, percent-encoded unreserved
/// characters decoded, then `.` and `..` segments removed (RFC 3986, 6.2.2.2 and 5.2.4). A
/// query string the caller left on is dropped. Borrows when there is nothing to change.
pub(crate) fn canonical_path(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path.contains('\\') {
        return Err(AmbiguousPath::Backslash);
    }
    let decoded = if path.contains('%') {
        if encodes_separator(path) {
            return Err(AmbiguousPath::EncodedSeparator);
        }
        Cow::Owned(decode_unreserved(path))
    } else {
        Cow::Borrowed(path)
    };
    if decoded.split('/').any(is_dot_segment_with_parameters) {
        return Err(AmbiguousPath::DotSegmentParameters);
    }
    let merged = if decoded.contains("//") {
        Cow::Owned(merge_slashes(&decoded))
    } else {
        decoded
    };
    let has_dot_segment = merged
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !has_dot_segment {
        return Ok(merged);
    }
    Ok(Cow::Owned(remove_dot_segments(&merged)))
}

/// Does `path` hold `%2f` or `%5c` (any case)?
fn encodes_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%' && (w[1] == b'2' || w[1] == b'5') && {
            let low = w[2].to_ascii_lowercase();
            (w[1] == b'2' && low == b'f') || (w[1] == b'5' && low == b'c')
        }
    })
}

/// `..;x`, `.;`, `..%3bx`: a dot segment once its parameters are cut off.
fn is_dot_segment_with_parameters(segment: &str) -> bool {
    if !segment.starts_with('.') {
        return false;
    }
    let cut = segment
        .find(';')
        .into_iter()
        .chain(segment.to_ascii_lowercase().find("%3b"))
        .min();
    matches!(cut.map(|at| &segment[..at]), Some(".") | Some(".."))
}

fn merge_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        merged.push(c);
    }
    merged
}

fn decode_unreserved(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let byte = after
            .get(..2)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                rest = &after[2..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
        if i == last && (*segment == "." || *segment == "..") {
            // `/a/b/..` resolves to the directory `/a/`.
            out.push("");
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in out {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_borrow_when_there_is_nothing_to_do() {
        assert!(matches!(
            canonical_path("/a/b/c"),
            Ok(Cow::Borrowed("/a/b/c"))
        ));
        assert!(matches!(
            canonical_path("/a/b?x=/../y"),
            Ok(Cow::Borrowed("/a/b"))
        ));
    }

    #[test]
    fn every_reading_of_a_path_agrees_on_its_canonical_form() {
        let table = [
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../x", "/x"),
            ("/..", "/"),
            ("/%7euser/x", "/~user/x"),
            ("/%2e%2e/admin", "/admin"),
            ("/public//../admin", "/admin"),
            ("//public///x", "/public/x"),
            ("/public/.%2e/admin", "/admin"),
            ("/a;b/c", "/a;b/c"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/...;/b", "/a/...;/b"),
            ("/caf%C3%A9", "/caf%C3%A9"),
        ];
        for (raw, canonical) in table {
            assert_eq!(canonical_path(raw).as_deref(), Ok(canonical), "{raw}");
        }
    }

    #[test]
    fn forms_origins_read_differently_are_ambiguous() {
        let table = [
            ("/public/..;/admin", AmbiguousPath::DotSegmentParameters),
            (
                "/public/..;jsessionid=1/admin",
                AmbiguousPath::DotSegmentParameters,
            ),
            ("/public/.;/x", AmbiguousPath::DotSegmentParameters),
            ("/public/%2e%2e;/admin", AmbiguousPath::DotSegmentParameters),
            ("/public/..%3b/admin", AmbiguousPath::DotSegmentParameters),
            ("/public/..%2fadmin", AmbiguousPath::EncodedSeparator),
            ("/public%2F..%2Fadmin", AmbiguousPath::EncodedSeparator),
            ("/public/..%5cadmin", AmbiguousPath::EncodedSeparator),
            ("/public/..%5Cadmin", AmbiguousPath::EncodedSeparator),
            ("/public/..\\admin", AmbiguousPath::Backslash),
        ];
        for (raw, why) in table {
            assert_eq!(canonical_path(raw), Err(why), "{raw}");
        }
    }
}
