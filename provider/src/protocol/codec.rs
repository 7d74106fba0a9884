//! DynamicValue codec: Terraform's msgpack (and JSON) value encoding to and from the
//! framework's [`Value`], driven by the schema type, as cty does it:
//!
//! - null is msgpack nil; an unknown is any msgpack ext (Terraform writes `d4 00 00`;
//!   type 12 carries refinements, which are parsed and ignored); we write `d4 00 00`;
//! - numbers arrive as any int or uint width, f32, f64 or a decimal string, and are kept
//!   exact; we write an int when the number is an integer within i64, else the exact
//!   decimal string (which cty reads without loss);
//! - objects are maps with *every* attribute present (nil for unset);
//! - a `dynamic` slot holds `[type JSON as bin, value]`, or a bare nil / ext for an
//!   untyped null / unknown;
//! - JSON (`DynamicValue.json`) is read by the framework's one JSON reader
//!   ([`decode_json`]): the same shapes, with dynamic values as
//!   `{"value": ..., "type": ...}`.

use std::collections::BTreeMap;

use rmpv::Value as Mp;

use super::proto::tfplugin6::DynamicValue;
use crate::framework::{
    AttributePath, Diagnostic, ExtraAttributes, Number, PathStep, Type, Value, ValueError,
    decode_json,
};

/// Deepest nesting accepted in msgpack input.
const MAX_DEPTH: usize = 256;

/// A value that could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not msgpack.
    #[error("invalid msgpack: {0}")]
    Msgpack(String),
    /// The bytes are not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Bytes follow the value.
    #[error("unexpected bytes after the value")]
    TrailingBytes,
    /// The value does not have the shape its type requires.
    #[error("{path}: expected {expected}, found {found}")]
    TypeMismatch {
        /// Where.
        path: AttributePath,
        /// The type required.
        expected: String,
        /// What was there.
        found: String,
    },
    /// An object has an attribute its type does not declare.
    #[error("{path}: unsupported attribute {name:?}")]
    UnexpectedAttribute {
        /// The object.
        path: AttributePath,
        /// The attribute.
        name: String,
    },
    /// Anything else wrong with a value (bad number, bad UTF-8, bad type spec, ...).
    #[error("{path}: {message}")]
    Invalid {
        /// Where.
        path: AttributePath,
        /// What.
        message: String,
    },
}

impl CodecError {
    fn invalid(path: &AttributePath, message: impl Into<String>) -> Self {
        CodecError::Invalid {
            path: path.clone(),
            message: message.into(),
        }
    }

    fn tuple_length(path: &AttributePath, expected: usize, found: usize) -> Self {
        CodecError::invalid(
            path,
            format!("a tuple of {expected} elements is required, found {found}"),
        )
    }

    /// The attribute the error is about, if any.
    pub(crate) fn path(&self) -> Option<&AttributePath> {
        match self {
            CodecError::TypeMismatch { path, .. }
            | CodecError::UnexpectedAttribute { path, .. }
            | CodecError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl From<ValueError> for CodecError {
    fn from(error: ValueError) -> Self {
        match error {
            ValueError::TypeMismatch {
                path,
                expected,
                found,
            } => CodecError::TypeMismatch {
                path,
                expected,
                found,
            },
            ValueError::UnexpectedAttribute { path, name } => {
                CodecError::UnexpectedAttribute { path, name }
            }
            ValueError::TupleLength {
                path,
                expected,
                found,
            } => CodecError::tuple_length(&path, expected, found),
            ValueError::InvalidNumber { path, message } | ValueError::Invalid { path, message } => {
                CodecError::Invalid { path, message }
            }
            ValueError::Json(message) | ValueError::Serde(message) => CodecError::Json(message),
        }
    }
}

impl From<CodecError> for Diagnostic {
    fn from(error: CodecError) -> Self {
        let diagnostic = Diagnostic::error(
            "Invalid value in the plugin protocol",
            format!(
                "A value exchanged with Terraform could not be converted: {error}. \
                 This is a bug in the provider (or its schema); please report it."
            ),
        );
        match error.path() {
            Some(path) if !path.is_empty() => diagnostic.at(path.clone()),
            _ => diagnostic,
        }
    }
}

// === DynamicValue ===

/// Decodes a DynamicValue: msgpack if present, else JSON, else (absent or empty) null.
pub fn decode(value: Option<&DynamicValue>, ty: &Type) -> Result<Value, CodecError> {
    match value {
        Some(dv) if !dv.msgpack.is_empty() => decode_msgpack(&dv.msgpack, ty),
        Some(dv) if !dv.json.is_empty() => {
            decode_json(&dv.json, ty, ExtraAttributes::Reject).map_err(CodecError::from)
        }
        _ => Ok(Value::Null),
    }
}

/// Encodes a value as a msgpack DynamicValue.
pub fn encode(value: &Value, ty: &Type) -> Result<DynamicValue, CodecError> {
    Ok(DynamicValue {
        msgpack: encode_msgpack(value, ty)?,
        json: Vec::new(),
    })
}

// === msgpack ===

/// Decodes msgpack bytes as a value of type `ty`.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut reader = bytes;
    let mp = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| CodecError::Msgpack(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::TrailingBytes);
    }
    from_msgpack(&mp, ty, &mut AttributePath::new())
}

/// Encodes a value of type `ty` as msgpack bytes.
pub fn encode_msgpack(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mp = to_msgpack(value, ty, &mut AttributePath::new())?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &mp).map_err(|e| CodecError::Msgpack(e.to_string()))?;
    Ok(out)
}

fn from_msgpack(mp: &Mp, ty: &Type, path: &mut AttributePath) -> Result<Value, CodecError> {
    let mismatch = |path: &AttributePath| CodecError::TypeMismatch {
        path: path.clone(),
        expected: ty.to_string(),
        found: msgpack_kind(mp).to_owned(),
    };
    match (mp, ty) {
        (Mp::Nil, _) => Ok(Value::Null),
        (Mp::Ext(code, payload), _) => {
            read_refinements(*code, payload);
            Ok(Value::Unknown)
        }
        (Mp::Array(parts), Type::Dynamic) => {
            let [type_json, inner] = parts.as_slice() else {
                return Err(CodecError::invalid(
                    path,
                    "a dynamic value must be [type, value]",
                ));
            };
            let type_bytes = match type_json {
                Mp::Binary(b) => b.as_slice(),
                Mp::String(s) => s.as_bytes(),
                _ => {
                    return Err(CodecError::invalid(
                        path,
                        "a dynamic value's type must be bytes",
                    ));
                }
            };
            let concrete = Type::from_json_bytes(type_bytes)
                .map_err(|e| CodecError::invalid(path, e.to_string()))?;
            let value = from_msgpack(inner, &concrete, path)?;
            // `[dynamic, v]` is `v` (what the encoder writes for it).
            if concrete == Type::Dynamic {
                return Ok(value);
            }
            Ok(Value::Dynamic(Box::new(concrete), Box::new(value)))
        }
        (_, Type::Dynamic) => Err(CodecError::invalid(
            path,
            "a dynamic value must be [type, value]",
        )),
        (Mp::Boolean(b), Type::Bool) => Ok(Value::Bool(*b)),
        (Mp::String(s), Type::String) => s
            .as_str()
            .map(|s| Value::String(s.to_owned()))
            .ok_or_else(|| CodecError::invalid(path, "string is not valid UTF-8")),
        (Mp::Integer(i), Type::Number) => {
            if let Some(n) = i.as_i64() {
                Ok(Value::Number(Number::from(n)))
            } else if let Some(n) = i.as_u64() {
                Ok(Value::Number(Number::from(n)))
            } else {
                Err(CodecError::invalid(path, "integer out of range"))
            }
        }
        (Mp::F32(f), Type::Number) => float(f64::from(*f), path),
        (Mp::F64(f), Type::Number) => float(*f, path),
        (Mp::String(s), Type::Number) => {
            let text = s
                .as_str()
                .ok_or_else(|| CodecError::invalid(path, "number is not valid UTF-8"))?;
            Number::parse(text)
                .map(Value::Number)
                .map_err(|e| CodecError::invalid(path, e.to_string()))
        }
        (Mp::Array(items), Type::List(element) | Type::Set(element)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(PathStep::Index(i as i64));
                out.push(from_msgpack(item, element, path)?);
                path.pop();
            }
            Ok(match ty {
                Type::Set(_) => Value::set(out),
                _ => Value::List(out),
            })
        }
        (Mp::Array(items), Type::Tuple(types)) => {
            if items.len() != types.len() {
                return Err(CodecError::tuple_length(path, types.len(), items.len()));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, t)) in items.iter().zip(types).enumerate() {
                path.push(PathStep::Index(i as i64));
                out.push(from_msgpack(item, t, path)?);
                path.pop();
            }
            Ok(Value::Tuple(out))
        }
        (Mp::Map(entries), Type::Map(element)) => {
            let mut out = BTreeMap::new();
            for (key, item) in entries {
                let key = msgpack_key(key, path)?;
                path.push(PathStep::Key(key.clone()));
                let value = from_msgpack(item, element, path)?;
                path.pop();
                out.insert(key, value);
            }
            Ok(Value::Map(out))
        }
        (Mp::Map(entries), Type::Object(attributes)) => {
            let mut out = BTreeMap::new();
            for (key, item) in entries {
                let name = msgpack_key(key, path)?;
                let Some(attr_type) = attributes.get(&name) else {
                    return Err(CodecError::UnexpectedAttribute {
                        path: path.clone(),
                        name,
                    });
                };
                path.push(PathStep::Attribute(name.clone()));
                let value = from_msgpack(item, attr_type, path)?;
                path.pop();
                out.insert(name, value);
            }
            // Terraform always sends every attribute; be lenient and fill the rest.
            for name in attributes.keys() {
                out.entry(name.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        _ => Err(mismatch(path)),
    }
}

fn float(f: f64, path: &AttributePath) -> Result<Value, CodecError> {
    Number::from_f64_exact(f)
        .map(Value::Number)
        .ok_or_else(|| CodecError::invalid(path, "infinite or NaN numbers are not supported"))
}

fn msgpack_key(key: &Mp, path: &AttributePath) -> Result<String, CodecError> {
    match key {
        Mp::String(s) => s
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CodecError::invalid(path, "key is not valid UTF-8")),
        _ => Err(CodecError::invalid(path, "map keys must be strings")),
    }
}

/// What a refined unknown (ext type 12) tells about the value. Refinements are only
/// informative for a provider; they are parsed (to log them) and otherwise ignored.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Refinements {
    /// `Some(false)`: the value will not be null.
    pub nullable: Option<bool>,
    /// The string will start with this.
    pub string_prefix: Option<String>,
    /// Lower bound of a collection's length.
    pub length_min: Option<u64>,
    /// Upper bound of a collection's length.
    pub length_max: Option<u64>,
}

/// Parses the refinements of an unknown; malformed or unfamiliar payloads are ignored.
pub(crate) fn read_refinements(code: i8, payload: &[u8]) -> Refinements {
    let mut out = Refinements::default();
    if code != 12 || payload.len() <= 1 {
        return out;
    }
    let mut reader = payload;
    let Ok(Mp::Map(entries)) = rmpv::decode::read_value_with_max_depth(&mut reader, 8) else {
        return out;
    };
    for (key, value) in entries {
        match (key.as_u64(), value) {
            (Some(1), Mp::Boolean(b)) => out.nullable = Some(b),
            (Some(2), Mp::String(s)) => out.string_prefix = s.into_str(),
            (Some(5), v) => out.length_min = v.as_u64(),
            (Some(6), v) => out.length_max = v.as_u64(),
            // 3 and 4 (number bounds) and anything newer: ignored.
            _ => {}
        }
    }
    tracing::trace!(?out, "refined unknown value");
    out
}

fn to_msgpack(value: &Value, ty: &Type, path: &mut AttributePath) -> Result<Mp, CodecError> {
    let mismatch = |path: &AttributePath| CodecError::TypeMismatch {
        path: path.clone(),
        expected: ty.to_string(),
        found: value.kind().to_owned(),
    };
    match (value, ty) {
        (Value::Null, _) => Ok(Mp::Nil),
        (Value::Unknown, _) => Ok(Mp::Ext(0, vec![0])),
        (Value::Dynamic(concrete, inner), Type::Dynamic) => dynamic_msgpack(inner, concrete, path),
        (Value::Dynamic(_, inner), _) => to_msgpack(inner, ty, path),
        (_, Type::Dynamic) => dynamic_msgpack(value, &value.infer_type(), path),
        (Value::Bool(b), Type::Bool) => Ok(Mp::Boolean(*b)),
        (Value::String(s), Type::String) => Ok(Mp::String(s.as_str().into())),
        (Value::Number(n), Type::Number) => Ok(match n.to_i64() {
            Some(i) => Mp::Integer(i.into()),
            None => Mp::String(n.to_string().into()),
        }),
        (Value::List(items) | Value::Set(items) | Value::Tuple(items), Type::List(element)) => {
            sequence_msgpack(items.iter(), |_| element, path)
        }
        (Value::List(items) | Value::Set(items) | Value::Tuple(items), Type::Set(element)) => {
            let mut distinct: Vec<&Value> = Vec::with_capacity(items.len());
            for item in items {
                // Unknowns are never duplicates of each other (see `Value::set`).
                if !item.is_wholly_known() || !distinct.contains(&item) {
                    distinct.push(item);
                }
            }
            sequence_msgpack(distinct.into_iter(), |_| element, path)
        }
        (Value::List(items) | Value::Tuple(items), Type::Tuple(types)) => {
            if items.len() != types.len() {
                return Err(CodecError::tuple_length(path, types.len(), items.len()));
            }
            sequence_msgpack(items.iter(), |i| &types[i], path)
        }
        (Value::Map(entries) | Value::Object(entries), Type::Map(element)) => {
            let mut out = Vec::with_capacity(entries.len());
            for (key, item) in entries {
                path.push(PathStep::Key(key.clone()));
                out.push((
                    Mp::String(key.as_str().into()),
                    to_msgpack(item, element, path)?,
                ));
                path.pop();
            }
            Ok(Mp::Map(out))
        }
        (Value::Map(entries) | Value::Object(entries), Type::Object(attributes)) => {
            if let Some(name) = entries.keys().find(|k| !attributes.contains_key(*k)) {
                return Err(CodecError::UnexpectedAttribute {
                    path: path.clone(),
                    name: name.clone(),
                });
            }
            // Every attribute, in name order, nil when unset.
            let mut out = Vec::with_capacity(attributes.len());
            for (name, attr_type) in attributes {
                path.push(PathStep::Attribute(name.clone()));
                let item = match entries.get(name) {
                    Some(item) => to_msgpack(item, attr_type, path)?,
                    None => Mp::Nil,
                };
                path.pop();
                out.push((Mp::String(name.as_str().into()), item));
            }
            Ok(Mp::Map(out))
        }
        _ => Err(mismatch(path)),
    }
}

fn sequence_msgpack<'v, 't>(
    items: impl Iterator<Item = &'v Value>,
    type_of: impl Fn(usize) -> &'t Type,
    path: &mut AttributePath,
) -> Result<Mp, CodecError> {
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        path.push(PathStep::Index(i as i64));
        out.push(to_msgpack(item, type_of(i), path)?);
        path.pop();
    }
    Ok(Mp::Array(out))
}

/// `[bin(type JSON), value]`; untyped nulls and unknowns stay bare.
fn dynamic_msgpack(
    value: &Value,
    concrete: &Type,
    path: &mut AttributePath,
) -> Result<Mp, CodecError> {
    match (value, concrete) {
        (Value::Null, Type::Dynamic) => Ok(Mp::Nil),
        (Value::Unknown, Type::Dynamic) => Ok(Mp::Ext(0, vec![0])),
        _ => Ok(Mp::Array(vec![
            Mp::Binary(concrete.to_json_bytes()),
            to_msgpack(value, concrete, path)?,
        ])),
    }
}

fn msgpack_kind(mp: &Mp) -> &'static str {
    match mp {
        Mp::Nil => "null",
        Mp::Boolean(_) => "bool",
        Mp::Integer(_) | Mp::F32(_) | Mp::F64(_) => "number",
        Mp::String(_) => "string",
        Mp::Binary(_) => "binary",
        Mp::Array(_) => "array",
        Mp::Map(_) => "map",
        Mp::Ext(..) => "unknown",
    }
}

#[cfg(test)]
mod tests;
