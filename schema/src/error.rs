//! `ContractError`: what is wrong with a body, located by JSON pointer.

use std::fmt;

/// One broken rule, located by a JSON pointer into the checked document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending field, e.g. `/labels/release`; empty for the root.
    pub pointer: String,
    /// What is wrong, in one lowercase sentence without the value when it may be secret.
    pub message: String,
}

impl Violation {
    /// A violation at `pointer`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A document that does not satisfy the contract. Holds at least one violation; the first one is
/// the one an API answer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    violations: Vec<Violation>,
}

impl ContractError {
    /// Builds the error from violations; returns `None` when there are none.
    pub fn from_violations(violations: Vec<Violation>) -> Option<Self> {
        if violations.is_empty() {
            None
        } else {
            Some(Self { violations })
        }
    }

    /// A single violation.
    pub fn single(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            violations: vec![Violation::new(pointer, message)],
        }
    }

    /// The first violation: the one to report when only one can be.
    pub fn first(&self) -> &Violation {
        // The constructors never build an empty list.
        &self.violations[0]
    }

    /// Every violation, in document order as far as it is known.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.first();
        if first.pointer.is_empty() {
            write!(f, "{}", first.message)
        } else {
            write!(f, "{}: {}", first.pointer, first.message)
        }
    }
}

impl std::error::Error for ContractError {}

/// An error and its causes on one line, `: `-separated, for logs and diagnostics. A cause whose
/// text the line already holds (some errors print their source themselves) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Appends an escaped reference token to a JSON pointer.
pub(crate) fn push_pointer(pointer: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{pointer}/{escaped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: inner")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_names_each_cause_once() {
        let error = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(error_chain(&error), "outer: middle: inner");
    }
}
