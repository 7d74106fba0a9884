//! Table-driven tests of the DynamicValue codec: every cty type, null, unknowns
//! (plain, refined, nested), exact numbers, dynamic values, exact bytes, and JSON.

use super::*;

/// Bytes from a hex string with optional spaces; `'…'` inserts literal text.
fn bytes(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('\'') {
            let end = after.find('\'').unwrap_or(after.len());
            out.extend_from_slice(&after.as_bytes()[..end]);
            rest = after.get(end + 1..).unwrap_or("");
        } else if rest.len() >= 2 {
            let byte =
                u8::from_str_radix(&rest[..2], 16).unwrap_or_else(|_| panic!("bad hex {rest}"));
            out.push(byte);
            rest = &rest[2..];
        } else {
            break;
        }
    }
    out
}

fn num(text: &str) -> Value {
    Value::Number(Number::parse(text).unwrap_or_else(|e| panic!("{e}")))
}

fn s(text: &str) -> Value {
    Value::from(text)
}

fn dynamic(ty: Type, value: Value) -> Value {
    Value::Dynamic(Box::new(ty), Box::new(value))
}

fn object_type() -> Type {
    Type::object([("a", Type::String), ("b", Type::Number)])
}

#[test]
fn decodes_every_shape() {
    let cases: Vec<(&str, &str, Type, Value)> = vec![
        ("null string", "c0", Type::String, Value::Null),
        ("null object", "c0", object_type(), Value::Null),
        ("unknown", "d4 00 00", Type::String, Value::Unknown),
        (
            "refined unknown with prefix",
            "c7 07 0c 82 01 c2 02 a2 78 2d",
            Type::String,
            Value::Unknown,
        ),
        (
            "unknown of another ext type",
            "d5 05 01 02",
            Type::Number,
            Value::Unknown,
        ),
        (
            "unknown list",
            "d4 00 00",
            Type::list(Type::String),
            Value::Unknown,
        ),
        ("string", "a1 78", Type::String, s("x")),
        ("str8 string", "d9 01 78", Type::String, s("x")),
        ("true", "c3", Type::Bool, Value::Bool(true)),
        ("false", "c2", Type::Bool, Value::Bool(false)),
        ("fixint", "07", Type::Number, num("7")),
        ("negative fixint", "ff", Type::Number, num("-1")),
        ("uint16", "cd 01 2c", Type::Number, num("300")),
        (
            "uint64 max",
            "cf ff ff ff ff ff ff ff ff",
            Type::Number,
            num("18446744073709551615"),
        ),
        (
            "int64 min",
            "d3 80 00 00 00 00 00 00 00",
            Type::Number,
            num("-9223372036854775808"),
        ),
        ("f32", "ca 3f 00 00 00", Type::Number, num("0.5")),
        (
            "f64 1.5",
            "cb 3f f8 00 00 00 00 00 00",
            Type::Number,
            num("1.5"),
        ),
        (
            "f64 is read exactly",
            "cb 3f b9 99 99 99 99 99 9a",
            Type::Number,
            num("0.1000000000000000055511151231257827021181583404541015625"),
        ),
        ("fraction as string", "a3 '0.1'", Type::Number, num("0.1")),
        (
            "big integer as string",
            "be '123456789012345678901234567890'",
            Type::Number,
            num("123456789012345678901234567890"),
        ),
        (
            "list with a nested unknown",
            "92 a1 61 d4 00 00",
            Type::list(Type::String),
            Value::List(vec![s("a"), Value::Unknown]),
        ),
        (
            "empty list",
            "90",
            Type::list(Type::String),
            Value::List(vec![]),
        ),
        (
            "set drops duplicates",
            "93 a1 61 a1 61 a1 62",
            Type::set(Type::String),
            Value::set([s("a"), s("b")]),
        ),
        (
            "map",
            "82 a1 6b c3 a1 6c d4 00 00",
            Type::map(Type::Bool),
            Value::map([("k", Value::Bool(true)), ("l", Value::Unknown)]),
        ),
        (
            "object with a nested unknown",
            "82 a1 61 d4 00 00 a1 62 01",
            object_type(),
            Value::object([("a", Value::Unknown), ("b", num("1"))]),
        ),
        (
            "object missing an attribute reads it as null",
            "81 a1 61 a1 78",
            object_type(),
            Value::object([("a", s("x")), ("b", Value::Null)]),
        ),
        (
            "tuple",
            "92 a1 78 c3",
            Type::Tuple(vec![Type::String, Type::Bool]),
            Value::Tuple(vec![s("x"), Value::Bool(true)]),
        ),
        (
            "list of objects",
            "91 82 a1 61 a1 78 a1 62 c0",
            Type::list(object_type()),
            Value::List(vec![Value::object([("a", s("x")), ("b", Value::Null)])]),
        ),
        (
            "dynamic string",
            "92 c4 08 '\"string\"' a1 78",
            Type::Dynamic,
            dynamic(Type::String, s("x")),
        ),
        (
            "dynamic typed null",
            "92 c4 08 '\"string\"' c0",
            Type::Dynamic,
            dynamic(Type::String, Value::Null),
        ),
        ("dynamic untyped null", "c0", Type::Dynamic, Value::Null),
        (
            "dynamic untyped unknown",
            "d4 00 00",
            Type::Dynamic,
            Value::Unknown,
        ),
        (
            "dynamic object",
            "92 c4 19 '[\"object\",{\"n\":\"number\"}]' 81 a1 6e 05",
            Type::Dynamic,
            dynamic(
                Type::object([("n", Type::Number)]),
                Value::object([("n", num("5"))]),
            ),
        ),
        (
            "dynamic attribute inside an object",
            "81 a1 64 92 c4 06 '\"bool\"' c3",
            Type::object([("d", Type::Dynamic)]),
            Value::object([("d", dynamic(Type::Bool, Value::Bool(true)))]),
        ),
    ];
    for (name, hex, ty, want) in cases {
        let got = decode_msgpack(&bytes(hex), &ty);
        assert_eq!(got.as_ref(), Ok(&want), "{name}");
        if let Ok(Value::Dynamic(t, _)) = &got {
            assert_eq!(t.as_ref(), &want.infer_type(), "{name}: dynamic type kept");
        }
    }
}

#[test]
fn encodes_exact_bytes() {
    let cases: Vec<(&str, Value, Type, &str)> = vec![
        ("null", Value::Null, Type::String, "c0"),
        ("whole null object", Value::Null, object_type(), "c0"),
        ("unknown", Value::Unknown, Type::Number, "d4 00 00"),
        ("string", s("x"), Type::String, "a1 78"),
        ("bool", Value::Bool(true), Type::Bool, "c3"),
        ("small int", num("1"), Type::Number, "01"),
        ("negative int", num("-1"), Type::Number, "ff"),
        ("uint16", num("300"), Type::Number, "cd 01 2c"),
        (
            "fraction as exact string",
            num("0.1"),
            Type::Number,
            "a3 '0.1'",
        ),
        (
            "beyond i64 as exact string",
            num("18446744073709551616"),
            Type::Number,
            "b4 '18446744073709551616'",
        ),
        (
            "every object attribute present, sorted",
            Value::object([("b", Value::Null), ("a", s("x"))]),
            object_type(),
            "82 a1 61 a1 78 a1 62 c0",
        ),
        (
            "attributes missing from the value are written as nil",
            Value::object([("a", s("x"))]),
            object_type(),
            "82 a1 61 a1 78 a1 62 c0",
        ),
        (
            "list",
            Value::List(vec![s("a"), Value::Unknown]),
            Type::list(Type::String),
            "92 a1 61 d4 00 00",
        ),
        (
            "set removes duplicates",
            Value::Set(vec![s("a"), s("a")]),
            Type::set(Type::String),
            "91 a1 61",
        ),
        (
            "map",
            Value::map([("k", Value::Bool(true))]),
            Type::map(Type::Bool),
            "81 a1 6b c3",
        ),
        (
            "tuple",
            Value::Tuple(vec![s("x"), Value::Bool(false)]),
            Type::Tuple(vec![Type::String, Type::Bool]),
            "92 a1 78 c2",
        ),
        (
            "dynamic with its type",
            dynamic(Type::String, s("x")),
            Type::Dynamic,
            "92 c4 08 '\"string\"' a1 78",
        ),
        (
            "dynamic from a plain value infers the type",
            Value::Bool(true),
            Type::Dynamic,
            "92 c4 06 '\"bool\"' c3",
        ),
        ("dynamic untyped null", Value::Null, Type::Dynamic, "c0"),
        (
            "dynamic untyped unknown",
            Value::Unknown,
            Type::Dynamic,
            "d4 00 00",
        ),
        (
            "dynamic typed null is wrapped",
            dynamic(Type::String, Value::Null),
            Type::Dynamic,
            "92 c4 08 '\"string\"' c0",
        ),
        (
            "dynamic value in a typed slot is unwrapped",
            dynamic(Type::String, s("x")),
            Type::String,
            "a1 78",
        ),
    ];
    for (name, value, ty, hex) in cases {
        assert_eq!(encode_msgpack(&value, &ty), Ok(bytes(hex)), "{name}");
    }
}

#[test]
fn values_round_trip() {
    let ty = Type::object([
        ("id", Type::String),
        ("n", Type::Number),
        ("labels", Type::map(Type::String)),
        ("ips", Type::set(Type::String)),
        (
            "routes",
            Type::list(Type::object([
                ("w", Type::Number),
                ("sel", Type::map(Type::String)),
            ])),
        ),
        ("t", Type::Tuple(vec![Type::Number, Type::Bool])),
        ("d", Type::Dynamic),
    ]);
    let values = [
        Value::null_object(&ty),
        Value::object([
            ("id", Value::Unknown),
            ("n", num("-12345678901234567890.000000000001")),
            ("labels", Value::map([("a", s("b")), ("c", Value::Unknown)])),
            ("ips", Value::set([s("10.0.0.0/8"), s("127.0.0.1/32")])),
            (
                "routes",
                Value::List(vec![
                    Value::object([
                        ("w", num("90")),
                        ("sel", Value::map([("release", s("stable"))])),
                    ]),
                    Value::object([("w", Value::Unknown), ("sel", Value::Null)]),
                ]),
            ),
            ("t", Value::Tuple(vec![num("1e-20"), Value::Null])),
            (
                "d",
                dynamic(
                    Type::list(Type::Number),
                    Value::List(vec![num("1"), num("2.5")]),
                ),
            ),
        ]),
    ];
    for value in values {
        let encoded = encode_msgpack(&value, &ty).unwrap_or_else(|e| panic!("{e}"));
        let decoded = decode_msgpack(&encoded, &ty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, value);
    }
}

#[test]
fn rejects_malformed_input_without_panicking() {
    let cases: Vec<(&str, &str, Type)> = vec![
        ("string for a number", "a1 78", Type::Number),
        ("number for a string", "01", Type::String),
        ("unsupported attribute", "81 a1 7a 01", object_type()),
        ("trailing bytes", "c0 c0", Type::String),
        ("truncated", "92 a1", Type::list(Type::String)),
        ("empty input", "", Type::String),
        ("invalid UTF-8", "a2 ff fe", Type::String),
        ("non-number string", "a3 'abc'", Type::Number),
        (
            "tuple too short",
            "91 01",
            Type::Tuple(vec![Type::Number, Type::Number]),
        ),
        ("dynamic without wrapper", "a1 78", Type::Dynamic),
        (
            "dynamic with a bad type",
            "92 c4 03 'foo' 01",
            Type::Dynamic,
        ),
        ("non-string map key", "81 01 01", Type::map(Type::Number)),
        ("infinite float", "cb 7f f0 00 00 00 00 00 00", Type::Number),
    ];
    for (name, hex, ty) in cases {
        assert!(
            decode_msgpack(&bytes(hex), &ty).is_err(),
            "{name} should fail"
        );
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = vec![0x91u8; 100_000];
    assert!(decode_msgpack(&deep, &Type::Dynamic).is_err());
}

#[test]
fn encoding_refuses_values_that_do_not_fit() {
    let cases: Vec<(&str, Value, Type)> = vec![
        ("string for number", s("x"), Type::Number),
        (
            "extra attribute",
            Value::object([("z", s("x"))]),
            object_type(),
        ),
        (
            "tuple length",
            Value::Tuple(vec![]),
            Type::Tuple(vec![Type::Bool]),
        ),
        ("list for map", Value::List(vec![]), Type::map(Type::String)),
    ];
    for (name, value, ty) in cases {
        assert!(encode_msgpack(&value, &ty).is_err(), "{name} should fail");
    }
    let err = encode_msgpack(&Value::object([("a", Value::Bool(true))]), &object_type());
    assert_eq!(
        err.map_err(|e| e.path().cloned()),
        Err(Some(AttributePath::root("a")))
    );
}

#[test]
fn refinements_are_parsed() {
    let r = read_refinements(12, &bytes("82 01 c2 02 a2 78 2d"));
    assert_eq!(r.nullable, Some(false));
    assert_eq!(r.string_prefix.as_deref(), Some("x-"));
    assert_eq!(
        read_refinements(12, &bytes("ff ff")),
        Refinements::default()
    );
    assert_eq!(read_refinements(0, &bytes("00")), Refinements::default());
}

#[test]
fn dynamic_values_pick_msgpack_then_json_then_null() {
    let ty = Type::String;
    let msgpack = DynamicValue {
        msgpack: bytes("a1 78"),
        json: br#""y""#.to_vec(),
    };
    assert_eq!(decode(Some(&msgpack), &ty), Ok(s("x")));
    let json = DynamicValue {
        msgpack: vec![],
        json: br#""y""#.to_vec(),
    };
    assert_eq!(decode(Some(&json), &ty), Ok(s("y")));
    assert_eq!(decode(Some(&DynamicValue::default()), &ty), Ok(Value::Null));
    assert_eq!(decode(None, &ty), Ok(Value::Null));
}

#[test]
fn sets_keep_every_unknown_element() {
    // cty keeps two unknowns in a set (they may turn out different); dropping one would change
    // the number of elements Terraform planned.
    let ty = Type::set(Type::String);
    let wire = bytes("92 d4 00 00 d4 00 00");
    let value = decode_msgpack(&wire, &ty).expect("decodes");
    assert_eq!(value.as_elements().map(<[Value]>::len), Some(2));
    assert_eq!(encode_msgpack(&value, &ty).expect("encodes"), wire);
    // Known duplicates still collapse.
    let known = decode_msgpack(&bytes("92 a1 78 a1 78"), &ty).expect("decodes");
    assert_eq!(known.as_elements().map(<[Value]>::len), Some(1));
}
