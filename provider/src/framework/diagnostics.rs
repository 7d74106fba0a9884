//! Diagnostics: how every user-facing problem is reported to Terraform (severity, a
//! one-line summary, an actionable detail, and optionally the attribute it is about).

use std::fmt;

use super::types::Type;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The operation failed.
    Error,
    /// The operation went on, but the user should know.
    Warning,
}

/// One problem, shown by Terraform next to the configuration it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what went wrong.
    pub summary: String,
    /// What to do about it.
    pub detail: String,
    /// The attribute the problem is about, if any.
    pub path: Option<AttributePath>,
}

impl Diagnostic {
    /// An error.
    pub(crate) fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }

    /// A warning.
    pub(crate) fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }

    /// The same diagnostic, attached to an attribute.
    pub(crate) fn at(mut self, path: AttributePath) -> Self {
        self.path = Some(path);
        self
    }

    /// Whether this is an error.
    pub(crate) fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.summary)?;
        if let Some(path) = &self.path {
            write!(f, " (at {path})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The diagnostics collected by one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// No diagnostics.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a diagnostic.
    pub(crate) fn push(&mut self, diagnostic: impl Into<Diagnostic>) {
        self.0.push(diagnostic.into());
    }

    /// Adds an error.
    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::error(summary, detail));
    }

    /// Adds an error about one attribute.
    pub fn error_at(
        &mut self,
        path: AttributePath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Diagnostic::error(summary, detail).at(path));
    }

    /// Adds a warning.
    pub(crate) fn warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::warning(summary, detail));
    }

    /// Takes the value out of a result; an error becomes a diagnostic and `None`.
    ///
    /// ```ignore
    /// let Some(plan) = resp.diagnostics.check(req.planned.decode::<TunnelModel>()) else {
    ///     return;
    /// };
    /// ```
    pub fn check<T, E: Into<Diagnostic>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// Adds every diagnostic of `other`.
    pub(crate) fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any diagnostic is an error.
    pub(crate) fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// How many diagnostics there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The diagnostics in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Self(vec![diagnostic])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// One step of an [`AttributePath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PathStep {
    /// An attribute of an object.
    Attribute(String),
    /// A key of a map.
    Key(String),
    /// An index of a list or tuple.
    Index(i64),
}

/// Where in a value something is: `labels["release"]`, `routes[1].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttributePath {
    steps: Vec<PathStep>,
}

impl AttributePath {
    /// The empty path (the whole value).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A path starting at a top-level attribute.
    pub fn root(name: impl Into<String>) -> Self {
        Self::new().attribute(name)
    }

    /// Steps into an attribute.
    pub(crate) fn attribute(mut self, name: impl Into<String>) -> Self {
        self.steps.push(PathStep::Attribute(name.into()));
        self
    }

    /// Steps into a map element.
    pub(crate) fn key(mut self, key: impl Into<String>) -> Self {
        self.steps.push(PathStep::Key(key.into()));
        self
    }

    /// Steps into a list or tuple element.
    pub(crate) fn index(mut self, index: i64) -> Self {
        self.steps.push(PathStep::Index(index));
        self
    }

    /// Appends a step in place.
    pub(crate) fn push(&mut self, step: PathStep) {
        self.steps.push(step);
    }

    /// Removes the last step.
    pub(crate) fn pop(&mut self) -> Option<PathStep> {
        self.steps.pop()
    }

    /// The steps, outermost first.
    pub(crate) fn steps(&self) -> &[PathStep] {
        &self.steps
    }

    /// Whether this is the whole value.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Turns a JSON pointer (RFC 6901, e.g. `/labels/release` or `/routes/0/weight`,
    /// the form API validation errors use) into a path, using the value's type to tell
    /// attributes, map keys and indexes apart. Steps beyond the type are dropped, so
    /// the path always points at something Terraform knows.
    pub(crate) fn from_json_pointer(pointer: &str, ty: &Type) -> Self {
        let mut path = Self::new();
        let mut ty = ty;
        let tokens = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"));
        for token in tokens {
            match ty {
                Type::Object(attrs) => match attrs.get(&token) {
                    Some(next) => {
                        ty = next;
                        path = path.attribute(token);
                    }
                    None => break,
                },
                Type::Map(elem) => {
                    ty = elem;
                    path = path.key(token);
                }
                Type::List(elem) => match token.parse() {
                    Ok(index) => {
                        ty = elem;
                        path = path.index(index);
                    }
                    Err(_) => break,
                },
                Type::Tuple(elems) => match token.parse::<usize>() {
                    Ok(index) if index < elems.len() => {
                        ty = &elems[index];
                        path = path.index(index as i64);
                    }
                    _ => break,
                },
                // Set elements have no address Terraform could show; stop at the set.
                Type::Set(_) | Type::Dynamic | Type::String | Type::Number | Type::Bool => break,
            }
        }
        path
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Attribute(name) if i == 0 => f.write_str(name)?,
                PathStep::Attribute(name) => write!(f, ".{name}")?,
                PathStep::Key(key) => write!(f, "[{key:?}]")?,
                PathStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_follow_the_type() {
        let ty = Type::object([
            ("labels", Type::map(Type::String)),
            (
                "routes",
                Type::list(Type::object([("weight", Type::Number)])),
            ),
            ("methods", Type::set(Type::String)),
        ]);
        let cases = [
            ("/labels/release", r#"labels["release"]"#),
            ("/routes/1/weight", "routes[1].weight"),
            ("/methods/0", "methods"),
            ("/nope/x", ""),
            ("", ""),
            ("/labels/a~1b", r#"labels["a/b"]"#),
        ];
        for (pointer, want) in cases {
            assert_eq!(
                AttributePath::from_json_pointer(pointer, &ty).to_string(),
                want
            );
        }
    }

    #[test]
    fn check_turns_errors_into_diagnostics() {
        let mut diags = Diagnostics::new();
        let ok: Result<i32, Diagnostic> = Ok(3);
        assert_eq!(diags.check(ok), Some(3));
        let err: Result<i32, Diagnostic> = Err(Diagnostic::error("bad", "worse"));
        assert_eq!(diags.check(err), None);
        assert!(diags.has_errors());
        assert_eq!(diags.len(), 1);
    }
}
