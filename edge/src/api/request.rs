//! Reading a request the way the contract wants: JSON bodies whose objects name each member
//! once, path parameters, query strings and `If-Match` headers whose failures are [`ApiError`]s
//! (axum's own rejections are plain text, and every answer of the API carries the contract's
//! error body).

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;

/// How much of a body over the limit is still read (and dropped) before the 413 is sent.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// How long a body over the limit is still read before the 413 is sent.
const DRAIN_FOR: Duration = Duration::from_secs(1);

/// Reads a whole body of at most `limit` bytes. A longer one, or one whose `Content-Length`
/// announces more, is a 413; before answering, a bounded further part of it is read and dropped
/// for a bounded time, so that a client still writing its body reads the 413 rather than a
/// reset connection, and a client that only announced a huge body gets its 413 after that time.
pub(crate) async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if HttpBody::size_hint(&body).lower() <= limit as u64 {
        let mut collected = Vec::new();
        loop {
            match body.frame().await {
                None => return Ok(Bytes::from(collected)),
                Some(Err(_)) => {
                    return Err(ApiError::invalid(
                        "",
                        "the body could not be read completely",
                    ));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if collected.len() + data.len() > limit {
                        break;
                    }
                    collected.extend_from_slice(&data);
                }
            }
        }
    }
    let drain = async {
        let mut drained = 0usize;
        while drained < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len()),
                None | Some(Err(_)) => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
    Err(ApiError::payload_too_large(limit))
}

/// Parses a JSON body. A member name that appears twice in one object is refused, with a
/// pointer to it: parsers disagree on which of the two counts, so the API takes neither.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        pointer: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some((pointer, name))) => Err(ApiError::invalid(
            pointer,
            format!("member {name:?} appears twice in one object; name each member once"),
        )),
        (Ok(value), None) => Ok(value),
        (Err(error), None) => Err(ApiError::invalid(
            "",
            format!("the body is not valid JSON: {error}"),
        )),
    }
}

/// Builds a `serde_json::Value` as `serde_json` does, and notes the first repeated member name
/// (with its pointer) before failing.
struct Strict<'a> {
    pointer: String,
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl Strict<'_> {
    fn child(&self, token: &str) -> Self {
        let escaped = token.replace('~', "~0").replace('/', "~1");
        Strict {
            pointer: format!("{}/{escaped}", self.pointer),
            duplicate: self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&items.len().to_string()))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let child = self.child(&name);
            if members.contains_key(&name) {
                *self.duplicate.borrow_mut() = Some((child.pointer, name));
                return Err(A::Error::custom("a member name appears twice"));
            }
            let value = map.next_value_seed(child)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// A path parameter. One that cannot be read (not UTF-8 once percent-decoded) names nothing
/// that exists: 404, as for any other unknown id.
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::not_found(format!(
                "nothing has this id ({})",
                rejection.body_text()
            ))),
        }
    }
}

/// The query string: one that does not parse is a 400 with the contract's error body.
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::invalid(
                "",
                format!("the query string is malformed: {}", rejection.body_text()),
            )),
        }
    }
}

/// The most digits a version in `If-Match` may have: every such number fits a `u64`.
const MAX_VERSION_DIGITS: usize = 19;

/// Parses an `If-Match` header as openapi.json describes it: `*` (no condition), the `ETag` as
/// sent (`"3"`), its weak form (`W/"3"`) or the bare version (`3`), at most 19 digits. Anything
/// else is a 400: a malformed condition is the client's mistake, not a stale version (412).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::invalid(
            "",
            "If-Match must be *, or an object version as in the ETag header (for example \"3\")",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    let digits = match tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(digits) => digits,
        // A bare version, but not a weak one: `W/3` is no entity tag.
        None if tag.len() == text.len() => text,
        None => return Err(malformed()),
    };
    if digits.is_empty()
        || digits.len() > MAX_VERSION_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed());
    }
    digits.parse().map(Some).map_err(|_| malformed())
}

/// Largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// A JSON request body: `application/json`, at most [`MAX_BODY`] bytes, well-formed.
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = read_body(request.into_body()).await?;
        let value: Value = parse_json(&bytes)?;
        Ok(JsonBody(value))
    }
}

/// Reads a whole request body, at most [`MAX_BODY`] bytes (see [`read_limited`]).
pub(crate) async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    read_limited(body, MAX_BODY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_bad_request(bytes: &[u8]) -> bool {
        parse_json(bytes).is_err_and(|error| {
            let response = axum::response::IntoResponse::into_response(error);
            response.status() == axum::http::StatusCode::BAD_REQUEST
        })
    }

    #[test]
    fn bodies_parse_as_serde_json_does() {
        for text in [
            r#"{"name":"web","labels":{"a":"b"},"n":[1,-2,3.5,18446744073709551615,1e300,null,true]}"#,
            "[]",
            "\"x\"",
            "  {}  ",
            r#"{"a/b~c":{"":0}}"#,
        ] {
            let strict = parse_json(text.as_bytes()).expect("valid JSON");
            let plain: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(strict, plain, "{text}");
        }
    }

    #[test]
    fn repeated_member_names_are_refused_with_a_pointer() {
        let table = [
            (r#"{"name":"a","name":"b"}"#, "/name"),
            (r#"{"labels":{"k":"1","k":"2"}}"#, "/labels/k"),
            (r#"{"routes":[{},{"w":1,"w":2}]}"#, "/routes/1/w"),
            (r#"{"a/b":{"~":1,"~":2}}"#, "/a~1b/~0"),
        ];
        for (text, pointer) in table {
            let Err(error) = parse_json(text.as_bytes()) else {
                panic!("{text} was accepted");
            };
            let body = format!("{error:?}");
            assert!(body.contains(&format!("{pointer:?}")), "{text}: {body}");
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413s() {
        let within = read_limited(Body::from(vec![b'a'; 10]), 10).await;
        assert_eq!(within.map(|b| b.len()).ok(), Some(10));
        let over = read_limited(Body::from(vec![b'a'; 11]), 10).await;
        let status = over.map_err(|e| axum::response::IntoResponse::into_response(e).status());
        assert_eq!(
            status.err(),
            Some(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn malformed_bodies_are_400s() {
        for text in [&b"{"[..], b"", b"{\"a\":1} x", b"\xff", b"[1,]"] {
            assert!(is_bad_request(text), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_bad_request(deep.as_bytes()));
    }

    #[test]
    fn if_match_takes_the_etag_forms_and_refuses_the_rest() {
        let parse = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::IF_MATCH,
                axum::http::HeaderValue::from_bytes(value).expect("header value"),
            );
            if_match(&headers)
                .map_err(|error| axum::response::IntoResponse::into_response(error).status())
        };
        assert_eq!(if_match(&HeaderMap::new()).ok(), Some(None));
        let table: [(&[u8], Option<u64>); 6] = [
            (b"*", None),
            (b"\"3\"", Some(3)),
            (b"W/\"3\"", Some(3)),
            (b"3", Some(3)),
            (b"0007", Some(7)),
            (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
        ];
        for (value, want) in table {
            assert_eq!(parse(value), Ok(want), "{value:?}");
        }
        // Exactly the shape openapi.json gives If-Match.
        let contract = postern_schema::openapi::ApiContract::load().expect("openapi.json");
        for (value, _) in table {
            let text = std::str::from_utf8(value).expect("UTF-8");
            let documented = contract.accepts_parameter("replaceTunnel", "If-Match", text);
            assert_eq!(documented, Ok(true), "{text:?}");
        }
        let bad_values = [
            &b""[..],
            b"\"",
            b"\"\"",
            b"\"3",
            b"3\"",
            b"W/3",
            b"w/\"3\"",
            b"+3",
            b"-1",
            b"3.0",
            b"\"3\", \"4\"",
            b"**",
            b"99999999999999999999",
            b"\xff",
        ];
        for bad in bad_values {
            if let Ok(text) = std::str::from_utf8(bad) {
                let documented = contract.accepts_parameter("deleteTunnel", "If-Match", text);
                assert_eq!(documented, Ok(false), "{text:?}");
            }
            assert_eq!(
                parse(bad),
                Err(axum::http::StatusCode::BAD_REQUEST),
                "{bad:?}"
            );
        }
    }
}
