//! The tfplugin6 service in process (no sockets), with the test provider: wire-level
//! behaviour Terraform relies on, and what happens on bad input (diagnostics, never a
//! gRPC error or a panic).

mod support;

use std::sync::Arc;

use terraform_provider_postern::framework::{Runtime, Type, Value};
use terraform_provider_postern::protocol::codec;
use terraform_provider_postern::protocol::proto::tfplugin6::provider_server::Provider as _;
use terraform_provider_postern::protocol::proto::tfplugin6::{
    self as tf, DynamicValue, diagnostic::Severity,
};
use terraform_provider_postern::protocol::server::ProviderService;
use tonic::Request;

struct Harness {
    service: ProviderService<support::TestProvider>,
    thing: Type,
    _dir: tempfile::TempDir,
}

async fn configured() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(Runtime::new(support::registry()));
    let service = ProviderService::new(runtime.clone());
    let provider_type = runtime.provider_type();
    let config = Value::object([
        ("endpoint", Value::Null),
        (
            "store",
            Value::from(dir.path().join("store.json").display().to_string()),
        ),
    ]);
    let resp = service
        .configure_provider(Request::new(tf::configure_provider::Request {
            terraform_version: "1.11.4".into(),
            config: Some(codec::encode(&config, &provider_type).expect("encode")),
            client_capabilities: None,
        }))
        .await
        .expect("ConfigureProvider")
        .into_inner();
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);
    let thing = runtime
        .resource_schema("postern_thing")
        .map(|s| s.value_type())
        .expect("thing schema");
    Harness {
        service,
        thing,
        _dir: dir,
    }
}

fn msgpack(bytes: &[u8]) -> Option<DynamicValue> {
    Some(DynamicValue {
        msgpack: bytes.to_vec(),
        json: Vec::new(),
    })
}

fn config(thing: &Type, pairs: &[(&str, Value)]) -> Value {
    let mut value = Value::null_object(thing);
    for (name, v) in pairs {
        value.set_attribute(*name, v.clone());
    }
    value
}

#[tokio::test]
async fn schema_lists_every_type_with_capabilities() {
    let h = configured().await;
    let schema = h
        .service
        .get_provider_schema(Request::new(tf::get_provider_schema::Request {}))
        .await
        .expect("schema")
        .into_inner();
    assert!(schema.resource_schemas.contains_key("postern_thing"));
    assert!(schema.data_source_schemas.contains_key("postern_thing"));
    assert!(
        schema
            .ephemeral_resource_schemas
            .contains_key("postern_token")
    );
    let thing = &schema.resource_schemas["postern_thing"];
    let secret = thing
        .block
        .as_ref()
        .and_then(|b| b.attributes.iter().find(|a| a.name == "secret"))
        .expect("secret attribute");
    assert!(secret.write_only && secret.sensitive && secret.optional);
    let metadata = h
        .service
        .get_metadata(Request::new(tf::get_metadata::Request {}))
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(metadata.resources.len(), 1);
}

#[tokio::test]
async fn plan_create_answers_unknown_for_computed_attributes_on_the_wire() {
    let h = configured().await;
    // name = "x-${...}": a refined unknown string with prefix "x-".
    let cfg = config(&h.thing, &[("zone", Value::from("z1"))]);
    let mut encoded = codec::encode_msgpack(&cfg, &h.thing).expect("encode");
    let name_at = encoded
        .windows(5)
        .position(|w| w == b"\xa4name")
        .expect("name key")
        + 5;
    assert_eq!(encoded[name_at], 0xc0, "name starts null");
    encoded.splice(
        name_at..=name_at,
        [0xc7, 0x07, 0x0c, 0x82, 0x01, 0xc2, 0x02, 0xa2, b'x', b'-'],
    );
    let resp = h
        .service
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: "postern_thing".into(),
            prior_state: msgpack(&[0xc0]),
            proposed_new_state: msgpack(&encoded),
            config: msgpack(&encoded),
            prior_private: Vec::new(),
            provider_meta: None,
            client_capabilities: None,
        }))
        .await
        .expect("plan")
        .into_inner();
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);
    let planned = codec::decode(resp.planned_state.as_ref(), &h.thing).expect("decode plan");
    assert_eq!(planned.get("id"), Some(&Value::Unknown));
    assert_eq!(planned.get("name"), Some(&Value::Unknown));
    assert_eq!(planned.get("mode"), Some(&Value::from("enforce")));
    assert!(
        resp.requires_replace.is_empty(),
        "no replace paths on create"
    );
    let bytes = resp.planned_state.map(|d| d.msgpack).unwrap_or_default();
    assert!(
        bytes.windows(6).any(|w| w == b"\xa2id\xd4\x00\x00"),
        "id is written as d4 00 00"
    );
}

#[tokio::test]
async fn bad_input_becomes_diagnostics_not_errors() {
    let h = configured().await;
    let cases: Vec<(&str, tf::validate_resource_config::Request)> = vec![
        (
            "unknown type",
            tf::validate_resource_config::Request {
                type_name: "postern_nope".into(),
                config: msgpack(&[0xc0]),
                client_capabilities: None,
            },
        ),
        (
            "garbage msgpack",
            tf::validate_resource_config::Request {
                type_name: "postern_thing".into(),
                config: msgpack(&[0x92, 0xa1]),
                client_capabilities: None,
            },
        ),
        (
            "wrong shape",
            tf::validate_resource_config::Request {
                type_name: "postern_thing".into(),
                config: msgpack(&[0x81, 0xa4, b'n', b'a', b'm', b'e', 0x01]),
                client_capabilities: None,
            },
        ),
    ];
    for (name, req) in cases {
        let resp = h
            .service
            .validate_resource_config(Request::new(req))
            .await
            .unwrap_or_else(|s| panic!("{name}: gRPC error {s}"))
            .into_inner();
        assert!(
            resp.diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error as i32),
            "{name}: expected an error diagnostic"
        );
    }
}

#[tokio::test]
async fn validation_errors_carry_attribute_paths() {
    let h = configured().await;
    let cfg = config(
        &h.thing,
        &[("name", Value::from("Bad Name")), ("zone", Value::Unknown)],
    );
    let resp = h
        .service
        .validate_resource_config(Request::new(tf::validate_resource_config::Request {
            type_name: "postern_thing".into(),
            config: Some(codec::encode(&cfg, &h.thing).expect("encode")),
            client_capabilities: None,
        }))
        .await
        .expect("validate")
        .into_inner();
    assert_eq!(resp.diagnostics.len(), 1);
    let path = resp.diagnostics[0].attribute.clone().unwrap_or_default();
    assert_eq!(
        path.steps[0].selector,
        Some(tf::attribute_path::step::Selector::AttributeName(
            "name".into()
        ))
    );
}

#[tokio::test]
async fn stored_state_is_upgraded_exactly() {
    let h = configured().await;
    // As Terraform stores it: numbers as JSON numbers, dynamic as {value, type}, and an
    // attribute a newer schema dropped.
    let json = br#"{"id":"t-1","name":"a","zone":"z","size":123456789012345678901234567890.5,
        "labels":{},"mode":"enforce","created_at":"c","revision":1,"secret":null,
        "secret_length":null,"origin":null,"routes":null,"tags":["b","a"],
        "extra":{"value":{"n":1},"type":["object",{"n":"number"}]},"dropped":true}"#;
    let resp = h
        .service
        .upgrade_resource_state(Request::new(tf::upgrade_resource_state::Request {
            type_name: "postern_thing".into(),
            version: 0,
            raw_state: Some(tf::RawState {
                json: json.to_vec(),
                flatmap: Default::default(),
            }),
        }))
        .await
        .expect("upgrade")
        .into_inner();
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);
    let state = codec::decode(resp.upgraded_state.as_ref(), &h.thing).expect("decode");
    assert_eq!(
        state
            .get("size")
            .and_then(Value::as_number)
            .map(ToString::to_string),
        Some("123456789012345678901234567890.5".to_owned())
    );
    assert_eq!(
        state.get("extra").and_then(|e| e.get("n")),
        Some(&Value::from(1))
    );

    let newer = h
        .service
        .upgrade_resource_state(Request::new(tf::upgrade_resource_state::Request {
            type_name: "postern_thing".into(),
            version: 7,
            raw_state: Some(tf::RawState {
                json: json.to_vec(),
                flatmap: Default::default(),
            }),
        }))
        .await
        .expect("upgrade")
        .into_inner();
    assert!(
        newer
            .diagnostics
            .iter()
            .any(|d| d.summary.contains("newer provider"))
    );
}

#[tokio::test]
async fn destroy_plans_null_and_unimplemented_features_answer_politely() {
    let h = configured().await;
    let resp = h
        .service
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: "postern_thing".into(),
            prior_state: Some(
                codec::encode(&config(&h.thing, &[("id", Value::from("t-1"))]), &h.thing)
                    .expect("encode"),
            ),
            proposed_new_state: msgpack(&[0xc0]),
            config: msgpack(&[0xc0]),
            prior_private: b"p".to_vec(),
            provider_meta: None,
            client_capabilities: None,
        }))
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(resp.planned_state.map(|d| d.msgpack), Some(vec![0xc0]));
    assert_eq!(resp.planned_private, b"p".to_vec());

    let moved = h
        .service
        .move_resource_state(Request::new(tf::move_resource_state::Request::default()))
        .await
        .expect("move")
        .into_inner();
    assert_eq!(moved.diagnostics.len(), 1);
    let called = h
        .service
        .call_function(Request::new(tf::call_function::Request::default()))
        .await
        .expect("call")
        .into_inner();
    assert!(called.error.is_some());
    h.service
        .stop_provider(Request::new(tf::stop_provider::Request {}))
        .await
        .expect("stop");
}
