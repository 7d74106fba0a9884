//! Fuzz target for the control API's body reading: bytes and a content type go through
//! `JsonBody` (media type, 1 MiB limit, JSON) and then the contract's validation, as the create
//! and replace handlers do. Every rejection is a 400, 413 or 415 whose body openapi.json allows;
//! a 400 is for a body that is not JSON, repeats a member name, or breaks the contract, and
//! points at a field of the body (or at a missing member of one). Replays
//! `tests/fuzz-corpus/api_body/`, then runs for `POSTERN_FUZZ_SECONDS` (see `postern-fuzzing`).
//!
//! An input is one selector byte (the content type, modulo the list below) and the body.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::error::ApiError;
use super::request::JsonBody;
use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use postern_fuzzing::json::{JsonGen, Shape, perturb};
use postern_fuzzing::{Fuzz, read_corpus};
use postern_schema::api::{ApiErrorBody, HostnameSpec, PolicySpec, TunnelSpec};
use postern_schema::openapi::ApiContract;
use postern_schema::validate::{Contract as Validated, validate};
use serde_json::Value;

/// The API's body limit (1 MiB).
const MAX_BODY: usize = 1024 * 1024;

/// Content types, picked by the first byte of an input; `None` sends no header.
const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    Some("application/merge-patch+json"),
    Some("text/plain"),
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/jsonx"),
    Some(" application/json ;"),
    Some("application/json, text/plain"),
];

/// The three writes whose bodies are checked, with the path openapi.json knows them by.
const WRITES: &[(&str, &str)] = &[
    ("POST", "/v1/tunnels"),
    ("POST", "/v1/policies"),
    ("PUT", "/v1/hostnames/app.example.com"),
];

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/api_body")
}

#[test]
fn api_body() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let contract = Contract::load();
    let generator = JsonGen::new(
        [
            "name",
            "labels",
            "mode",
            "allow_ips",
            "jwt",
            "hostname",
            "service",
            "tunnel_id",
            "routes",
            "selector",
            "weight",
            "origin",
        ],
        ["web", "release", "app.example.com", "http://localhost:4000"],
    );
    let shape = Shape::OneOf(vec![
        Shape::Object(vec![
            ("name", Shape::Str(&["web", "Web"])),
            ("labels", Shape::map(&["release"], Shape::Str(&["stable"]))),
        ]),
        Shape::Object(vec![
            ("hostname", Shape::Str(&["app.example.com"])),
            ("service", Shape::Str(&["http://localhost:4000"])),
            (
                "tunnel_id",
                Shape::Str(&["00000000-0000-4000-8000-000000000000"]),
            ),
        ]),
        Shape::Any,
    ]);
    let documents: Vec<Value> = read_corpus(&corpus())
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes.get(1..)?).ok())
        .collect();
    Fuzz::new("api_body", corpus())
        .generated_percent(60)
        .max_len(MAX_BODY + 2)
        .dictionary([
            "\"name\"", "{", "}", "[", "]", "\\u0000", "\\ud800", "1e999",
        ])
        .run(
            |rng| {
                let mut input = vec![rng.byte()];
                if rng.one_in(400) {
                    // Over the limit by one byte, or just under it.
                    let len = if rng.one_in(2) {
                        MAX_BODY + 1
                    } else {
                        MAX_BODY - 10
                    };
                    input.push(b'"');
                    input.resize(len, b'a');
                    input.push(b'"');
                } else if rng.one_in(2) && !documents.is_empty() {
                    let base = rng.pick(&documents);
                    let document = perturb(rng, base, &generator);
                    input.extend(serde_json::to_vec(&document).unwrap_or_default());
                } else {
                    input.extend(generator.document(rng, &shape).into_bytes());
                }
                input
            },
            |bytes| runtime.block_on(check(&contract, bytes)),
        );
}

/// openapi.json, and the answers already checked against it. Compiling the response schema is
/// slow, so each kind of answer (operation, status, error code) is checked in full once; every
/// answer still has to decode as the error body.
struct Contract {
    api: ApiContract,
    seen: RefCell<BTreeSet<(String, u16, String)>>,
}

impl Contract {
    fn load() -> Self {
        Self {
            api: ApiContract::load().expect("openapi.json loads"),
            seen: RefCell::default(),
        }
    }

    fn check_response(&self, method: &str, path: &str, status: u16, answer: &[u8]) {
        let body: ApiErrorBody = serde_json::from_slice(answer)
            .unwrap_or_else(|e| panic!("{status}: not an error body: {e}"));
        let code = serde_json::to_string(&body.error.code).unwrap_or_default();
        let key = (format!("{method} {path}"), status, code);
        if self.seen.borrow().contains(&key) {
            return;
        }
        self.api
            .check_response(method, path, status, answer)
            .unwrap_or_else(|problem| panic!("the answer breaks openapi.json: {problem}"));
        self.seen.borrow_mut().insert(key);
    }
}

async fn check(contract: &Contract, bytes: &[u8]) {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let (method, path) = WRITES[usize::from(selector) % WRITES.len()];
    let mut request = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body.to_vec())).expect("a request");
    let document = match JsonBody::from_request(request, &()).await {
        Ok(JsonBody(document)) => document,
        Err(error) => {
            let (status, answer) = answer(error).await;
            contract.check_response(method, path, status.as_u16(), &answer);
            let expected = match status {
                StatusCode::PAYLOAD_TOO_LARGE => body.len() > MAX_BODY,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => true,
                StatusCode::BAD_REQUEST => match serde_json::from_slice::<Value>(body) {
                    Err(_) => true,
                    // JSON that repeats a member name: refused, pointing at the repetition.
                    Ok(document) => repeats_a_member(&answer, &document),
                },
                _ => false,
            };
            assert!(expected, "{status} for a body of {} bytes", body.len());
            return;
        }
    };
    assert!(body.len() <= MAX_BODY, "a body over the limit was read");
    check_spec::<TunnelSpec>(contract, "POST", "/v1/tunnels", &document).await;
    check_spec::<PolicySpec>(contract, "POST", "/v1/policies", &document).await;
    check_spec::<HostnameSpec>(contract, "PUT", "/v1/hostnames/app.example.com", &document).await;
}

/// What the handler answers for a body that breaks the contract.
async fn check_spec<T: Validated>(contract: &Contract, method: &str, path: &str, document: &Value) {
    let Err(error) = validate::<T>(document) else {
        return;
    };
    let (status, answer) = answer(ApiError::from(error)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    contract.check_response(method, path, status.as_u16(), &answer);
    let body: ApiErrorBody = serde_json::from_slice(&answer).expect("an error body");
    let pointer = body.error.path.expect("a 400 carries a path");
    let located = document.pointer(&pointer).is_some()
        || pointer
            .rsplit_once('/')
            .is_some_and(|(parent, _)| document.pointer(parent).is_some_and(Value::is_object));
    assert!(located, "error path {pointer:?} is not in the body");
}

/// Is `answer` the refusal of a repeated member name? Its path points into the body as written
/// (perhaps into the first of two members, which `document`, keeping the last, no longer has),
/// so only its first step is checked against `document`.
fn repeats_a_member(answer: &[u8], document: &Value) -> bool {
    let Ok(body) = serde_json::from_slice::<ApiErrorBody>(answer) else {
        return false;
    };
    let path = body.error.path.unwrap_or_default();
    let first_step = match path.match_indices('/').nth(1) {
        Some((end, _)) => &path[..end],
        None => &path,
    };
    body.error.message.contains("appears twice")
        && !path.is_empty()
        && document.pointer(first_step).is_some()
}

async fn answer(error: ApiError) -> (StatusCode, Vec<u8>) {
    let response: Response = error.into_response();
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    (status, bytes)
}
