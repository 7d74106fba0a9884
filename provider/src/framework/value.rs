//! Dynamic Terraform values: null, unknown (at any depth) and every cty type. Reading
//! them from JSON is [`json`](super::json)'s, and as typed models [`model`](super::model)'s.

use std::collections::BTreeMap;
use std::fmt;

use super::diagnostics::{AttributePath, Diagnostic, PathStep};
use super::number::Number;
use super::types::Type;

/// A Terraform value. It does not carry its type: it is read and written against one
/// (a schema's [`Type`]), except inside `dynamic` slots where [`Value::Dynamic`] keeps
/// the concrete type Terraform sent.
#[derive(Clone, Debug)]
pub enum Value {
    /// No value (an unset optional attribute, a deleted object).
    Null,
    /// Not known until apply (e.g. a reference to an attribute not yet created).
    Unknown,
    /// A boolean.
    Bool(bool),
    /// An exact number.
    Number(Number),
    /// A string.
    String(String),
    /// A list's elements, in order.
    List(Vec<Value>),
    /// A set's elements; order carries no meaning, duplicates are removed when decoded.
    Set(Vec<Value>),
    /// A tuple's elements, in order.
    Tuple(Vec<Value>),
    /// A map's elements by key.
    Map(BTreeMap<String, Value>),
    /// An object's attributes by name.
    Object(BTreeMap<String, Value>),
    /// A value in a `dynamic` slot, with the concrete type Terraform gave it.
    Dynamic(Box<Type>, Box<Value>),
}

/// A value that does not fit a type, or a model that does not fit a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A value's shape does not match the type it is read or written against.
    #[error("{path}: expected {expected}, found {found}")]
    TypeMismatch {
        /// Where the mismatch is.
        path: AttributePath,
        /// What the type wanted.
        expected: String,
        /// What was there.
        found: String,
    },
    /// An object has an attribute its type does not declare.
    #[error("{path}: unexpected attribute {name:?}")]
    UnexpectedAttribute {
        /// The object.
        path: AttributePath,
        /// The attribute.
        name: String,
    },
    /// A tuple has the wrong number of elements.
    #[error("{path}: a tuple of {expected} elements was required, found {found}")]
    TupleLength {
        /// The tuple.
        path: AttributePath,
        /// Elements the type declares.
        expected: usize,
        /// Elements found.
        found: usize,
    },
    /// A number could not be represented.
    #[error("{path}: {message}")]
    InvalidNumber {
        /// Where the number is.
        path: AttributePath,
        /// Why.
        message: String,
    },
    /// Anything else wrong with a value at a place (a bad dynamic value or type spec).
    #[error("{path}: {message}")]
    Invalid {
        /// Where.
        path: AttributePath,
        /// What.
        message: String,
    },
    /// The bytes are not JSON, or nest too deeply.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// serde could not turn a model into JSON or JSON into a model.
    #[error("{0}")]
    Serde(String),
}

impl ValueError {
    /// The attribute the error is about, if known.
    pub(crate) fn path(&self) -> Option<&AttributePath> {
        match self {
            ValueError::TypeMismatch { path, .. }
            | ValueError::UnexpectedAttribute { path, .. }
            | ValueError::TupleLength { path, .. }
            | ValueError::InvalidNumber { path, .. }
            | ValueError::Invalid { path, .. } => Some(path),
            ValueError::Json(_) | ValueError::Serde(_) => None,
        }
    }
}

impl From<ValueError> for Diagnostic {
    fn from(error: ValueError) -> Self {
        let diagnostic = Diagnostic::error(
            "Provider value error",
            format!(
                "The provider could not convert a value: {error}. \
                 This is a bug in the provider; please report it to the provider developers."
            ),
        );
        match error.path() {
            Some(path) if !path.is_empty() => diagnostic.at(path.clone()),
            _ => diagnostic,
        }
    }
}

impl Value {
    /// A number value.
    pub(crate) fn number(value: impl Into<Number>) -> Self {
        Value::Number(value.into())
    }

    /// A set value; duplicate elements are removed. Elements that are not wholly known are
    /// all kept, as cty keeps them: two unknowns may turn out different.
    pub(crate) fn set(elements: impl IntoIterator<Item = Value>) -> Self {
        let mut out: Vec<Value> = Vec::new();
        for element in elements {
            if !element.is_wholly_known() || !out.contains(&element) {
                out.push(element);
            }
        }
        Value::Set(out)
    }

    /// A map value from `(key, value)` pairs.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// An object value from `(name, value)` pairs.
    pub fn object<K: Into<String>>(attributes: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object(attributes.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// An object of type `ty` with every attribute null (e.g. the start of an imported
    /// state); `Null` if `ty` is not an object type.
    pub fn null_object(ty: &Type) -> Self {
        match ty {
            Type::Object(attrs) => {
                Value::Object(attrs.keys().map(|k| (k.clone(), Value::Null)).collect())
            }
            _ => Value::Null,
        }
    }

    /// Whether this is null.
    pub(crate) fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Dynamic(_, inner) => inner.is_null(),
            _ => false,
        }
    }

    /// Whether this is unknown (at the top; see [`Value::is_wholly_known`]).
    pub(crate) fn is_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::Dynamic(_, inner) => inner.is_unknown(),
            _ => false,
        }
    }

    /// Whether this value and everything inside it is known.
    pub(crate) fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, inner) => inner.is_wholly_known(),
        }
    }

    /// Paths of every unknown inside this value.
    pub(crate) fn unknown_paths(&self) -> Vec<AttributePath> {
        let mut out = Vec::new();
        self.collect_unknowns(&mut AttributePath::new(), &mut out);
        out
    }

    fn collect_unknowns(&self, path: &mut AttributePath, out: &mut Vec<AttributePath>) {
        match self {
            Value::Unknown => out.push(path.clone()),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
            Value::List(v) | Value::Tuple(v) => {
                for (i, e) in v.iter().enumerate() {
                    path.push(PathStep::Index(i as i64));
                    e.collect_unknowns(path, out);
                    path.pop();
                }
            }
            // Set elements have no address: report the set itself.
            Value::Set(v) => {
                if !v.iter().all(Value::is_wholly_known) {
                    out.push(path.clone());
                }
            }
            Value::Map(m) => {
                for (k, e) in m {
                    path.push(PathStep::Key(k.clone()));
                    e.collect_unknowns(path, out);
                    path.pop();
                }
            }
            Value::Object(m) => {
                for (k, e) in m {
                    path.push(PathStep::Attribute(k.clone()));
                    e.collect_unknowns(path, out);
                    path.pop();
                }
            }
            Value::Dynamic(_, inner) => inner.collect_unknowns(path, out),
        }
    }

    /// The value with every unknown, at any depth, replaced by null.
    pub(crate) fn unknowns_to_null(&self) -> Value {
        match self {
            Value::Unknown => Value::Null,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => self.clone(),
            Value::List(v) => Value::List(v.iter().map(Value::unknowns_to_null).collect()),
            Value::Set(v) => Value::set(v.iter().map(Value::unknowns_to_null)),
            Value::Tuple(v) => Value::Tuple(v.iter().map(Value::unknowns_to_null).collect()),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.unknowns_to_null()))
                    .collect(),
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.unknowns_to_null()))
                    .collect(),
            ),
            Value::Dynamic(ty, inner) => {
                Value::Dynamic(ty.clone(), Box::new(inner.unknowns_to_null()))
            }
        }
    }

    /// An attribute of an object (`None` if this is not an object or has no such
    /// attribute).
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(m) | Value::Map(m) => m.get(name),
            Value::Dynamic(_, inner) => inner.get(name),
            _ => None,
        }
    }

    /// A mutable attribute of an object.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Object(m) | Value::Map(m) => m.get_mut(name),
            Value::Dynamic(_, inner) => inner.get_mut(name),
            _ => None,
        }
    }

    /// Sets an attribute of an object. Returns `false` (and changes nothing) if this is
    /// not an object or map.
    pub fn set_attribute(&mut self, name: impl Into<String>, value: impl Into<Value>) -> bool {
        match self {
            Value::Object(m) | Value::Map(m) => {
                m.insert(name.into(), value.into());
                true
            }
            Value::Dynamic(_, inner) => inner.set_attribute(name, value),
            _ => false,
        }
    }

    /// The value at a path, if it exists.
    pub(crate) fn at(&self, path: &AttributePath) -> Option<&Value> {
        let mut current = self;
        for step in path.steps() {
            current = current.step(step)?;
        }
        Some(current)
    }

    fn step(&self, step: &PathStep) -> Option<&Value> {
        match (self, step) {
            (Value::Dynamic(_, inner), _) => inner.step(step),
            (Value::Object(m), PathStep::Attribute(name)) => m.get(name),
            (Value::Map(m), PathStep::Key(key)) => m.get(key),
            (Value::List(v) | Value::Tuple(v), PathStep::Index(i)) => {
                v.get(usize::try_from(*i).ok()?)
            }
            _ => None,
        }
    }

    /// The string inside, if this is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Dynamic(_, inner) => inner.as_str(),
            _ => None,
        }
    }

    /// The bool inside, if this is a known bool.
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Dynamic(_, inner) => inner.as_bool(),
            _ => None,
        }
    }

    /// The number inside, if this is a known number.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            Value::Dynamic(_, inner) => inner.as_number(),
            _ => None,
        }
    }

    /// The elements of a list, set or tuple.
    pub(crate) fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            Value::Dynamic(_, inner) => inner.as_elements(),
            _ => None,
        }
    }

    /// The entries of a map or object.
    pub(crate) fn as_entries(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) | Value::Object(m) => Some(m),
            Value::Dynamic(_, inner) => inner.as_entries(),
            _ => None,
        }
    }

    /// The type this value would have on its own, used for values in `dynamic` slots:
    /// collections take the type of their first element (`dynamic` when empty), null
    /// and unknown are `dynamic`.
    pub(crate) fn infer_type(&self) -> Type {
        match self {
            Value::Null | Value::Unknown => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::list(first_type(v.iter())),
            Value::Set(v) => Type::set(first_type(v.iter())),
            Value::Tuple(v) => Type::Tuple(v.iter().map(Value::infer_type).collect()),
            Value::Map(m) => Type::map(first_type(m.values())),
            Value::Object(m) => {
                Type::Object(m.iter().map(|(k, v)| (k.clone(), v.infer_type())).collect())
            }
            Value::Dynamic(ty, _) => (**ty).clone(),
        }
    }

    /// Checks that this value fits `ty` (unknowns and nulls fit anything).
    pub fn check_type(&self, ty: &Type) -> Result<(), ValueError> {
        self.check_type_at(ty, &mut AttributePath::new())
    }

    fn check_type_at(&self, ty: &Type, path: &mut AttributePath) -> Result<(), ValueError> {
        let mismatch = |path: &AttributePath| ValueError::TypeMismatch {
            path: path.clone(),
            expected: ty.to_string(),
            found: self.kind().to_owned(),
        };
        match (self, ty) {
            (Value::Null | Value::Unknown, _) => Ok(()),
            (Value::Dynamic(inner_ty, inner), Type::Dynamic) => inner.check_type_at(inner_ty, path),
            (Value::Dynamic(_, inner), _) => inner.check_type_at(ty, path),
            (_, Type::Dynamic) => Ok(()),
            (Value::Bool(_), Type::Bool)
            | (Value::Number(_), Type::Number)
            | (Value::String(_), Type::String) => Ok(()),
            (Value::List(v) | Value::Set(v) | Value::Tuple(v), Type::List(e) | Type::Set(e)) => {
                for (i, element) in v.iter().enumerate() {
                    path.push(PathStep::Index(i as i64));
                    element.check_type_at(e, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Value::List(v) | Value::Tuple(v), Type::Tuple(types)) => {
                if v.len() != types.len() {
                    return Err(ValueError::TupleLength {
                        path: path.clone(),
                        expected: types.len(),
                        found: v.len(),
                    });
                }
                for (i, (element, t)) in v.iter().zip(types).enumerate() {
                    path.push(PathStep::Index(i as i64));
                    element.check_type_at(t, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Value::Map(m) | Value::Object(m), Type::Map(e)) => {
                for (k, element) in m {
                    path.push(PathStep::Key(k.clone()));
                    element.check_type_at(e, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Value::Map(m) | Value::Object(m), Type::Object(attrs)) => {
                if let Some(name) = m.keys().find(|k| !attrs.contains_key(*k)) {
                    return Err(ValueError::UnexpectedAttribute {
                        path: path.clone(),
                        name: name.clone(),
                    });
                }
                for (name, t) in attrs {
                    if let Some(element) = m.get(name) {
                        path.push(PathStep::Attribute(name.clone()));
                        element.check_type_at(t, path)?;
                        path.pop();
                    }
                }
                Ok(())
            }
            _ => Err(mismatch(path)),
        }
    }

    /// A short name for the value's kind, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown => "unknown",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Tuple(_) => "tuple",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Dynamic(_, inner) => inner.kind(),
        }
    }

    /// The value as plain JSON, the bridge to serde models. Unknowns become `null`;
    /// numbers become JSON integers when they are integers within 64 bits and JSON
    /// floats otherwise (nearest `f64`: a model that needs more precision should read
    /// [`Value::as_number`] instead).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null | Value::Unknown => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => number_to_json(n),
            Value::String(s) => J::String(s.clone()),
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                J::Array(v.iter().map(Value::to_json).collect())
            }
            Value::Map(m) | Value::Object(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Dynamic(_, inner) => inner.to_json(),
        }
    }
}

fn first_type<'a>(mut values: impl Iterator<Item = &'a Value>) -> Type {
    values.next().map_or(Type::Dynamic, Value::infer_type)
}

fn number_to_json(n: &Number) -> serde_json::Value {
    if let Some(i) = n.to_i64() {
        return serde_json::Value::from(i);
    }
    if let Some(u) = n.to_u64() {
        return serde_json::Value::from(u);
    }
    serde_json::Number::from_f64(n.to_f64())
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

impl PartialEq for Value {
    /// Equality as Terraform sees it: sets compare without order, and a value in a
    /// dynamic slot equals the same value outside one.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Dynamic(ta, a), Value::Dynamic(tb, b)) => ta == tb && a == b,
            (Value::Dynamic(_, a), b) => **a == *b,
            (a, Value::Dynamic(_, b)) => *a == **b,
            (Value::Null, Value::Null) | (Value::Unknown, Value::Unknown) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => a == b,
            (Value::Set(a), Value::Set(b)) => {
                a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
            }
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unknown => f.write_str("(known after apply)"),
            _ => write!(f, "{}", self.to_json()),
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Number(Number::from(value))
    }
}

impl From<Number> for Value {
    fn from(value: Number) -> Self {
        Value::Number(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Model {
        id: Option<String>,
        name: String,
        labels: BTreeMap<String, String>,
        weight: Option<i64>,
    }

    fn model_type() -> Type {
        Type::object([
            ("id", Type::String),
            ("name", Type::String),
            ("labels", Type::map(Type::String)),
            ("weight", Type::Number),
            ("extra", Type::Bool),
        ])
    }

    #[test]
    fn models_round_trip_through_values() {
        let model = Model {
            id: None,
            name: "web".into(),
            labels: BTreeMap::from([("release".into(), "stable".into())]),
            weight: Some(90),
        };
        let value = Value::encode(&model, &model_type()).expect("encode");
        assert_eq!(
            value.get("extra"),
            Some(&Value::Null),
            "missing fields are null"
        );
        assert_eq!(value.get("weight"), Some(&Value::from(90)));
        #[derive(Deserialize)]
        struct Back {
            id: Option<String>,
            name: String,
            labels: BTreeMap<String, String>,
            weight: Option<i64>,
        }
        let back: Back = value.decode().expect("decode");
        assert_eq!(
            Model {
                id: back.id,
                name: back.name,
                labels: back.labels,
                weight: back.weight
            },
            model
        );
    }

    #[test]
    fn unknowns_decode_as_null() {
        let mut value = Value::null_object(&model_type());
        value.set_attribute("id", Value::Unknown);
        value.set_attribute("name", "x");
        value.set_attribute("labels", Value::map([("a", Value::Unknown)]));
        assert!(!value.is_wholly_known());
        assert_eq!(
            value.unknown_paths(),
            vec![
                AttributePath::root("id"),
                AttributePath::root("labels").key("a")
            ]
        );
        let json = value.to_json();
        assert_eq!(json["id"], json!(null));
    }

    #[test]
    fn sets_compare_without_order() {
        let a = Value::set([Value::from("a"), Value::from("b"), Value::from("a")]);
        let b = Value::Set(vec![Value::from("b"), Value::from("a")]);
        assert_eq!(a, b);
        assert_eq!(a.as_elements().map(<[Value]>::len), Some(2));
    }

    #[test]
    fn dynamic_values_equal_their_inner_value() {
        let d = Value::Dynamic(Box::new(Type::String), Box::new(Value::from("x")));
        assert_eq!(d, Value::from("x"));
        assert_eq!(d.infer_type(), Type::String);
    }

    #[test]
    fn check_type_finds_mismatches() {
        let ty = Type::list(Type::Number);
        assert!(
            Value::List(vec![Value::from(1), Value::Unknown])
                .check_type(&ty)
                .is_ok()
        );
        assert!(Value::List(vec![Value::from("x")]).check_type(&ty).is_err());
    }
}
