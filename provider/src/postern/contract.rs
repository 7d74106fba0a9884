//! Offline validation with the edge's own contract: the same JSON Schemas
//! (`postern_schema::validate`) and semantic rules (`postern_schema::rules`) the edge
//! applies, run on the known parts of a configuration and reported on the exact
//! attribute, so `terraform validate` needs no edge and agrees with it.

use postern_schema::rules;
use postern_schema::validate::{Contract, schema_violations};
use serde_json::{Map, Value as Json};

use crate::framework::{AttributePath, Diagnostics, PathStep, Type, Value};

/// Problems found in one configuration; at most one per attribute (the first found, so
/// a rule's precise message wins over the schema's generic one).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    found: Vec<(AttributePath, String)>,
}

impl Findings {
    /// No problems yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`, unless one is already recorded there.
    pub(crate) fn add(&mut self, path: AttributePath, message: impl Into<String>) {
        if !self.found.iter().any(|(p, _)| *p == path) {
            self.found.push((path, message.into()));
        }
    }

    /// Records a rule's verdict on the value at `path`.
    pub(crate) fn rule<T>(&mut self, path: AttributePath, verdict: Result<T, String>) {
        if let Err(message) = verdict {
            self.add(path, message);
        }
    }

    /// Checks the configuration against the JSON Schema of `C` (the body the provider
    /// would send). Violations about values not known yet are left for later.
    pub(crate) fn schema<C: Contract>(&mut self, config: &Value, ty: &Type) {
        let body = body(config, ty);
        for violation in schema_violations(C::validator(), &body) {
            let path = AttributePath::from_json_pointer(&violation.pointer, ty);
            let known = config.at(&path).is_none_or(Value::is_wholly_known);
            if known && !path.is_empty() {
                self.add(path, violation.message);
            }
        }
    }

    /// Adds one error diagnostic per problem: the summary names the exact attribute
    /// (`Invalid routes[0].weight`), and the diagnostic is attached to the deepest part
    /// of that path Terraform can find in the source (see [`locatable`]).
    pub(crate) fn report(self, diagnostics: &mut Diagnostics) {
        for (path, message) in self.found {
            diagnostics.error_at(
                locatable(&path),
                format!("Invalid {path}"),
                format!(
                    "{}. The Postern edge applies the same rule.",
                    capitalize(&message)
                ),
            );
        }
    }
}

/// The deepest prefix of `path` that Terraform can show in the configuration source.
///
/// Terraform 1.11 locates a diagnostic's path in the resource body
/// (`tfdiags.attributeDiagnostic.ElaborateFromConfigBody`): it finds a top-level
/// attribute and one index or key into its expression (`routes[0]`, `labels["k"]`),
/// but not an attribute inside a nested object, for which it shows the whole resource
/// block instead. So `routes[0].weight` is attached as `routes[0]` (the route's source
/// line) and `rate_limit.burst` as `rate_limit`; the summary still names the full path.
pub(crate) fn locatable(path: &AttributePath) -> AttributePath {
    let mut out = AttributePath::new();
    for (i, step) in path.steps().iter().enumerate() {
        match (i, step) {
            (0, PathStep::Attribute(_)) | (1, PathStep::Index(_) | PathStep::Key(_)) => {
                out.push(step.clone());
            }
            _ => break,
        }
    }
    out
}

/// The request body a configuration stands for: null attributes left out, unknowns as
/// JSON null (their violations are then skipped), numbers as JSON numbers.
pub(crate) fn body(value: &Value, ty: &Type) -> Json {
    match (value, ty) {
        (Value::Object(attrs), Type::Object(types)) => {
            let mut out = Map::new();
            for (name, attr) in attrs {
                if attr.is_null() {
                    continue;
                }
                let attr_ty = types.get(name).unwrap_or(&Type::Dynamic);
                out.insert(name.clone(), body(attr, attr_ty));
            }
            Json::Object(out)
        }
        (Value::List(items) | Value::Set(items), Type::List(elem) | Type::Set(elem)) => {
            Json::Array(items.iter().map(|item| body(item, elem)).collect())
        }
        (Value::Map(entries), Type::Map(elem)) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), body(v, elem)))
                .collect(),
        ),
        _ => value.to_json(),
    }
}

/// The known, non-null string at `name` of an object value.
pub(crate) fn known_str<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// The known elements of the list or set at `name`, with their indexes.
pub(crate) fn known_elements<'a>(
    value: &'a Value,
    name: &str,
) -> impl Iterator<Item = (usize, &'a Value)> {
    value
        .get(name)
        .and_then(Value::as_elements)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null() && v.is_wholly_known())
}

/// Checks the known keys and values of a label map (tunnel labels, route selectors,
/// `postern_tunnels` selectors) with the edge's label rules, each at `path["key"]`.
pub(crate) fn check_labels(findings: &mut Findings, path: &AttributePath, labels: Option<&Value>) {
    let Some(entries) = labels.and_then(Value::as_entries) else {
        return;
    };
    for (key, value) in entries {
        let at = path.clone().key(key.clone());
        if let Err(message) = postern_schema::rules::check_label_key(key) {
            findings.add(at, message);
        } else if let Some(value) = value.as_str() {
            findings.rule(at, postern_schema::rules::check_label_value(value));
        }
    }
}

fn capitalize(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Exactly one of `tunnel_id` and `routes` (a hostname's or a TCP service's), and each
/// route's selector and weight, as the edge checks them.
pub(crate) fn check_target(findings: &mut Findings, config: &Value) {
    let tunnel_id = config.get("tunnel_id").unwrap_or(&Value::Null);
    let routes = config.get("routes").unwrap_or(&Value::Null);
    let set = |v: &Value| !v.is_null() && !v.is_unknown();
    if set(tunnel_id) && set(routes) {
        findings.add(
            AttributePath::root("routes"),
            "set exactly one of tunnel_id and routes, not both",
        );
    } else if tunnel_id.is_null() && routes.is_null() {
        findings.add(
            AttributePath::root("tunnel_id"),
            "set exactly one of tunnel_id and routes",
        );
    }
    for (i, route) in routes.as_elements().unwrap_or_default().iter().enumerate() {
        let at = AttributePath::root("routes").index(i as i64);
        check_labels(
            findings,
            &at.clone().attribute("selector"),
            route.get("selector"),
        );
        if let Some(weight) = route.get("weight").and_then(Value::as_number)
            && let Some(weight) = weight.to_i64()
        {
            findings.rule(at.attribute("weight"), rules::check_weight(weight));
        }
    }
}

/// No policy listed twice in `policy_ids`.
pub(crate) fn check_policy_ids(findings: &mut Findings, config: &Value) {
    let mut seen = Vec::new();
    for (i, id) in known_elements(config, "policy_ids") {
        if let Some(id) = id.as_str() {
            if seen.contains(&id) {
                findings.add(
                    AttributePath::root("policy_ids").index(i as i64),
                    format!("policy {id} is listed twice"),
                );
            }
            seen.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use postern_schema::api::TunnelSpec;

    use super::*;

    fn tunnel_type() -> Type {
        Type::object([
            ("id", Type::String),
            ("name", Type::String),
            ("labels", Type::map(Type::String)),
        ])
    }

    #[test]
    fn unknowns_are_not_judged() {
        let config = Value::object([
            ("id", Value::Null),
            ("name", Value::Unknown),
            ("labels", Value::map([("a", Value::Unknown)])),
        ]);
        let mut findings = Findings::new();
        findings.schema::<TunnelSpec>(&config, &tunnel_type());
        assert!(findings.found.is_empty(), "{:?}", findings.found);
    }

    #[test]
    fn known_violations_land_on_their_attribute() {
        let config = Value::object([
            ("id", Value::Null),
            ("name", Value::from("Web")),
            ("labels", Value::map([("ok", Value::from("x"))])),
        ]);
        let mut findings = Findings::new();
        findings.schema::<TunnelSpec>(&config, &tunnel_type());
        let mut diagnostics = Diagnostics::new();
        findings.report(&mut diagnostics);
        let paths: Vec<String> = diagnostics
            .iter()
            .filter_map(|d| d.path.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(paths, vec!["name".to_owned()]);
    }

    #[test]
    fn paths_are_cut_to_what_terraform_can_locate() {
        let cases = [
            (
                AttributePath::root("routes").index(0).attribute("weight"),
                "routes[0]",
            ),
            (AttributePath::root("labels").key("k"), r#"labels["k"]"#),
            (
                AttributePath::root("rate_limit").attribute("burst"),
                "rate_limit",
            ),
            (AttributePath::root("name"), "name"),
        ];
        for (path, want) in cases {
            assert_eq!(locatable(&path).to_string(), want);
        }
    }

    #[test]
    fn one_problem_per_attribute_and_rules_first() {
        let mut findings = Findings::new();
        let at = AttributePath::root("routes").index(0).attribute("weight");
        findings.rule(at.clone(), postern_schema::rules::check_weight(0));
        findings.add(at, "0 is less than the minimum of 1");
        assert_eq!(findings.found.len(), 1);
        assert!(findings.found[0].1.contains("between 1 and 100"));
    }
}
