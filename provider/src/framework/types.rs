//! Terraform's type system (cty types): the shape every [`Value`](super::Value) is read
//! and written against, and its JSON spelling used in schemas and dynamic values.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;

/// A cty type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A UTF-8 string.
    String,
    /// An exact decimal number.
    Number,
    /// `true` or `false`.
    Bool,
    /// Any type, decided by the value (`dynamic`, cty's `DynamicPseudoType`).
    Dynamic,
    /// An ordered sequence of one element type.
    List(Box<Type>),
    /// An unordered collection of distinct values of one element type.
    Set(Box<Type>),
    /// String keys to values of one element type.
    Map(Box<Type>),
    /// Named attributes, each with its own type.
    Object(BTreeMap<String, Type>),
    /// A fixed-length sequence, each position with its own type.
    Tuple(Vec<Type>),
}

/// A type spelled in JSON that is not a cty type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid type specification: {0}")]
pub(crate) struct TypeError(String);

impl Type {
    /// `list(element)`.
    pub fn list(element: Type) -> Self {
        Self::List(Box::new(element))
    }

    /// `set(element)`.
    pub fn set(element: Type) -> Self {
        Self::Set(Box::new(element))
    }

    /// `map(element)`.
    pub fn map(element: Type) -> Self {
        Self::Map(Box::new(element))
    }

    /// `object({...})` from `(name, type)` pairs.
    pub fn object<K: Into<String>>(attributes: impl IntoIterator<Item = (K, Type)>) -> Self {
        Self::Object(
            attributes
                .into_iter()
                .map(|(name, ty)| (name.into(), ty))
                .collect(),
        )
    }

    /// The cty JSON spelling, e.g. `"string"` or `["map","string"]`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Type::String => json!("string"),
            Type::Number => json!("number"),
            Type::Bool => json!("bool"),
            Type::Dynamic => json!("dynamic"),
            Type::List(e) => json!(["list", e.to_json()]),
            Type::Set(e) => json!(["set", e.to_json()]),
            Type::Map(e) => json!(["map", e.to_json()]),
            Type::Object(attrs) => {
                let attrs: serde_json::Map<String, serde_json::Value> = attrs
                    .iter()
                    .map(|(name, ty)| (name.clone(), ty.to_json()))
                    .collect();
                json!(["object", attrs])
            }
            Type::Tuple(elems) => {
                json!(["tuple", elems.iter().map(Type::to_json).collect::<Vec<_>>()])
            }
        }
    }

    /// The cty JSON spelling as bytes, as schemas carry it.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// Parses the cty JSON spelling. The optional-attributes list of an object type
    /// constraint (`["object",{...},["a"]]`) is accepted and ignored.
    pub(crate) fn from_json(json: &serde_json::Value) -> Result<Self, TypeError> {
        Self::from_json_at_depth(json, 0)
    }

    /// Parses the cty JSON spelling from bytes.
    pub(crate) fn from_json_bytes(bytes: &[u8]) -> Result<Self, TypeError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| TypeError(e.to_string()))?;
        Self::from_json(&json)
    }

    fn from_json_at_depth(json: &serde_json::Value, depth: usize) -> Result<Self, TypeError> {
        if depth > 64 {
            return Err(TypeError("type nested too deeply".into()));
        }
        let bad = || TypeError(truncate(&json.to_string()));
        match json {
            serde_json::Value::String(name) => match name.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "dynamic" => Ok(Type::Dynamic),
                _ => Err(bad()),
            },
            serde_json::Value::Array(parts) => {
                let kind = parts.first().and_then(|k| k.as_str()).ok_or_else(bad)?;
                let arg = parts.get(1).ok_or_else(bad)?;
                let inner = |j| Self::from_json_at_depth(j, depth + 1);
                match (kind, parts.len()) {
                    ("list", 2) => Ok(Type::list(inner(arg)?)),
                    ("set", 2) => Ok(Type::set(inner(arg)?)),
                    ("map", 2) => Ok(Type::map(inner(arg)?)),
                    ("object", 2 | 3) => {
                        let attrs = arg.as_object().ok_or_else(bad)?;
                        let mut out = BTreeMap::new();
                        for (name, ty) in attrs {
                            out.insert(name.clone(), inner(ty)?);
                        }
                        Ok(Type::Object(out))
                    }
                    ("tuple", 2) => {
                        let elems = arg.as_array().ok_or_else(bad)?;
                        Ok(Type::Tuple(
                            elems.iter().map(inner).collect::<Result<_, _>>()?,
                        ))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::String => f.write_str("string"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::Dynamic => f.write_str("dynamic"),
            Type::List(e) => write!(f, "list({e})"),
            Type::Set(e) => write!(f, "set({e})"),
            Type::Map(e) => write!(f, "map({e})"),
            Type::Object(attrs) => {
                f.write_str("object({")?;
                for (i, (name, ty)) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}={ty}")?;
                }
                f.write_str("})")
            }
            Type::Tuple(elems) => {
                f.write_str("tuple([")?;
                for (i, ty) in elems.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{ty}")?;
                }
                f.write_str("])")
            }
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_spelling_round_trips() {
        let cases = [
            (Type::String, r#""string""#),
            (Type::Dynamic, r#""dynamic""#),
            (Type::map(Type::String), r#"["map","string"]"#),
            (
                Type::list(Type::object([("a", Type::Number), ("b", Type::Bool)])),
                r#"["list",["object",{"a":"number","b":"bool"}]]"#,
            ),
            (
                Type::Tuple(vec![Type::String, Type::set(Type::Number)]),
                r#"["tuple",["string",["set","number"]]]"#,
            ),
        ];
        for (ty, text) in cases {
            assert_eq!(String::from_utf8_lossy(&ty.to_json_bytes()), text);
            assert_eq!(Type::from_json_bytes(text.as_bytes()), Ok(ty));
        }
    }

    #[test]
    fn rejects_non_types() {
        for text in [
            r#""str""#,
            r#"["list"]"#,
            r#"["object",[]]"#,
            "12",
            r#"["map","x"]"#,
        ] {
            assert!(Type::from_json_bytes(text.as_bytes()).is_err(), "{text}");
        }
    }
}
