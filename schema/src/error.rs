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

/// Appends an escaped reference token to a JSON pointer.
pub(crate) fn push_pointer(pointer: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{pointer}/{escaped}")
}
