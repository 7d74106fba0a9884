//! The one reader of values from JSON, against the type they must have, as cty reads it:
//! Terraform's JSON (`DynamicValue.json` and stored state, from bytes, with
//! [`decode_json`]) and plain JSON (a model serialized by serde, or a state an upgrade
//! hook rewrote, from a `serde_json::Value`, with [`Value::from_json`]).
//!
//! - numbers are read from their text, exactly (a JSON string is accepted too, so models
//!   may carry exact decimals as strings);
//! - object attributes missing from the JSON are null;
//! - in Terraform's JSON a `dynamic` slot holds `{"value": ..., "type": ...}`; in plain
//!   JSON it holds the value itself, whose type is implied from it (arrays are tuples,
//!   objects are objects), as cty's `ImpliedType` does.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::diagnostics::{AttributePath, PathStep};
use super::number::Number;
use super::types::Type;
use super::value::{Value, ValueError};

/// Deepest nesting accepted in JSON input.
const MAX_DEPTH: usize = 256;

/// What to do with object attributes the type does not declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraAttributes {
    /// Fail (values exchanged in RPCs, models).
    Reject,
    /// Drop them (stored state written by an older schema with the same version).
    Ignore,
}

/// How a `dynamic` slot is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dynamic {
    /// `{"value": ..., "type": ...}` (Terraform's JSON).
    Wrapped,
    /// The value alone, its type implied (plain JSON).
    Implied,
}

/// Decodes Terraform's JSON as a value of type `ty`, reading numbers exactly from their
/// text.
pub fn decode_json(bytes: &[u8], ty: &Type, extra: ExtraAttributes) -> Result<Value, ValueError> {
    let raw: &RawValue =
        serde_json::from_slice(bytes).map_err(|e| ValueError::Json(e.to_string()))?;
    let json = Json::parse(raw, 0)?;
    let reader = Reader {
        extra,
        dynamic: Dynamic::Wrapped,
    };
    reader.read(&json, ty, &mut AttributePath::new())
}

impl Value {
    /// Reads plain JSON as a value of type `ty` (see the module documentation);
    /// attributes the type does not declare are an error.
    pub(crate) fn from_json(json: &serde_json::Value, ty: &Type) -> Result<Value, ValueError> {
        let reader = Reader {
            extra: ExtraAttributes::Reject,
            dynamic: Dynamic::Implied,
        };
        reader.read(&Json::from_serde(json, 0)?, ty, &mut AttributePath::new())
    }
}

/// A JSON tree whose numbers keep their text.
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// Parses raw JSON text, level by level, so that no number goes through a float.
    fn parse(raw: &RawValue, depth: usize) -> Result<Json, ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::Json("nested too deeply".into()));
        }
        let text = raw.get().trim();
        let json_err = |e: serde_json::Error| ValueError::Json(e.to_string());
        match text.as_bytes().first() {
            Some(b'{') => {
                let entries: BTreeMap<String, &RawValue> =
                    serde_json::from_str(text).map_err(json_err)?;
                let mut out = BTreeMap::new();
                for (k, v) in entries {
                    out.insert(k, Json::parse(v, depth + 1)?);
                }
                Ok(Json::Object(out))
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(json_err)?;
                items
                    .into_iter()
                    .map(|v| Json::parse(v, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Json::Array)
            }
            Some(b'"') => serde_json::from_str(text)
                .map(Json::String)
                .map_err(json_err),
            Some(b't' | b'f') => serde_json::from_str(text).map(Json::Bool).map_err(json_err),
            Some(b'n') => Ok(Json::Null),
            _ => Ok(Json::Number(text.to_owned())),
        }
    }

    /// A parsed `serde_json::Value`; its numbers are written out as the shortest text
    /// that reads back as the same number.
    fn from_serde(json: &serde_json::Value, depth: usize) -> Result<Json, ValueError> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(ValueError::Json("nested too deeply".into()));
        }
        Ok(match json {
            J::Null => Json::Null,
            J::Bool(b) => Json::Bool(*b),
            J::Number(n) => Json::Number(n.to_string()),
            J::String(s) => Json::String(s.clone()),
            J::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|item| Json::from_serde(item, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Json::from_serde(v, depth + 1)?)))
                    .collect::<Result<_, ValueError>>()?,
            ),
        })
    }

    /// The type cty implies for plain JSON: arrays are tuples, objects are objects.
    fn implied_type(&self) -> Type {
        match self {
            Json::Null => Type::Dynamic,
            Json::Bool(_) => Type::Bool,
            Json::Number(_) => Type::Number,
            Json::String(_) => Type::String,
            Json::Array(items) => Type::Tuple(items.iter().map(Json::implied_type).collect()),
            Json::Object(entries) => Type::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.implied_type()))
                    .collect(),
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// Reads a JSON tree against a type.
struct Reader {
    extra: ExtraAttributes,
    dynamic: Dynamic,
}

impl Reader {
    fn read(&self, json: &Json, ty: &Type, path: &mut AttributePath) -> Result<Value, ValueError> {
        let mismatch = |path: &AttributePath| ValueError::TypeMismatch {
            path: path.clone(),
            expected: ty.to_string(),
            found: json.kind().to_owned(),
        };
        match (json, ty) {
            (Json::Null, _) => Ok(Value::Null),
            (_, Type::Dynamic) if self.dynamic == Dynamic::Implied => {
                self.read(json, &json.implied_type(), path)
            }
            (Json::Object(parts), Type::Dynamic) => {
                let (Some(type_json), Some(inner)) = (parts.get("type"), parts.get("value")) else {
                    return Err(not_dynamic(path));
                };
                let concrete = read_type(type_json, path)?;
                let value = self.read(inner, &concrete, path)?;
                if concrete == Type::Dynamic {
                    return Ok(value);
                }
                Ok(Value::Dynamic(Box::new(concrete), Box::new(value)))
            }
            (_, Type::Dynamic) => Err(not_dynamic(path)),
            (Json::Bool(b), Type::Bool) => Ok(Value::Bool(*b)),
            (Json::String(s), Type::String) => Ok(Value::String(s.clone())),
            (Json::Number(text) | Json::String(text), Type::Number) => Number::parse(text)
                .map(Value::Number)
                .map_err(|e| ValueError::InvalidNumber {
                    path: path.clone(),
                    message: e.to_string(),
                }),
            (Json::Array(items), Type::List(element) | Type::Set(element)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathStep::Index(i as i64));
                    out.push(self.read(item, element, path)?);
                    path.pop();
                }
                Ok(match ty {
                    Type::Set(_) => Value::set(out),
                    _ => Value::List(out),
                })
            }
            (Json::Array(items), Type::Tuple(types)) => {
                if items.len() != types.len() {
                    return Err(ValueError::TupleLength {
                        path: path.clone(),
                        expected: types.len(),
                        found: items.len(),
                    });
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, (item, t)) in items.iter().zip(types).enumerate() {
                    path.push(PathStep::Index(i as i64));
                    out.push(self.read(item, t, path)?);
                    path.pop();
                }
                Ok(Value::Tuple(out))
            }
            (Json::Object(entries), Type::Map(element)) => {
                let mut out = BTreeMap::new();
                for (key, item) in entries {
                    path.push(PathStep::Key(key.clone()));
                    out.insert(key.clone(), self.read(item, element, path)?);
                    path.pop();
                }
                Ok(Value::Map(out))
            }
            (Json::Object(entries), Type::Object(attributes)) => {
                if self.extra == ExtraAttributes::Reject
                    && let Some(name) = entries.keys().find(|k| !attributes.contains_key(*k))
                {
                    return Err(ValueError::UnexpectedAttribute {
                        path: path.clone(),
                        name: name.clone(),
                    });
                }
                let mut out = BTreeMap::new();
                for (name, attr_type) in attributes {
                    let value = match entries.get(name) {
                        Some(item) => {
                            path.push(PathStep::Attribute(name.clone()));
                            let value = self.read(item, attr_type, path)?;
                            path.pop();
                            value
                        }
                        None => Value::Null,
                    };
                    out.insert(name.clone(), value);
                }
                Ok(Value::Object(out))
            }
            _ => Err(mismatch(path)),
        }
    }
}

fn not_dynamic(path: &AttributePath) -> ValueError {
    ValueError::Invalid {
        path: path.clone(),
        message: "a dynamic value must be {\"value\": ..., \"type\": ...}".to_owned(),
    }
}

/// A type spelled inside a JSON dynamic value.
fn read_type(json: &Json, path: &AttributePath) -> Result<Type, ValueError> {
    fn plain(json: &Json) -> serde_json::Value {
        match json {
            Json::Null | Json::Number(_) => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::String(s) => serde_json::Value::String(s.clone()),
            Json::Array(items) => serde_json::Value::Array(items.iter().map(plain).collect()),
            Json::Object(entries) => serde_json::Value::Object(
                entries.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
            ),
        }
    }
    Type::from_json(&plain(json)).map_err(|e| ValueError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn num(text: &str) -> Value {
        Value::Number(Number::parse(text).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn numbers_are_exact_and_dynamic_values_carry_their_type() {
        let ty = Type::object([
            ("n", Type::Number),
            ("big", Type::Number),
            ("d", Type::Dynamic),
            ("tags", Type::set(Type::String)),
            ("o", Type::object([("x", Type::Bool)])),
        ]);
        let json = br#"{"n": 0.1, "big": 123456789012345678901234567890.5, "d": {"value": [1, "a"], "type": ["tuple", ["number", "string"]]}, "tags": ["a", "a"], "o": null}"#;
        let want = Value::object([
            ("n", num("0.1")),
            ("big", num("123456789012345678901234567890.5")),
            (
                "d",
                Value::Dynamic(
                    Box::new(Type::Tuple(vec![Type::Number, Type::String])),
                    Box::new(Value::Tuple(vec![num("1"), Value::from("a")])),
                ),
            ),
            ("tags", Value::set([Value::from("a")])),
            ("o", Value::Null),
        ]);
        assert_eq!(decode_json(json, &ty, ExtraAttributes::Reject), Ok(want));
    }

    #[test]
    fn parsed_json_reads_like_its_text() {
        let ty = Type::object([
            ("n", Type::Number),
            ("exact", Type::Number),
            ("labels", Type::map(Type::String)),
        ]);
        let text = r#"{"n": 0.1, "exact": "0.30000000000000000001", "labels": {"a": "b"}}"#;
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(
            Value::from_json(&parsed, &ty),
            decode_json(text.as_bytes(), &ty, ExtraAttributes::Reject)
        );
        assert_eq!(
            Value::from_json(&parsed, &ty).map(|v| v.get("exact").cloned()),
            Ok(Some(num("0.30000000000000000001")))
        );
    }

    #[test]
    fn plain_json_implies_the_type_of_a_dynamic_slot() {
        let ty = Type::object([("extra", Type::Dynamic)]);
        let value = Value::from_json(&json!({"extra": {"n": 1.5, "list": ["x", true]}}), &ty);
        let want = Value::object([(
            "extra",
            Value::object([
                ("n", num("1.5")),
                (
                    "list",
                    Value::Tuple(vec![Value::from("x"), Value::Bool(true)]),
                ),
            ]),
        )]);
        assert_eq!(value, Ok(want));
        assert!(
            decode_json(br#"{"extra": {"n": 1.5}}"#, &ty, ExtraAttributes::Reject).is_err(),
            "Terraform's JSON wraps a dynamic value with its type"
        );
    }

    #[test]
    fn errors_name_the_attribute() {
        let ty = Type::object([("labels", Type::map(Type::String)), ("id", Type::String)]);
        let err = Value::from_json(&json!({"labels": {"a": 3}}), &ty);
        assert_eq!(
            err.map_err(|e| e.path().cloned()),
            Err(Some(AttributePath::root("labels").key("a")))
        );
        let err = Value::from_json(&json!({"nope": 1}), &ty);
        assert!(matches!(err, Err(ValueError::UnexpectedAttribute { .. })));
    }

    #[test]
    fn stored_state_may_carry_attributes_the_schema_dropped() {
        let ty = Type::object([("name", Type::String), ("added", Type::Number)]);
        let json = br#"{"name": "web", "removed": true}"#;
        assert!(matches!(
            decode_json(json, &ty, ExtraAttributes::Reject),
            Err(ValueError::UnexpectedAttribute { .. })
        ));
        assert_eq!(
            decode_json(json, &ty, ExtraAttributes::Ignore),
            Ok(Value::object([
                ("name", Value::from("web")),
                ("added", Value::Null)
            ]))
        );
        assert!(decode_json(b"{", &ty, ExtraAttributes::Ignore).is_err());
        assert!(decode_json(b"[1]", &ty, ExtraAttributes::Ignore).is_err());
    }
}
