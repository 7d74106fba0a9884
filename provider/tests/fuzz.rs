//! Fuzz target for the DynamicValue codec: the msgpack (and JSON) that Terraform sends, decoded
//! against the schema types of every Postern resource, data source and ephemeral resource, and
//! against synthetic types that use every cty kind. Replays `tests/fuzz-corpus/codec/`, then
//! runs for `POSTERN_FUZZ_SECONDS` (see `postern-fuzzing`).
//!
//! An input is one selector byte and the payload. The selector's low six bits pick the type
//! (modulo the number of types), bit 6 decodes JSON with extra attributes ignored (stored
//! state), bit 7 decodes JSON (`DynamicValue.json`); otherwise the payload is msgpack.

use std::path::PathBuf;

use postern_fuzzing::{Fuzz, Rng};
use rmpv::Value as Mp;
use terraform_provider_postern::framework::{ExtraAttributes, Type, Value, decode_json};
use terraform_provider_postern::protocol::codec::{decode_msgpack, encode_msgpack};
use terraform_provider_postern::registry;

const JSON: u8 = 0x80;
const IGNORE_EXTRA: u8 = 0x40;
const TYPE_BITS: u8 = 0x3f;

/// The types values are decoded against: synthetic ones that use every cty kind (first, so
/// that the corpus keeps its meaning as resources are added), then the provider's schemas.
fn types() -> Vec<Type> {
    let mut types = vec![
        Type::Dynamic,
        Type::list(Type::Dynamic),
        Type::object([
            ("s", Type::String),
            ("n", Type::Number),
            ("b", Type::Bool),
            ("d", Type::Dynamic),
            ("l", Type::list(Type::String)),
            ("set", Type::set(Type::Number)),
            ("m", Type::map(Type::Bool)),
            ("t", Type::Tuple(vec![Type::String, Type::Number])),
        ]),
        Type::set(Type::object([("k", Type::String), ("v", Type::Dynamic)])),
        Type::map(Type::list(Type::Number)),
        Type::Tuple(vec![Type::Dynamic, Type::set(Type::Dynamic)]),
    ];
    let registry = registry();
    types.push(registry.provider_schema().value_type());
    let mut named: Vec<(String, Type)> = registry
        .resource_schemas()
        .chain(registry.data_source_schemas())
        .chain(registry.ephemeral_resource_schemas())
        .map(|(name, schema)| (name.to_string(), schema.value_type()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    types.extend(named.into_iter().map(|(_, ty)| ty));
    types
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/codec")
}

#[test]
fn codec() {
    let types = types();
    assert!(
        types.len() <= usize::from(TYPE_BITS) + 1,
        "too many types for the selector"
    );
    Fuzz::new("codec", corpus())
        .generated_percent(50)
        .dictionary([
            &[0xc0][..],
            &[0xd4, 0x00, 0x00],
            &[0xc7, 0x03, 0x0c, 0x81, 0x01],
            &[0x92],
            &[0xdc, 0xff, 0xff],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xde, 0xff, 0xff],
            &[0xcb],
            b"\"dynamic\"",
            b"[\"list\",",
            b"[\"object\",{",
            b"{\"value\":",
            b"\"type\":",
        ])
        .run(
            |rng| {
                let index = rng.below(types.len());
                let ty = &types[index];
                let mut input = vec![index as u8];
                if rng.one_in(4) {
                    input[0] |= JSON | if rng.one_in(3) { IGNORE_EXTRA } else { 0 };
                    input.extend(json_for(rng, ty, 4).to_string().into_bytes());
                } else {
                    let mut bytes = Vec::new();
                    let _ = rmpv::encode::write_value(&mut bytes, &msgpack_for(rng, ty, 4));
                    input.extend(bytes);
                }
                input
            },
            |bytes| check(&types, bytes),
        );
}

/// The documented behaviour: a value that decodes fits its type, encodes, and decodes again
/// to the same value.
fn check(types: &[Type], bytes: &[u8]) {
    let Some((&selector, payload)) = bytes.split_first() else {
        return;
    };
    let ty = &types[usize::from(selector & TYPE_BITS) % types.len()];
    let decoded: Option<Value> = if selector & JSON != 0 {
        let extra = if selector & IGNORE_EXTRA != 0 {
            ExtraAttributes::Ignore
        } else {
            ExtraAttributes::Reject
        };
        decode_json(payload, ty, extra).ok()
    } else {
        decode_msgpack(payload, ty).ok()
    };
    let Some(value) = decoded else {
        return;
    };
    if let Err(error) = value.check_type(ty) {
        panic!("the decoded value does not fit {ty}: {error}");
    }
    let encoded = encode_msgpack(&value, ty)
        .unwrap_or_else(|e| panic!("a decoded value does not encode: {e}"));
    let again = decode_msgpack(&encoded, ty)
        .unwrap_or_else(|e| panic!("an encoded value does not decode: {e}"));
    assert_eq!(again, value, "the value changed in a round trip");
    // Encoding writes the canonical form (a dynamic value whose type is `dynamic` loses that
    // wrapper), so the bytes may change once more; the value, as Terraform compares, does not.
    let twice = encode_msgpack(&again, ty)
        .and_then(|bytes| decode_msgpack(&bytes, ty))
        .unwrap_or_else(|e| panic!("a second round trip failed: {e}"));
    assert_eq!(twice, value, "the value changed in a second round trip");
}

// === generators ===

/// Msgpack for `ty`: mostly of the right shape, with nulls, unknowns (plain and refined) and
/// now and then anything at all.
fn msgpack_for(rng: &mut Rng, ty: &Type, depth: usize) -> Mp {
    match rng.below(24) {
        0 => return Mp::Nil,
        1 => return Mp::Ext(0, vec![0]),
        2 => return Mp::Ext(12, refinements(rng)),
        3 => return any_msgpack(rng, 2),
        _ => {}
    }
    let depth = depth.saturating_sub(1);
    match ty {
        Type::String => Mp::from(string(rng)),
        Type::Bool => Mp::Boolean(rng.one_in(2)),
        Type::Number => number(rng),
        Type::List(element) | Type::Set(element) => Mp::Array(
            (0..rng.short_len(6))
                .map(|_| msgpack_for(rng, element, depth))
                .collect(),
        ),
        Type::Map(element) => Mp::Map(
            (0..rng.short_len(5))
                .map(|_| (Mp::from(string(rng)), msgpack_for(rng, element, depth)))
                .collect(),
        ),
        Type::Object(attributes) => {
            let mut entries: Vec<(Mp, Mp)> = Vec::new();
            for (name, attr) in attributes {
                if !rng.one_in(8) {
                    entries.push((Mp::from(name.as_str()), msgpack_for(rng, attr, depth)));
                }
            }
            if rng.one_in(10) {
                entries.push((Mp::from("unexpected"), Mp::Nil));
            }
            Mp::Map(entries)
        }
        Type::Tuple(types) => {
            let mut items: Vec<Mp> = types.iter().map(|t| msgpack_for(rng, t, depth)).collect();
            if rng.one_in(10) {
                items.pop();
            }
            Mp::Array(items)
        }
        Type::Dynamic => {
            let concrete = if depth == 0 {
                Type::String
            } else {
                random_type(rng, 2)
            };
            Mp::Array(vec![
                Mp::Binary(concrete.to_json_bytes()),
                msgpack_for(rng, &concrete, depth),
            ])
        }
    }
}

/// JSON for `ty`, the same way.
fn json_for(rng: &mut Rng, ty: &Type, depth: usize) -> serde_json::Value {
    use serde_json::{Value as J, json};
    if rng.one_in(12) {
        return J::Null;
    }
    let depth = depth.saturating_sub(1);
    match ty {
        Type::String => J::from(string(rng)),
        Type::Bool => J::Bool(rng.one_in(2)),
        Type::Number => {
            let text = *rng.pick(&["0", "-1", "1.5", "1e3", "18446744073709551616", "0.1"]);
            serde_json::from_str(text).unwrap_or(J::Null)
        }
        Type::List(element) | Type::Set(element) => J::Array(
            (0..rng.short_len(5))
                .map(|_| json_for(rng, element, depth))
                .collect(),
        ),
        Type::Map(element) => J::Object(
            (0..rng.short_len(4))
                .map(|_| (string(rng), json_for(rng, element, depth)))
                .collect(),
        ),
        Type::Object(attributes) => {
            let mut object = serde_json::Map::new();
            for (name, attr) in attributes {
                if !rng.one_in(6) {
                    object.insert(name.clone(), json_for(rng, attr, depth));
                }
            }
            if rng.one_in(8) {
                object.insert("unexpected".into(), J::Bool(true));
            }
            J::Object(object)
        }
        Type::Tuple(types) => J::Array(types.iter().map(|t| json_for(rng, t, depth)).collect()),
        Type::Dynamic => {
            let concrete = if depth == 0 {
                Type::Bool
            } else {
                random_type(rng, 2)
            };
            json!({"value": json_for(rng, &concrete, depth), "type": concrete.to_json()})
        }
    }
}

fn random_type(rng: &mut Rng, depth: usize) -> Type {
    let leaf = [Type::String, Type::Number, Type::Bool, Type::Dynamic];
    if depth == 0 || rng.one_in(2) {
        return rng.pick(&leaf).clone();
    }
    let inner = |rng: &mut Rng| random_type(rng, depth - 1);
    match rng.below(5) {
        0 => Type::list(inner(rng)),
        1 => Type::set(inner(rng)),
        2 => Type::map(inner(rng)),
        3 => Type::Tuple((0..rng.below(3)).map(|_| inner(rng)).collect()),
        _ => Type::object(
            ["a", "b", "c"]
                .into_iter()
                .take(rng.between(1, 3))
                .map(|name| (name, inner(rng)))
                .collect::<Vec<_>>(),
        ),
    }
}

fn string(rng: &mut Rng) -> String {
    let options = [
        "",
        "web",
        "app.example.com",
        "release",
        "ü",
        "\u{0}",
        "a/b",
        "http://localhost:4000",
    ];
    (*rng.pick(&options)).to_string()
}

fn number(rng: &mut Rng) -> Mp {
    match rng.below(8) {
        0 => Mp::from(rng.next_u64()),
        1 => Mp::from(rng.next_u64() as i64),
        2 => Mp::from(rng.below(200) as i64 - 100),
        3 => Mp::F32(f32::from_bits(rng.next_u64() as u32)),
        4 => Mp::F64(f64::from_bits(rng.next_u64())),
        5 => Mp::F64(*rng.pick(&[0.1, -0.0, 1e308, 5e-324, 2.5])),
        _ => {
            let text = *rng.pick(&[
                "0.1", "1e4000", "1e4001", "-1e-3999", "12.50", "+5", ".5", "1e", "nan", "",
            ]);
            Mp::from(text)
        }
    }
}

/// A refinements payload (msgpack map) for an unknown of ext type 12.
fn refinements(rng: &mut Rng) -> Vec<u8> {
    let entries: Vec<(Mp, Mp)> = (0..rng.short_len(4))
        .map(|_| {
            let key = Mp::from(rng.below(8) as u64);
            (key, any_msgpack(rng, 1))
        })
        .collect();
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &Mp::Map(entries));
    out
}

fn any_msgpack(rng: &mut Rng, depth: usize) -> Mp {
    let choice = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Mp::Nil,
        1 => Mp::Boolean(rng.one_in(2)),
        2 => number(rng),
        3 => Mp::from(string(rng)),
        4 => {
            let len = rng.short_len(16);
            Mp::Binary(rng.bytes(len))
        }
        5 => {
            let code = rng.byte() as i8;
            let len = rng.short_len(4).max(1);
            Mp::Ext(code, rng.bytes(len))
        }
        6 => Mp::Array(
            (0..rng.short_len(4))
                .map(|_| any_msgpack(rng, depth - 1))
                .collect(),
        ),
        _ => Mp::Map(
            (0..rng.short_len(4))
                .map(|_| (any_msgpack(rng, 0), any_msgpack(rng, depth - 1)))
                .collect(),
        ),
    }
}
