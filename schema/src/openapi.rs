//! The control API's OpenAPI 3.1 document (`schema/openapi.json`), embedded, and the checks
//! tests use to hold every answer of the edge to it. The JSON Schemas it references are
//! [`crate::validate`]'s; this module uses that one and never the other way round.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::validate::{SCHEMAS, schema_violations};

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Where the OpenAPI document's `$ref`s to schema files start.
const SCHEMA_DIR: &str = "schemas/v1/";

/// The OpenAPI document with its schema files, ready to check answers against.
pub struct ApiContract {
    document: Value,
    files: BTreeMap<String, Value>,
}

impl ApiContract {
    /// Loads the embedded document and schemas.
    pub fn load() -> Result<Self, String> {
        let document: Value =
            serde_json::from_str(OPENAPI).map_err(|e| format!("openapi.json is not JSON: {e}"))?;
        let mut files = BTreeMap::new();
        for (name, text) in SCHEMAS {
            let schema: Value =
                serde_json::from_str(text).map_err(|e| format!("{name} is not JSON: {e}"))?;
            files.insert((*name).to_string(), schema);
        }
        Ok(Self { document, files })
    }

    /// Problems that make the document not a valid OpenAPI 3.1 description of our API: version,
    /// info, path templates and their parameters, operations and responses, unique operation ids,
    /// `$ref`s that resolve, schemas and patterns that compile, links that name an operation and
    /// its parameters, and well-formed `x-postern-rules`. Empty when it is valid.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let doc = &self.document;
        if !doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1."))
        {
            problems.push("openapi must be 3.1.x".into());
        }
        for field in ["title", "version"] {
            if !doc["info"][field].is_string() {
                problems.push(format!("info.{field} must be a string"));
            }
        }
        let Some(paths) = doc["paths"].as_object() else {
            problems.push("paths must be an object".into());
            return problems;
        };
        let mut operation_ids = BTreeMap::new();
        for (template, item) in paths {
            for (method, operation) in operations(item) {
                if let Some(id) = operation["operationId"].as_str()
                    && operation_ids
                        .insert(id, (template, item, operation))
                        .is_some()
                {
                    problems.push(format!("{method} {template}: duplicate operationId {id}"));
                }
            }
        }
        for (template, item) in paths {
            if !template.starts_with('/') {
                problems.push(format!("path {template} must start with /"));
            }
            for method in item.as_object().into_iter().flatten().map(|(k, _)| k) {
                if method != "parameters" && !METHODS.contains(&method.as_str()) {
                    problems.push(format!("{template}: unexpected key {method}"));
                }
            }
            let wanted: BTreeSet<String> = template
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            for (method, operation) in operations(item) {
                let at = format!("{} {template}", method.to_uppercase());
                let parameters = match self.parameters(item, operation) {
                    Ok(parameters) => parameters,
                    Err(e) => {
                        problems.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                let declared: BTreeSet<String> = parameters
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                if declared != wanted {
                    problems.push(format!(
                        "{at}: path parameters {declared:?} do not match the template"
                    ));
                }
                for parameter in &parameters {
                    let name = parameter["name"].as_str().unwrap_or_default();
                    if let Err(e) = self.compile(&parameter["schema"]) {
                        problems.push(format!("{at} parameter {name}: {e}"));
                    }
                }
                if operation["operationId"].as_str().is_none() {
                    problems.push(format!("{at}: missing operationId"));
                }
                let Some(responses) = operation["responses"].as_object().filter(|r| !r.is_empty())
                else {
                    problems.push(format!("{at}: needs at least one response"));
                    continue;
                };
                for (status, response) in responses {
                    let at = format!("{at} {status}");
                    let valid_status = status == "default"
                        || (status.len() == 3
                            && status
                                .parse::<u16>()
                                .is_ok_and(|s| (100..=599).contains(&s)));
                    if !valid_status {
                        problems.push(format!("{at}: bad status"));
                    }
                    let response = match self.resolve(response) {
                        Ok(response) => response,
                        Err(e) => {
                            problems.push(format!("{at}: {e}"));
                            continue;
                        }
                    };
                    if !response["description"].is_string() {
                        problems.push(format!("{at}: a response needs a description"));
                    }
                    if let Some(schema) = response.pointer("/content/application~1json/schema")
                        && let Err(e) = self.compile(schema)
                    {
                        problems.push(format!("{at}: {e}"));
                    }
                    for (name, header) in response["headers"].as_object().into_iter().flatten() {
                        if let Err(e) = self.compile(&header["schema"]) {
                            problems.push(format!("{at} header {name}: {e}"));
                        }
                    }
                    for (name, link) in response["links"].as_object().into_iter().flatten() {
                        problems.extend(
                            link_problems(link, &operation_ids, |item, op| {
                                self.parameters(item, op)
                            })
                            .into_iter()
                            .map(|e| format!("{at} link {name}: {e}")),
                        );
                    }
                    if let Some(rules) = response.get("x-postern-rules") {
                        problems.extend(
                            rule_problems(rules, &parameters)
                                .into_iter()
                                .map(|e| format!("{at} x-postern-rules: {e}")),
                        );
                    }
                }
                if let Some(schema) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                    && let Err(e) = self.compile(schema)
                {
                    problems.push(format!("{at} request body: {e}"));
                }
            }
        }
        problems
    }

    /// Checks one answer of the edge against the document: the operation must exist, the status
    /// must be documented, and a JSON body must match the documented schema.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), String> {
        let path = path.split('?').next().unwrap_or(path);
        let operation = self
            .operation(method, path)
            .ok_or_else(|| format!("{method} {path} is not in openapi.json"))?;
        let response = &operation["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!(
                "{method} {path}: status {status} is not documented"
            ));
        }
        let response = self.resolve(response)?;
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            return Ok(());
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{method} {path} {status}: body is not JSON: {e}"))?;
        let validator = self.compile(schema)?;
        let violations = schema_violations(&validator, &value);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: body does not match openapi.json: {violations:?}\nbody: {value}"
            ))
        }
    }

    /// Whether the document lets operation `operation_id` take `value` for its string parameter
    /// `name` (as in `If-Match` or `selector`): what the edge's own parser of that parameter
    /// must accept, no more and no less.
    pub fn accepts_parameter(
        &self,
        operation_id: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, String> {
        let (item, operation) = self.document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(_, item)| operations(item).map(move |(_, op)| (item, op)))
            .find(|(_, op)| op["operationId"] == operation_id)
            .ok_or_else(|| format!("no operation {operation_id}"))?;
        let parameter = self
            .parameters(item, operation)?
            .into_iter()
            .find(|p| p["name"] == name)
            .ok_or_else(|| format!("{operation_id} has no parameter {name}"))?;
        let validator = self.compile(&parameter["schema"])?;
        Ok(validator.is_valid(&Value::String(value.to_string())))
    }

    /// Follows a local `$ref` (`#/components/…`) to what it names; anything else is itself.
    fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value, String> {
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => target
                .strip_prefix('#')
                .and_then(|pointer| self.document.pointer(pointer))
                .ok_or_else(|| format!("$ref {target} does not resolve")),
            None => Ok(value),
        }
    }

    /// The parameters of an operation: its path item's, then its own, references resolved.
    fn parameters<'a>(
        &'a self,
        item: &'a Value,
        operation: &'a Value,
    ) -> Result<Vec<&'a Value>, String> {
        item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(operation["parameters"].as_array().into_iter().flatten())
            .map(|parameter| self.resolve(parameter))
            .collect()
    }

    fn operation(&self, method: &str, path: &str) -> Option<&Value> {
        let method = method.to_lowercase();
        let paths = self.document["paths"].as_object()?;
        paths
            .iter()
            .filter(|(template, _)| template_matches(template, path))
            // A literal segment beats a parameter (`/v1/tunnels/x/token` vs `/v1/tunnels/{id}`).
            .min_by_key(|(template, _)| template.matches('{').count())
            .map(|(_, item)| &item[&method])
            .filter(|op| op.is_object())
    }

    /// Compiles an OpenAPI schema object whose `$ref`s point at schema files.
    fn compile(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let mut used = BTreeSet::new();
        let rewritten = self.rewrite_refs(schema, &mut used)?;
        let mut defs = Map::new();
        for (i, file) in used.iter().enumerate() {
            defs.insert(format!("file{i}"), self.files[file].clone());
        }
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": defs,
        });
        if let (Some(root), Some(body)) = (root.as_object_mut(), rewritten.as_object()) {
            for (k, v) in body {
                root.insert(k.clone(), v.clone());
            }
        }
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema does not compile: {e}"))
    }

    fn rewrite_refs(&self, schema: &Value, used: &mut BTreeSet<String>) -> Result<Value, String> {
        Ok(match schema {
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, value) in map {
                    if key == "$ref" {
                        let target = value.as_str().unwrap_or_default();
                        let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                        let name = file
                            .strip_prefix(SCHEMA_DIR)
                            .ok_or_else(|| format!("$ref {target} is not under {SCHEMA_DIR}"))?;
                        let doc = self
                            .files
                            .get(name)
                            .ok_or_else(|| format!("$ref {target} names no schema file"))?;
                        if !fragment.is_empty() && doc.pointer(fragment).is_none() {
                            return Err(format!("$ref {target} does not resolve"));
                        }
                        used.insert(name.to_string());
                        let id = doc["$id"].as_str().unwrap_or_default();
                        let uri = if fragment.is_empty() {
                            id.to_string()
                        } else {
                            format!("{id}#{fragment}")
                        };
                        out.insert(key.clone(), Value::String(uri));
                    } else {
                        out.insert(key.clone(), self.rewrite_refs(value, used)?);
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.rewrite_refs(v, used))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// The operations of a path item, by method.
fn operations(item: &Value) -> impl Iterator<Item = (&str, &Value)> {
    item.as_object()
        .into_iter()
        .flatten()
        .filter(|(method, _)| METHODS.contains(&method.as_str()))
        .map(|(method, operation)| (method.as_str(), operation))
}

/// What is wrong with one link: it must name an operation, and each parameter it sets must be
/// one of that operation's (`name`, or `in.name` such as `header.If-Match`).
fn link_problems<'a>(
    link: &Value,
    operation_ids: &BTreeMap<&str, (&String, &'a Value, &'a Value)>,
    parameters: impl Fn(&'a Value, &'a Value) -> Result<Vec<&'a Value>, String>,
) -> Vec<String> {
    let Some(id) = link["operationId"].as_str() else {
        return vec!["a link needs an operationId".into()];
    };
    let Some((_, item, operation)) = operation_ids.get(id) else {
        return vec![format!("operationId {id} names no operation")];
    };
    let known = match parameters(item, operation) {
        Ok(known) => known,
        Err(e) => return vec![e],
    };
    link["parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| name)
        .filter(|name| {
            !known.iter().any(|p| {
                let plain = p["name"].as_str().unwrap_or_default();
                let located = format!("{}.{plain}", p["in"].as_str().unwrap_or_default());
                **name == plain || **name == located
            })
        })
        .map(|name| format!("{id} has no parameter {name}"))
        .collect()
}

/// What is wrong with an `x-postern-rules` list: the 400s that answer rules no schema can say.
/// Each entry has a `rule` sentence and either a `pointer` (a JSON pointer into the request
/// body, `*` standing for any one reference token) or `exclusive` (query parameters of the
/// operation of which at most one may be given).
fn rule_problems(rules: &Value, parameters: &[&Value]) -> Vec<String> {
    let Some(rules) = rules.as_array().filter(|r| !r.is_empty()) else {
        return vec!["must be a non-empty array".into()];
    };
    let mut problems = Vec::new();
    for rule in rules {
        if rule["rule"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{rule}: needs a rule sentence"));
        }
        match (rule.get("pointer"), rule.get("exclusive")) {
            (Some(pointer), None) if pointer.as_str().is_some_and(|p| p.starts_with('/')) => {}
            (None, Some(names)) => {
                for name in names.as_array().into_iter().flatten() {
                    let known = parameters
                        .iter()
                        .any(|p| p["in"] == "query" && p["name"] == *name);
                    if !known {
                        problems.push(format!("{name} is not a query parameter"));
                    }
                }
            }
            _ => problems.push(format!("{rule}: needs a pointer or an exclusive list")),
        }
    }
    problems
}

fn template_matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_valid() {
        let contract = ApiContract::load().expect("loads");
        assert_eq!(contract.problems(), Vec::<String>::new());
    }

    #[test]
    fn answers_are_checked_against_the_document() {
        let contract = ApiContract::load().expect("loads");
        let tunnel = br#"{"id":"6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11","name":"web","labels":{},"version":1,"created_at":"2026-11-25T10:00:00Z","connections":0}"#;
        assert_eq!(
            contract.check_response(
                "GET",
                "/v1/tunnels/6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11",
                200,
                tunnel
            ),
            Ok(())
        );
        let wrong = br#"{"id":"x","name":"web"}"#;
        assert!(
            contract
                .check_response("GET", "/v1/tunnels/x", 200, wrong)
                .is_err()
        );
        assert!(
            contract
                .check_response("GET", "/v1/tunnels/x", 418, b"{}")
                .is_err()
        );
        assert!(
            contract
                .check_response("GET", "/v2/nothing", 200, b"{}")
                .is_err()
        );
        let token = br#"{"token":"abc"}"#;
        assert_eq!(
            contract.check_response("GET", "/v1/tunnels/x/token", 200, token),
            Ok(())
        );
    }

    #[test]
    fn the_status_types_write_what_the_document_describes() {
        use crate::api::{
            Decision, DnsRecord, EdgeStatus, EjectedRoute, ErrorRate, PolicyDecisionCount,
            RouteTraffic, TcpServiceTraffic,
        };

        let status = EdgeStatus {
            catalog_revision: 7,
            window_seconds: 60,
            nodes: 2,
            connections: 3,
            routes: vec![RouteTraffic {
                hostname: "split.example.com".into(),
                index: 1,
                route: "release=canary".into(),
                selector: [("release".to_string(), "canary".to_string())].into(),
                weight: 10,
                requests: 21,
            }],
            decisions: vec![PolicyDecisionCount {
                policy_id: "6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11".parse().expect("id"),
                policy: "guard".into(),
                hostname: "split.example.com".into(),
                decision: Decision::Report,
                reason: "method".into(),
                count: 3,
            }],
            dns: vec![DnsRecord {
                name: "split.example.com".into(),
                record_type: "TXT".into(),
                ttl: 30,
                data: "\"tunnel=canary release=canary\"".into(),
            }],
            tcp_services: vec![TcpServiceTraffic {
                id: "6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a12".parse().expect("id"),
                name: "ssh".into(),
                listen: "127.0.0.1:4022".into(),
                connections: 5,
                refused: 1,
            }],
            ejected_routes: vec![EjectedRoute {
                hostname: "split.example.com".into(),
                prefix: None,
                route: "release=canary".into(),
                reason: "error_rate".into(),
                error_rate: Some(ErrorRate(0.5)),
                retry_in_seconds: Some(7),
            }],
        };
        let body = serde_json::to_vec(&status).expect("json");
        let contract = ApiContract::load().expect("loads");
        assert_eq!(
            contract.check_response("GET", "/v1/status", 200, &body),
            Ok(())
        );
        let read: EdgeStatus = serde_json::from_slice(&body).expect("decodes");
        assert_eq!(read, status);
        let wrong = String::from_utf8(body)
            .expect("utf-8")
            .replace("\"report\"", "\"maybe\"");
        assert!(
            contract
                .check_response("GET", "/v1/status", 200, wrong.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn every_schema_file_compiles() {
        for file in crate::validate::schema_files() {
            crate::validate::compile_file(file);
        }
    }

    /// A label key prefix of `len` characters: DNS labels of at most 63, joined by dots.
    fn prefix(len: usize) -> String {
        let mut out = String::new();
        while out.len() < len {
            if !out.is_empty() {
                out.push('.');
            }
            let room = (len - out.len()).min(63);
            out.push_str(&"p".repeat(room));
        }
        out
    }

    /// The document with `edit` applied, and its problems.
    fn problems_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut contract = ApiContract::load().expect("loads");
        edit(&mut contract.document);
        contract.problems()
    }

    #[test]
    fn broken_links_references_and_rules_are_problems() {
        let create = "/paths/~1v1~1tunnels/post/responses/201/links/GetTunnel";
        let found = problems_after(|doc| {
            doc.pointer_mut(create).expect("link")["operationId"] = json!("nothing");
        });
        assert!(
            found
                .iter()
                .any(|p| p.contains("nothing names no operation")),
            "{found:?}"
        );
        let found = problems_after(|doc| {
            doc.pointer_mut(create).expect("link")["parameters"] = json!({"header.Nope": "x"});
        });
        assert!(
            found.iter().any(|p| p.contains("no parameter header.Nope")),
            "{found:?}"
        );
        let found = problems_after(|doc| {
            doc.pointer_mut("/paths/~1v1~1tunnels~1{id}/get/responses/404")
                .expect("404")["$ref"] = json!("#/components/responses/Nope");
        });
        assert!(
            found.iter().any(|p| p.contains("does not resolve")),
            "{found:?}"
        );
        let found = problems_after(|doc| {
            doc.pointer_mut("/paths/~1v1~1rollout/get/responses/400/x-postern-rules/0")
                .expect("rule")["exclusive"] = json!(["tunnel", "nope"]);
        });
        assert!(
            found.iter().any(|p| p.contains("is not a query parameter")),
            "{found:?}"
        );
        let found = problems_after(|doc| {
            doc.pointer_mut("/components/parameters/IfMatch/schema")
                .expect("schema")["pattern"] = json!("(");
        });
        assert!(
            found.iter().any(|p| p.contains("parameter If-Match")),
            "{found:?}"
        );
    }

    #[test]
    fn parameters_are_judged_by_their_schema() {
        let contract = ApiContract::load().expect("loads");
        let selector = |s: &str| contract.accepts_parameter("listTunnels", "selector", s);
        assert_eq!(selector("release=canary,app.io/tier="), Ok(true));
        assert_eq!(selector(""), Ok(true));
        assert_eq!(selector("release=canary, app=web"), Ok(false));
        assert_eq!(selector(&format!("{}/k=v", prefix(253))), Ok(true));
        assert_eq!(selector(&format!("{}/k=v", prefix(254))), Ok(false));
        assert!(
            contract
                .accepts_parameter("nothing", "selector", "")
                .is_err()
        );
        assert!(
            contract
                .accepts_parameter("listTunnels", "nope", "")
                .is_err()
        );
    }

    #[test]
    fn the_selector_parameter_is_what_the_selector_rule_takes() {
        let contract = ApiContract::load().expect("loads");
        let long = format!("{}/k=v", prefix(253));
        let longer = format!("{}/k=v", prefix(254));
        let table = [
            "",
            "a=b",
            "a=",
            "a=b,c=d",
            "x.io/a=b",
            "A_b.c-D=v1.2_3",
            long.as_str(),
            longer.as_str(),
            " a=b",
            "a=b ",
            "a = b",
            "a=b,",
            ",a=b",
            "a=b,,c=d",
            "a",
            "=b",
            "a=b=c",
            "a=-b",
            "-a=b",
            "Bad/a=b",
            "a/b/c=d",
            "a/=b",
            "/a=b",
            "ü=b",
            "a=b\n",
        ];
        for text in table {
            let documented = contract.accepts_parameter("listTunnels", "selector", text);
            let parsed = crate::rules::parse_selector(text).is_ok();
            assert_eq!(documented, Ok(parsed), "{text:?}");
        }
    }

    #[test]
    fn every_declared_refusal_points_into_the_request_body() {
        let contract = ApiContract::load().expect("loads");
        assert_eq!(contract.problems(), Vec::<String>::new());
        let mut pointers = Vec::new();
        for (_, item) in contract.document["paths"].as_object().into_iter().flatten() {
            for (_, operation) in operations(item) {
                let rules = &operation["responses"]["400"]["x-postern-rules"];
                for rule in rules.as_array().into_iter().flatten() {
                    if let Some(pointer) = rule["pointer"].as_str() {
                        pointers.push(pointer.to_string());
                    }
                }
            }
        }
        pointers.sort();
        pointers.dedup();
        assert_eq!(
            pointers,
            [
                "/allow_methods",
                "/allow_paths",
                "/basic_auth/users",
                "/basic_auth/users/*",
                "/certificate_pem",
                "/expires_at",
                "/hostname",
                "/jwt",
                "/jwt/jwks_url",
                "/jwt/public_keys_pem/*",
                "/listen_port",
                "/names",
                "/names/*",
                "/oidc/issuer",
                "/oidc/session_duration",
                "/origin",
                "/origin/ca_cert_pem",
                "/origin/health_check/path",
                "/origin/http2",
                "/origin/http_host_header",
                "/origin/no_tls_verify",
                "/origin/origin_server_name",
                "/paths",
                "/paths/*/policy_ids/*",
                "/paths/*/prefix",
                "/policy_ids/*",
                "/private_key_pem",
                "/rules/request_headers/add/*",
                "/rules/request_headers/remove/*",
                "/rules/request_headers/set/*",
                "/rules/response_headers/add/*",
                "/rules/response_headers/remove/*",
                "/rules/response_headers/set/*",
                "/service",
                "/tunnel_id",
            ]
        );
    }
}
