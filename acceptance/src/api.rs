//! `Api`: a raw HTTP client of the control API that checks every answer it receives against
//! `schema/openapi.json` (operation, documented status, body schema) and panics on a mismatch.

use postern_schema::openapi::ApiContract;
use reqwest::Method;
use serde_json::Value;

/// A raw control API client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An answer of the edge.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The raw body.
    pub text: String,
}

impl ApiResponse {
    /// The `error.path` of an error body.
    pub fn error_path(&self) -> Option<&str> {
        self.body.pointer("/error/path").and_then(Value::as_str)
    }

    /// The `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }

    /// The ETag, unquoted.
    pub fn etag(&self) -> Option<String> {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string())
    }
}

impl Api {
    /// A client for `base` (`http://host:port`), with a bearer token or none.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self::with_ca(base, token, None)
    }

    /// A client for `base` that trusts only `ca_pem` for `https://` (the system's roots when
    /// `None`).
    pub fn with_ca(base: &str, token: Option<&str>, ca_pem: Option<&str>) -> Self {
        Self::build(base, token, ca_pem, None)
    }

    /// The same client, sending from `local` (another 127.x address stands for another
    /// client).
    pub fn from_address(&self, local: std::net::IpAddr, ca_pem: Option<&str>) -> Self {
        Self::build(&self.base, self.token.as_deref(), ca_pem, Some(local))
    }

    fn build(
        base: &str,
        token: Option<&str>,
        ca_pem: Option<&str>,
        local: Option<std::net::IpAddr>,
    ) -> Self {
        let mut builder = reqwest::Client::builder().local_address(local);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).expect("CA PEM");
            builder = builder.tls_certs_only(certs);
        }
        Self {
            http: builder.build().expect("HTTP client"),
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> ApiResponse {
        self.send(Method::POST, path, Some(body), None).await
    }

    /// `PUT path` with a JSON body and an optional `If-Match`.
    pub async fn put(&self, path: &str, body: &Value, if_match: Option<&str>) -> ApiResponse {
        self.send(Method::PUT, path, Some(body), if_match).await
    }

    /// `DELETE path` with an optional `If-Match`.
    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> ApiResponse {
        self.send(Method::DELETE, path, None, if_match).await
    }

    /// Any request with a JSON body; the answer is checked against openapi.json.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> ApiResponse {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(version) = if_match {
            request = request.header("if-match", format!("\"{version}\""));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.finish(method, path, response).await
    }

    /// `GET path`, answered with the response as it arrives (for a streamed body, such as
    /// `/v1/requests?follow=true`); not checked against openapi.json.
    pub async fn open_stream(&self, path: &str) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Sends raw bytes with a content type (for malformed-input tests); checked like `send`.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> ApiResponse {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.finish(method, path, response).await
    }

    async fn finish(&self, method: Method, path: &str, response: reqwest::Response) -> ApiResponse {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let contract = ApiContract::load().expect("openapi.json loads");
        if let Err(problem) = contract.check_response(method.as_str(), path, status, &bytes) {
            panic!("the edge broke its contract: {problem}");
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        ApiResponse {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }
}
