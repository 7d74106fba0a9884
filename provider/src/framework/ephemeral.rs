//! Ephemeral resources: the [`EphemeralResource`] trait (`ephemeral "x" "y" { ... }`),
//! values produced for one Terraform run and never stored in plan or state (e.g. a
//! short-lived enrolment token). Terraform opens them, may renew them, and closes them.

use std::time::SystemTime;

use async_trait::async_trait;
use serde::Serialize;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::schema::Schema;
use super::types::Type;
use super::value::Value;

/// An ephemeral resource type. `D` is the provider data (see
/// [`Resource`](super::Resource)).
#[async_trait]
pub trait EphemeralResource<D>: Send + Sync + 'static {
    /// The type name, e.g. `postern_enrollment_token`.
    fn type_name(&self) -> &'static str;

    /// The schema. Called once, when the registry is built.
    fn schema(&self) -> Schema;

    /// Checks a configuration offline; values may be unknown anywhere.
    fn validate(&self, _config: &Value, _diagnostics: &mut Diagnostics) {}

    /// Produces the value. Set `resp.result` (the configuration with computed
    /// attributes filled in), and `resp.private` if close or renew need to know what
    /// was opened; set `resp.renew_at` to be called back in [`EphemeralResource::renew`].
    async fn open(&self, data: &D, req: OpenRequest, resp: &mut OpenResponse);

    /// Extends the value's life. The default does nothing.
    async fn renew(&self, _data: &D, _req: RenewRequest, _resp: &mut RenewResponse) {}

    /// Releases what [`EphemeralResource::open`] made. The default does nothing.
    async fn close(&self, _data: &D, _req: CloseRequest, _diagnostics: &mut Diagnostics) {}
}

/// Input of [`EphemeralResource::open`].
#[derive(Clone, Debug)]
pub struct OpenRequest {
    /// The configuration.
    pub config: Value,
}

/// Output of [`EphemeralResource::open`].
#[derive(Clone, Debug)]
pub struct OpenResponse {
    /// The value; must be set (and wholly known) unless there are errors.
    pub result: Option<Value>,
    /// Private data handed to renew and close.
    pub private: Option<Vec<u8>>,
    /// When Terraform should call renew, if ever.
    pub renew_at: Option<SystemTime>,
    /// Problems.
    pub diagnostics: Diagnostics,
    ty: Type,
}

impl OpenResponse {
    /// An empty response for values of type `ty`.
    pub(crate) fn new(ty: Type) -> Self {
        Self {
            result: None,
            private: None,
            renew_at: None,
            diagnostics: Diagnostics::new(),
            ty,
        }
    }

    /// Sets the result from a serde model (see
    /// [`StateResponse::set_state`](super::StateResponse::set_state)).
    pub(crate) fn set_result<T: Serialize + ?Sized>(&mut self, model: &T) {
        if let Some(value) = self.diagnostics.check(Value::encode(model, &self.ty)) {
            self.result = Some(value);
        }
    }

    /// Sets the result to a value.
    pub fn set_value(&mut self, value: Value) {
        match value.check_type(&self.ty) {
            Ok(()) => self.result = Some(value),
            Err(e) => self.diagnostics.push(Diagnostic::from(e)),
        }
    }
}

/// Input of [`EphemeralResource::renew`].
#[derive(Clone, Debug)]
pub struct RenewRequest {
    /// What open (or the last renew) left.
    pub private: Option<Vec<u8>>,
}

/// Output of [`EphemeralResource::renew`].
#[derive(Clone, Debug, Default)]
pub struct RenewResponse {
    /// New private data (starts as the incoming one).
    pub private: Option<Vec<u8>>,
    /// When to renew again, if ever.
    pub renew_at: Option<SystemTime>,
    /// Problems.
    pub diagnostics: Diagnostics,
}

/// Input of [`EphemeralResource::close`].
#[derive(Clone, Debug)]
pub struct CloseRequest {
    /// What open (or the last renew) left.
    pub private: Option<Vec<u8>>,
}
