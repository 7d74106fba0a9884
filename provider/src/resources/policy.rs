//! `postern_policy`: who may reach a hostname, how and how often (IP lists, methods,
//! paths, a token-bucket rate limit, JWT). Defaults the edge fills in (`mode`, empty
//! lists, the rate limit's `burst` and `per`) are planned exactly, so plans never show
//! them as "known after apply".

use postern_schema::api::{
    ErrorCode, JwtSettings, Policy, PolicyMode, PolicySpec, RateLimit, RateLimitKey,
};
use postern_schema::client::ClientError;
use postern_schema::ids::PolicyId;
use postern_schema::rules;
use serde::{Deserialize, Serialize};

use super::version;
use crate::api::{Operation, diagnose};
use crate::contract::{Findings, known_elements, known_str};
use crate::framework::{
    Attribute, AttributePath, Attributes, CreateRequest, DeleteRequest, Diagnostic, Diagnostics,
    Number, Plan, PlanRequest, ReadRequest, Resource, Schema, StateResponse, Type, UpdateRequest,
    Value, async_trait,
};
use crate::postern::ProviderData;
use crate::rollout::{self, Change};

/// Terraform state of a `postern_policy` (no `Debug`: it may hold the HS256 secret).
#[derive(Clone, Serialize, Deserialize)]
pub struct PolicyModel {
    /// The policy's UUID; `None` until created.
    pub id: Option<String>,
    /// Unique name.
    pub name: String,
    /// `enforce` or `report`.
    pub mode: Option<String>,
    /// CIDR blocks allowed.
    pub allow_ips: Option<Vec<String>>,
    /// CIDR blocks denied.
    pub deny_ips: Option<Vec<String>>,
    /// HTTP methods allowed (a set).
    pub allow_methods: Option<Vec<String>>,
    /// Path patterns allowed.
    pub allow_paths: Option<Vec<String>>,
    /// The token bucket.
    pub rate_limit: Option<RateLimitModel>,
    /// JWT requirements, exactly as written.
    pub jwt: Option<JwtModel>,
}

/// `rate_limit = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateLimitModel {
    /// Refill rate (an exact decimal, as written).
    pub requests_per_second: Number,
    /// Bucket capacity.
    pub burst: Option<Number>,
    /// `client_ip` or `hostname`.
    pub per: Option<String>,
}

/// `jwt = { ... }`.
#[derive(Clone, Serialize, Deserialize)]
pub struct JwtModel {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Option<Vec<String>>,
    /// The HS256 secret.
    pub hs256_secret: Option<String>,
    /// RS256/ES256 public keys.
    pub public_keys_pem: Option<Vec<String>>,
}

impl PolicyModel {
    /// What the provider writes to the edge; a value the edge could not take becomes a
    /// diagnostic on its attribute (validation normally catches it first).
    fn spec(&self) -> Result<PolicySpec, Diagnostic> {
        let mode = match self.mode.as_deref() {
            None | Some("enforce") => PolicyMode::Enforce,
            Some("report") => PolicyMode::Report,
            Some(other) => {
                return Err(invalid(
                    AttributePath::root("mode"),
                    format!("mode {other:?} must be \"enforce\" or \"report\""),
                ));
            }
        };
        let rate_limit = match &self.rate_limit {
            None => None,
            Some(r) => Some(RateLimit {
                requests_per_second: r.requests_per_second.to_f64(),
                burst: match &r.burst {
                    None => None,
                    Some(burst) => Some(
                        burst
                            .to_u64()
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(|| {
                                invalid(
                                    AttributePath::root("rate_limit").attribute("burst"),
                                    format!("burst {burst} must be a whole number from 1"),
                                )
                            })?,
                    ),
                },
                per: match r.per.as_deref() {
                    None | Some("client_ip") => Some(RateLimitKey::ClientIp),
                    Some("hostname") => Some(RateLimitKey::Hostname),
                    Some(other) => {
                        return Err(invalid(
                            AttributePath::root("rate_limit").attribute("per"),
                            format!("per {other:?} must be \"client_ip\" or \"hostname\""),
                        ));
                    }
                },
            }),
        };
        Ok(PolicySpec {
            name: self.name.clone(),
            mode,
            allow_ips: self.allow_ips.clone().unwrap_or_default(),
            deny_ips: self.deny_ips.clone().unwrap_or_default(),
            allow_methods: self.allow_methods.clone().unwrap_or_default(),
            allow_paths: self.allow_paths.clone().unwrap_or_default(),
            rate_limit,
            jwt: self.jwt.as_ref().map(|j| JwtSettings {
                issuer: j.issuer.clone(),
                audiences: j.audiences.clone(),
                hs256_secret: j.hs256_secret.clone(),
                public_keys_pem: j.public_keys_pem.clone(),
            }),
        })
    }

    /// The state for a policy as the edge returned it. `known` is what Terraform had
    /// (plan or prior state): its exact `requests_per_second` is kept when the edge's
    /// binary float stands for the same number.
    fn from_policy(policy: &Policy, known: Option<&PolicyModel>) -> Self {
        let spec = &policy.spec;
        let known_rps = known
            .and_then(|k| k.rate_limit.as_ref())
            .map(|r| &r.requests_per_second);
        Self {
            id: Some(policy.id.to_string()),
            name: spec.name.clone(),
            mode: Some(
                match spec.mode {
                    PolicyMode::Enforce => "enforce",
                    PolicyMode::Report => "report",
                }
                .to_owned(),
            ),
            allow_ips: Some(spec.allow_ips.clone()),
            deny_ips: Some(spec.deny_ips.clone()),
            allow_methods: Some(spec.allow_methods.clone()),
            allow_paths: Some(spec.allow_paths.clone()),
            rate_limit: spec.rate_limit.as_ref().map(|r| RateLimitModel {
                requests_per_second: match known_rps {
                    Some(n) if n.to_f64() == r.requests_per_second => n.clone(),
                    _ => Number::from_f64_shortest(r.requests_per_second).unwrap_or_default(),
                },
                burst: r.burst.map(Number::from),
                per: r.per.map(|per| {
                    match per {
                        RateLimitKey::ClientIp => "client_ip",
                        RateLimitKey::Hostname => "hostname",
                    }
                    .to_owned()
                }),
            }),
            jwt: spec.jwt.as_ref().map(|j| JwtModel {
                issuer: j.issuer.clone(),
                audiences: j.audiences.clone(),
                hs256_secret: j.hs256_secret.clone(),
                public_keys_pem: j.public_keys_pem.clone(),
            }),
        }
    }
}

/// The `postern_policy` resource.
pub struct PolicyResource;

#[async_trait]
impl Resource<ProviderData> for PolicyResource {
    fn type_name(&self) -> &'static str {
        "postern_policy"
    }

    fn schema(&self) -> Schema {
        let list = |description: &str| {
            Attribute::list(Type::String, description)
                .optional()
                .computed()
                .default(Value::List(Vec::new()))
        };
        Schema::new(
            "An edge policy: who may reach a hostname, how and how often. Hostnames apply \
             their policies in order (`policy_ids`); the first deny wins. Traffic a policy \
             drops never reaches the tunnel.",
        )
        .attribute(
            "id",
            Attribute::string("The policy's UUID, assigned by the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "name",
            Attribute::string(
                "Unique name among policies: 1 to 63 lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit.",
            )
            .required(),
        )
        .attribute(
            "mode",
            Attribute::string(
                "`enforce` (the default) blocks what the policy denies; `report` blocks \
                 nothing and only logs and counts what would have been blocked.",
            )
            .optional()
            .computed()
            .default("enforce"),
        )
        .attribute(
            "allow_ips",
            list(
                "CIDR blocks that may connect (a bare address is one host); empty (the \
                 default) allows every address.",
            ),
        )
        .attribute(
            "deny_ips",
            list("CIDR blocks that may not connect; deny wins over allow. Defaults to `[]`."),
        )
        .attribute(
            "allow_methods",
            Attribute::set(
                Type::String,
                "HTTP methods allowed, in upper case (`GET`, `POST`, …); empty (the default) \
                 allows every method.",
            )
            .optional()
            .computed()
            .default(Value::Set(Vec::new())),
        )
        .attribute(
            "allow_paths",
            list(
                "Path patterns allowed, starting with `/`: `*` matches within one segment, a \
                 trailing `/**` matches the rest. Empty (the default) allows every path.",
            ),
        )
        .attribute(
            "rate_limit",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "requests_per_second",
                        Attribute::number(
                            "Refill rate of the token bucket, in requests per second \
                             (more than 0, at most 1000000).",
                        )
                        .required(),
                    )
                    .with(
                        "burst",
                        Attribute::number(
                            "Bucket capacity: how many requests may arrive at once. Defaults \
                             to `requests_per_second` rounded up.",
                        )
                        .optional()
                        .computed(),
                    )
                    .with(
                        "per",
                        Attribute::string(
                            "What one bucket counts: `client_ip` (the default) or `hostname`.",
                        )
                        .optional()
                        .computed()
                        .default("client_ip"),
                    ),
                "A token-bucket rate limit; requests over it get 429 with `Retry-After`.",
            )
            .optional(),
        )
        .attribute(
            "jwt",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "issuer",
                        Attribute::string("Required `iss` claim, when set.").optional(),
                    )
                    .with(
                        "audiences",
                        Attribute::list(
                            Type::String,
                            "Accepted `aud` values; unset or empty accepts any audience.",
                        )
                        .optional(),
                    )
                    .with(
                        "hs256_secret",
                        Attribute::string(
                            "Shared secret for HS256 tokens (at least 16 characters). \
                             Sensitive.",
                        )
                        .optional()
                        .sensitive(),
                    )
                    .with(
                        "public_keys_pem",
                        Attribute::list(
                            Type::String,
                            "PEM public keys (`-----BEGIN PUBLIC KEY-----`) for RS256 and \
                             ES256 tokens.",
                        )
                        .optional(),
                    ),
                "Require `Authorization: Bearer <JWT>` valid for signature, `exp`, `nbf`, and \
                 `iss`/`aud` when set; set `hs256_secret` or `public_keys_pem`. Missing or \
                 invalid tokens get 401.",
            )
            .optional(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(name) = known_str(config, "name") {
            findings.rule(AttributePath::root("name"), rules::check_name(name));
        }
        for field in ["allow_ips", "deny_ips"] {
            for (i, cidr) in known_elements(config, field) {
                if let Some(cidr) = cidr.as_str() {
                    let at = AttributePath::root(field).index(i as i64);
                    findings.rule(at, rules::parse_cidr(cidr));
                }
            }
        }
        for (_, method) in known_elements(config, "allow_methods") {
            if let Some(method) = method.as_str() {
                findings.rule(
                    AttributePath::root("allow_methods"),
                    rules::check_method(method),
                );
            }
        }
        for (i, pattern) in known_elements(config, "allow_paths") {
            if let Some(pattern) = pattern.as_str() {
                let at = AttributePath::root("allow_paths").index(i as i64);
                findings.rule(at, rules::check_path_pattern(pattern));
            }
        }
        if let Some(jwt) = config
            .get("jwt")
            .filter(|j| !j.is_null() && !j.is_unknown())
        {
            let secret = jwt.get("hs256_secret").unwrap_or(&Value::Null);
            let keys = jwt.get("public_keys_pem").unwrap_or(&Value::Null);
            let no_keys = keys.is_null() || keys.as_elements().is_some_and(<[Value]>::is_empty);
            if secret.is_null() && no_keys {
                findings.add(
                    AttributePath::root("jwt"),
                    "set hs256_secret or public_keys_pem: without a key no token can be verified",
                );
            }
            for (i, pem) in known_elements(jwt, "public_keys_pem") {
                if let Some(pem) = pem.as_str() {
                    let at = AttributePath::root("jwt")
                        .attribute("public_keys_pem")
                        .index(i as i64);
                    findings.rule(at, rules::check_public_key_pem(pem));
                }
            }
        }
        findings.schema::<PolicySpec>(config, &self.schema().value_type());
        findings.report(diagnostics);
    }

    /// Plans `rate_limit.burst` exactly when the configuration leaves it unset: the
    /// edge's default, `requests_per_second` rounded up (at least 1).
    async fn plan(&self, _data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        let burst_configured = req
            .config
            .get("rate_limit")
            .and_then(|r| r.get("burst"))
            .is_some_and(|b| !b.is_null());
        if burst_configured {
            return;
        }
        let Some(rate_limit) = plan.planned.get_mut("rate_limit") else {
            return;
        };
        let Some(rps) = rate_limit
            .get("requests_per_second")
            .and_then(Value::as_number)
        else {
            return;
        };
        let burst = RateLimit {
            requests_per_second: rps.to_f64(),
            burst: None,
            per: None,
        }
        .default_burst();
        rate_limit.set_attribute("burst", Value::number(burst));
    }

    async fn create(&self, data: &ProviderData, req: CreateRequest, resp: &mut StateResponse) {
        // Read the plan into the model.
        let Some(plan) = resp.diagnostics.check(req.planned.decode::<PolicyModel>()) else {
            return;
        };
        let Some(spec) = resp.diagnostics.check(plan.spec()) else {
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "creating",
            kind: "policy",
            object: Some(&spec.name),
            value_type: &ty,
        };
        let api = data.api.tracking();
        match api.create_policy(&spec).await {
            Ok(policy) => {
                tracing::info!(policy_id = %policy.id, name = %spec.name, "policy created");
                resp.set_state(&PolicyModel::from_policy(&policy, Some(&plan)));
                resp.private = version::encode(policy.version);
                rollout::wait(data, &api, change(policy.id), &mut resp.diagnostics).await;
            }
            Err(error) if error.code() == Some(ErrorCode::Conflict) => {
                adopt(data, &spec, &plan, &error, op, resp).await;
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn read(&self, data: &ProviderData, req: ReadRequest, resp: &mut StateResponse) {
        let Some(state) = resp.diagnostics.check(req.state.decode::<PolicyModel>()) else {
            return;
        };
        let Some(id) = parse_id(state.id.as_deref(), &mut resp.diagnostics) else {
            return;
        };
        let ty = resp.value_type().clone();
        let id_text = id.to_string();
        let op = Operation {
            action: "reading",
            kind: "policy",
            object: Some(&id_text),
            value_type: &ty,
        };
        match data.api.policy(id).await {
            Ok(policy) => {
                resp.set_state(&PolicyModel::from_policy(&policy, Some(&state)));
                resp.private = version::encode(policy.version);
            }
            Err(error) if error.is_not_found() => {
                tracing::info!(policy_id = %id, "policy deleted outside Terraform");
                resp.remove();
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn update(&self, data: &ProviderData, req: UpdateRequest, resp: &mut StateResponse) {
        let Some(plan) = resp.diagnostics.check(req.planned.decode::<PolicyModel>()) else {
            return;
        };
        let Some(id) = parse_id(plan.id.as_deref(), &mut resp.diagnostics) else {
            return;
        };
        let Some(spec) = resp.diagnostics.check(plan.spec()) else {
            return;
        };
        let ty = resp.value_type().clone();
        let id_text = id.to_string();
        let op = Operation {
            action: "updating",
            kind: "policy",
            object: Some(&id_text),
            value_type: &ty,
        };
        let if_match = version::decode(&req.planned_private);
        let api = data.api.tracking();
        match api.replace_policy(id, &spec, if_match).await {
            Ok(policy) => {
                tracing::info!(policy_id = %id, "policy updated");
                resp.set_state(&PolicyModel::from_policy(&policy, Some(&plan)));
                resp.private = version::encode(policy.version);
                rollout::wait(data, &api, change(id), &mut resp.diagnostics).await;
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn delete(&self, data: &ProviderData, req: DeleteRequest, diagnostics: &mut Diagnostics) {
        let Some(prior) = diagnostics.check(req.prior.decode::<PolicyModel>()) else {
            return;
        };
        let Some(id) = parse_id(prior.id.as_deref(), diagnostics) else {
            return;
        };
        let ty = self.schema().value_type();
        let id_text = id.to_string();
        let op = Operation {
            action: "deleting",
            kind: "policy",
            object: Some(&id_text),
            value_type: &ty,
        };
        let api = data.api.tracking();
        match api.delete_policy(id, version::decode(&req.private)).await {
            Ok(()) => {
                tracing::info!(policy_id = %id, "policy deleted");
                rollout::wait(data, &api, change(id), diagnostics).await;
            }
            Err(error) if error.is_not_found() => {}
            Err(error) => diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn import(&self, data: &ProviderData, id: &str, resp: &mut StateResponse) {
        let Ok(policy_id) = id.trim().parse::<PolicyId>() else {
            resp.diagnostics.error(
                "Invalid policy id",
                format!(
                    "{id:?} is not a policy id. Import a postern_policy by its UUID, e.g. \
                     `terraform import postern_policy.api 3f2c…`; list policies with \
                     GET /v1/policies."
                ),
            );
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "importing",
            kind: "policy",
            object: Some(id),
            value_type: &ty,
        };
        match data.api.policy(policy_id).await {
            Ok(policy) => {
                resp.set_state(&PolicyModel::from_policy(&policy, None));
                resp.private = version::encode(policy.version);
            }
            Err(error) if error.is_not_found() => resp.diagnostics.error(
                "Cannot import non-existent remote object",
                format!("The edge has no policy with id {policy_id}."),
            ),
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }
}

/// A create answered 409 because the name is taken: adopt the existing policy when it
/// is exactly what was planned (an interrupted apply created it), else say to import it.
async fn adopt(
    data: &ProviderData,
    spec: &PolicySpec,
    plan: &PolicyModel,
    conflict: &ClientError,
    op: Operation<'_>,
    resp: &mut StateResponse,
) {
    let existing = match data.api.list_policies().await {
        Ok(policies) => policies.into_iter().find(|p| p.spec.name == spec.name),
        Err(error) => {
            resp.diagnostics.push(diagnose(&error, op));
            return;
        }
    };
    let Some(policy) = existing else {
        resp.diagnostics.push(diagnose(conflict, op));
        return;
    };
    if comparable(policy.spec.clone()) != comparable(spec.clone()) {
        resp.diagnostics.error_at(
            AttributePath::root("name"),
            "A policy with this name already exists",
            format!(
                "The edge already has a policy named {:?} (id {}) with different settings, and \
                 Terraform does not manage it. To manage it, import it: \
                 `terraform import <address> {}` or an `import {{ to = <address>, id = \"{}\" }}` \
                 block. Otherwise choose another name.",
                spec.name, policy.id, policy.id, policy.id
            ),
        );
        return;
    }
    tracing::warn!(policy_id = %policy.id, name = %spec.name, "adopted an existing policy");
    resp.set_state(&PolicyModel::from_policy(&policy, Some(plan)));
    resp.private = version::encode(policy.version);
    resp.diagnostics.warning(
        "Adopted an existing policy",
        format!(
            "A policy named {:?} (id {}) already existed on the edge with exactly the planned \
             settings, most likely created by an earlier apply that was interrupted before \
             Terraform recorded it. Terraform now manages that policy instead of creating \
             another.",
            spec.name, policy.id
        ),
    );
}

/// A spec with defaults filled and the method set in a fixed order, for comparison.
fn comparable(spec: PolicySpec) -> PolicySpec {
    let mut spec = spec.normalized();
    spec.allow_methods.sort();
    spec
}

/// What a write of policy `id` changes, for [`rollout::wait`]: the hostnames that use it.
fn change(id: PolicyId) -> Change {
    Change {
        scope: postern_schema::api::RolloutScope::Policy(id),
        subject: format!("policy {id}"),
    }
}

/// The policy id recorded in state.
fn parse_id(id: Option<&str>, diagnostics: &mut Diagnostics) -> Option<PolicyId> {
    let parsed = id.and_then(|id| id.parse::<PolicyId>().ok());
    if parsed.is_none() {
        diagnostics.error_at(
            AttributePath::root("id"),
            "Invalid policy id in state",
            format!(
                "The state holds {id:?}, which is not a policy UUID. Remove the resource from \
                 the state (`terraform state rm`) and import the policy by its id."
            ),
        );
    }
    parsed
}

fn invalid(path: AttributePath, message: String) -> Diagnostic {
    Diagnostic::error(
        "Invalid policy",
        format!("{message}. Fix the configuration and apply again."),
    )
    .at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rps(text: &str) -> Number {
        Number::parse(text).unwrap_or_default()
    }

    #[test]
    fn exact_rates_survive_the_edge_float() {
        let model = PolicyModel {
            id: None,
            name: "api".into(),
            mode: None,
            allow_ips: None,
            deny_ips: None,
            allow_methods: None,
            allow_paths: None,
            rate_limit: Some(RateLimitModel {
                requests_per_second: rps("0.1"),
                burst: None,
                per: None,
            }),
            jwt: None,
        };
        let spec = model.spec().unwrap_or_else(|d| panic!("{d}")).normalized();
        let policy = Policy {
            id: PolicyId::new_random(),
            spec,
            version: 1,
            created_at: "2025-01-01T00:00:00Z".into(),
        };
        let back = PolicyModel::from_policy(&policy, Some(&model));
        let rate = back.rate_limit.unwrap_or_else(|| panic!("rate limit"));
        assert_eq!(rate.requests_per_second, rps("0.1"));
        assert_eq!(rate.burst, Some(Number::from(1u32)));
        assert_eq!(rate.per.as_deref(), Some("client_ip"));
        assert_eq!(back.mode.as_deref(), Some("enforce"));
    }
}
