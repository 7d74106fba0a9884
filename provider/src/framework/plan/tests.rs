//! Table-driven tests of standard planning: defaults, stable computed values,
//! unknowns, write-only attributes and requires-replace.

use super::*;
use crate::framework::schema::Attributes;
use crate::framework::types::Type;

fn schema() -> Schema {
    Schema::new("test resource")
        .attribute("id", Attribute::string("id").computed().stable())
        .attribute("name", Attribute::string("name").required())
        .attribute(
            "labels",
            Attribute::map(Type::String, "labels")
                .optional()
                .computed()
                .default(Value::map::<String>([])),
        )
        .attribute(
            "mode",
            Attribute::string("mode")
                .optional()
                .computed()
                .default("enforce"),
        )
        .attribute(
            "hostname",
            Attribute::string("hostname").required().requires_replace(),
        )
        .attribute(
            "created_at",
            Attribute::string("created").computed().stable(),
        )
        .attribute("version", Attribute::number("version").computed())
        .attribute(
            "secret",
            Attribute::string("secret").optional().write_only(),
        )
        .attribute(
            "origin",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "connect_timeout_ms",
                        Attribute::number("timeout")
                            .optional()
                            .computed()
                            .default(5000),
                    )
                    .with("server_name", Attribute::string("sni").optional()),
                "origin",
            )
            .optional(),
        )
        .attribute(
            "routes",
            Attribute::list_nested(
                Attributes::new()
                    .with("weight", Attribute::number("weight").required())
                    .with("id", Attribute::string("route id").computed().stable())
                    .with(
                        "pool",
                        Attribute::string("pool").optional().requires_replace(),
                    ),
                "routes",
            )
            .optional(),
        )
}

fn obj(entries: &[(&str, Value)]) -> Value {
    Value::object(entries.iter().map(|(k, v)| (*k, v.clone())))
}

/// Terraform's proposed new state: config values, except computed attributes left
/// unset in config, which keep their prior value (recursing into nested objects).
fn propose(attributes: &Attributes, prior: &Value, config: &Value) -> Value {
    let mut out = Value::null_object(&attributes.object_type());
    for (name, attr) in attributes.iter() {
        let c = config.get(name).cloned().unwrap_or(Value::Null);
        let p = prior.get(name).cloned().unwrap_or(Value::Null);
        let value = if attr.is_computed() && c.is_null() {
            p
        } else {
            match (&attr.kind, &c) {
                (AttributeKind::Nested(Nesting::Single, nested), Value::Object(_)) => {
                    propose(nested, &p, &c)
                }
                (AttributeKind::Nested(Nesting::List, nested), Value::List(elements)) => {
                    let prior_elements = p.as_elements().unwrap_or(&[]).to_vec();
                    Value::List(
                        elements
                            .iter()
                            .enumerate()
                            .map(|(i, e)| {
                                propose(nested, prior_elements.get(i).unwrap_or(&Value::Null), e)
                            })
                            .collect(),
                    )
                }
                _ => c,
            }
        };
        out.set_attribute(name, value);
    }
    out
}

/// A full configuration object: every attribute null except `name` and `hostname`.
fn config(name: &str, hostname: &str) -> Value {
    let mut full = Value::null_object(&schema().value_type());
    full.set_attribute("name", name);
    full.set_attribute("hostname", hostname);
    full
}

fn with(mut value: Value, name: &str, attr: impl Into<Value>) -> Value {
    value.set_attribute(name, attr);
    value
}

fn prior_state() -> Value {
    let mut state = config("web", "app.example.com");
    state.set_attribute("id", "t-1");
    state.set_attribute("labels", Value::map::<String>([]));
    state.set_attribute("mode", "enforce");
    state.set_attribute("created_at", "2026-01-01T00:00:00Z");
    state.set_attribute("version", 3);
    state
}

struct Case {
    name: &'static str,
    prior: Option<Value>,
    config: Value,
    want: Vec<(&'static str, Value)>,
    want_replace: Vec<&'static str>,
}

#[test]
fn standard_planning() {
    let cases = vec![
        Case {
            name: "create marks computed unknown and fills defaults",
            prior: None,
            config: with(config("web", "a.example.com"), "secret", "s3cret"),
            want: vec![
                ("id", Value::Unknown),
                ("created_at", Value::Unknown),
                ("version", Value::Unknown),
                ("labels", Value::map::<String>([])),
                ("mode", "enforce".into()),
                ("secret", Value::Null),
                ("origin", Value::Null),
                ("name", "web".into()),
            ],
            want_replace: vec![],
        },
        Case {
            name: "update without change plans the prior state",
            prior: Some(prior_state()),
            config: config("web", "app.example.com"),
            want: vec![
                ("id", "t-1".into()),
                ("version", 3.into()),
                ("created_at", "2026-01-01T00:00:00Z".into()),
            ],
            want_replace: vec![],
        },
        Case {
            name: "update keeps stable values and re-computes the rest",
            prior: Some(prior_state()),
            config: config("web2", "app.example.com"),
            want: vec![
                ("name", "web2".into()),
                ("id", "t-1".into()),
                ("created_at", "2026-01-01T00:00:00Z".into()),
                ("version", Value::Unknown),
            ],
            want_replace: vec![],
        },
        Case {
            name: "changing a requires-replace attribute is reported",
            prior: Some(prior_state()),
            config: config("web", "other.example.com"),
            want: vec![("hostname", "other.example.com".into())],
            want_replace: vec!["hostname"],
        },
        Case {
            name: "an explicit value beats the default",
            prior: Some(prior_state()),
            config: with(config("web", "app.example.com"), "mode", "report"),
            want: vec![("mode", "report".into()), ("version", Value::Unknown)],
            want_replace: vec![],
        },
        Case {
            name: "unknown config stays unknown and stable values survive",
            prior: Some(prior_state()),
            config: with(config("web", "app.example.com"), "name", Value::Unknown),
            want: vec![
                ("name", Value::Unknown),
                ("id", "t-1".into()),
                ("version", Value::Unknown),
            ],
            want_replace: vec![],
        },
        Case {
            name: "nested defaults are filled",
            prior: None,
            config: with(
                config("web", "a.example.com"),
                "origin",
                obj(&[
                    ("server_name", "x".into()),
                    ("connect_timeout_ms", Value::Null),
                ]),
            ),
            want: vec![(
                "origin",
                obj(&[
                    ("server_name", "x".into()),
                    ("connect_timeout_ms", 5000.into()),
                ]),
            )],
            want_replace: vec![],
        },
    ];
    let schema = schema();
    for case in cases {
        let proposed = propose(
            &schema.attributes,
            case.prior.as_ref().unwrap_or(&Value::Null),
            &case.config,
        );
        let planned = plan_standard(&schema, case.prior.as_ref(), &case.config, &proposed);
        for (attr, want) in &case.want {
            assert_eq!(
                planned.get(attr),
                Some(want),
                "{}: attribute {attr} in {planned}",
                case.name
            );
        }
        if let Some(prior) = &case.prior {
            if case.name.starts_with("update without change") {
                assert_eq!(&planned, prior, "{}", case.name);
            }
            let replace: Vec<String> = requires_replace(&schema, prior, &planned)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(replace, case.want_replace, "{}", case.name);
        }
    }
}

#[test]
fn list_nested_elements_correlate_by_index() {
    let schema = schema();
    let route = |weight: i64, id: Value, pool: Option<&str>| {
        obj(&[
            ("weight", weight.into()),
            ("id", id),
            ("pool", pool.map(Value::from).unwrap_or(Value::Null)),
        ])
    };
    let prior = with(
        prior_state(),
        "routes",
        Value::List(vec![route(90, "r-1".into(), Some("a"))]),
    );
    let config = with(
        config("web", "app.example.com"),
        "routes",
        Value::List(vec![
            route(80, Value::Null, Some("a")),
            route(20, Value::Null, Some("b")),
        ]),
    );
    let proposed = propose(&schema.attributes, &prior, &config);
    let planned = plan_standard(&schema, Some(&prior), &config, &proposed);
    let routes = planned
        .get("routes")
        .and_then(Value::as_elements)
        .unwrap_or(&[]);
    assert_eq!(routes.len(), 2);
    assert_eq!(
        routes[0].get("id"),
        Some(&Value::from("r-1")),
        "stable id kept"
    );
    assert_eq!(
        routes[1].get("id"),
        Some(&Value::Unknown),
        "new element computed"
    );
    let replace: Vec<String> = requires_replace(&schema, &prior, &planned)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(replace, vec!["routes[1].pool"]);
}

#[test]
fn write_only_attributes_are_nulled_everywhere() {
    let schema = schema();
    let mut state = with(prior_state(), "secret", "leak");
    null_write_only(&schema.attributes, &mut state);
    assert_eq!(state.get("secret"), Some(&Value::Null));
}
