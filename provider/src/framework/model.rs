//! The serde bridge between [`Value`]s and a resource's typed model: [`Value::decode`]
//! through a `Deserializer` over values (so numbers reach a [`Number`] field exactly, and
//! unknowns read as `None`), [`Value::encode`] through JSON, and
//! `Serialize`/`Deserialize` for [`Number`].

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::number::Number;
use super::types::Type;
use super::value::{Value, ValueError};

/// The newtype name through which [`Number`] asks a value deserializer for its exact
/// decimal text (other deserializers just see the inner value).
const NUMBER_TOKEN: &str = "$postern::private::Number";

impl Value {
    /// Decodes the value into a serde model. Object attributes map to fields by name;
    /// unknowns and nulls read as `None`, so a field for a computed attribute should be
    /// an `Option`; numbers reach a [`Number`] field exactly (and `i64`, `f64`, ...
    /// fields as usual); enums read from strings.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ValueError> {
        T::deserialize(ValueDeserializer(self))
    }

    /// Encodes a serde model as a value of type `ty` (through [`Value::from_json`]):
    /// fields the model leaves out become null.
    pub(crate) fn encode<T: Serialize + ?Sized>(model: &T, ty: &Type) -> Result<Value, ValueError> {
        let json = serde_json::to_value(model).map_err(|e| ValueError::Serde(e.to_string()))?;
        Value::from_json(&json, ty)
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Serde(msg.to_string())
    }
}

/// Deserializes a model from a borrowed value.
struct ValueDeserializer<'a>(&'a Value);

impl<'de> IntoDeserializer<'de, ValueError> for ValueDeserializer<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for ValueDeserializer<'de> {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Null | Value::Unknown => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.to_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.to_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.to_f64())
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDeserializer));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Map(entries) | Value::Object(entries) => {
                let mut map = MapDeserializer::new(
                    entries
                        .iter()
                        .map(|(k, v)| (k.as_str(), ValueDeserializer(v))),
                );
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
            Value::Dynamic(_, inner) => ValueDeserializer(inner).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        if self.0.is_null() || self.0.is_unknown() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match (name, self.0.as_number()) {
            (NUMBER_TOKEN, Some(n)) => visitor.visit_string(n.to_string()),
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0.as_str() {
            Some(s) => visitor.visit_enum(s.into_deserializer()),
            None => Err(ValueError::Serde(format!(
                "expected a string for an enum, found {}",
                self.0.kind()
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl Serialize for Number {
    /// An integer within 64 bits as a number; anything else as its exact decimal string
    /// (which `Value::encode` reads back exactly into a `number` attribute).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(i) = self.to_i64() {
            serializer.serialize_i64(i)
        } else if let Some(u) = self.to_u64() {
            serializer.serialize_u64(u)
        } else {
            serializer.serialize_newtype_struct(NUMBER_TOKEN, &self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    /// From a value: exactly. From other formats: integers exactly, floats by their
    /// shortest decimal, strings parsed.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(NUMBER_TOKEN, NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Number::from_f64_shortest(v).ok_or_else(|| E::custom("infinite or NaN number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        Number::parse(v).map_err(E::custom)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Enforce,
        Report,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Model {
        id: Option<String>,
        size: Option<Number>,
        ratio: Option<f64>,
        mode: Mode,
        labels: BTreeMap<String, String>,
        ports: Vec<u16>,
    }

    fn ty() -> Type {
        Type::object([
            ("id", Type::String),
            ("size", Type::Number),
            ("ratio", Type::Number),
            ("mode", Type::String),
            ("labels", Type::map(Type::String)),
            ("ports", Type::list(Type::Number)),
        ])
    }

    #[test]
    fn numbers_reach_models_exactly() {
        let big = Number::parse("123456789012345678901234567890.000001").unwrap_or_default();
        let value = Value::object([
            ("id", Value::Unknown),
            ("size", Value::Number(big.clone())),
            (
                "ratio",
                Value::Number(Number::parse("0.1").unwrap_or_default()),
            ),
            ("mode", Value::from("report")),
            ("labels", Value::map([("a", Value::from("b"))])),
            (
                "ports",
                Value::List(vec![Value::from(80), Value::from(443)]),
            ),
        ]);
        let model: Model = value.decode().expect("decode");
        assert_eq!(model.id, None, "unknown reads as None");
        assert_eq!(model.size.as_ref(), Some(&big));
        assert_eq!(model.ratio, Some(0.1));
        assert_eq!(model.mode, Mode::Report);
        assert_eq!(model.ports, vec![80, 443]);
        let back = Value::encode(&model, &ty()).expect("encode");
        assert_eq!(back.get("size"), Some(&Value::Number(big)));
        assert_eq!(back.get("ratio"), value.get("ratio"));
        assert_eq!(back.get("id"), Some(&Value::Null));
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        let value = Value::object([("mode", Value::from("sideways"))]);
        assert!(value.decode::<Model>().is_err());
        assert!(Value::from(3).decode::<String>().is_err());
        assert!(Value::from(-1).decode::<u8>().is_err());
    }
}
