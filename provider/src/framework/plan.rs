//! Standard planning, the part of PlanResourceChange every resource shares: start from
//! Terraform's proposed new state, fill defaults, null write-only attributes, mark
//! computed attributes the configuration leaves unset as unknown (unless they are
//! stable and already known), and list the changed attributes that force replacement.
//!
//! Rules, in Terraform's terms (see `plans/objchange/plan_valid.go`):
//! - proposed = prior merged with config; a computed attribute with a null config value
//!   arrives holding its prior value (null on create);
//! - on create every such attribute becomes unknown ("known after apply"), except those
//!   with a default;
//! - on update the plan is first compared with the prior state; if nothing changed the
//!   plan *is* the prior state (no diff). Otherwise such attributes become unknown,
//!   except stable ones whose prior value is known;
//! - set elements cannot be matched with prior elements reliably, so computed attributes
//!   inside set-nested objects become unknown whenever the resource changes.

use super::diagnostics::{AttributePath, PathStep};
use super::schema::{Attribute, AttributeKind, Attributes, Nesting, Schema};
use super::value::Value;

/// The planned state before the resource's own plan hook runs.
///
/// `prior` is `None` on create. `config` and `proposed` are Terraform's (non-null: a
/// destroy is planned elsewhere).
pub(crate) fn plan_standard(
    schema: &Schema,
    prior: Option<&Value>,
    config: &Value,
    proposed: &Value,
) -> Value {
    let mut planned = proposed.clone();
    apply_defaults(&schema.attributes, config, &mut planned);
    let changed = prior.is_none_or(|prior| &planned != prior);
    if changed {
        mark_unknown(&schema.attributes, config, &mut planned, prior);
    }
    planned
}

/// The attributes marked [`Attribute::requires_replace`] whose planned value differs
/// from the prior one. Only meaningful on update.
pub(crate) fn requires_replace(
    schema: &Schema,
    prior: &Value,
    planned: &Value,
) -> Vec<AttributePath> {
    let mut out = Vec::new();
    replace_paths(
        &schema.attributes,
        prior,
        planned,
        &mut AttributePath::new(),
        &mut out,
    );
    out
}

/// Sets every write-only attribute, at any depth, to null (Terraform requires that of
/// plans, new states and imports).
pub(crate) fn null_write_only(attributes: &Attributes, value: &mut Value) {
    for (name, attr) in attributes.iter() {
        let Some(slot) = value.get_mut(name) else {
            continue;
        };
        if attr.write_only {
            *slot = Value::Null;
            continue;
        }
        if let AttributeKind::Nested(nesting, nested) = &attr.kind {
            for element in nested_elements_mut(*nesting, slot) {
                null_write_only(nested, element);
            }
        }
    }
}

fn apply_defaults(attributes: &Attributes, config: &Value, planned: &mut Value) {
    for (name, attr) in attributes.iter() {
        let config_value = config.get(name).unwrap_or(&Value::Null);
        let Some(slot) = planned.get_mut(name) else {
            continue;
        };
        if attr.write_only {
            *slot = Value::Null;
            continue;
        }
        if config_value.is_null() {
            if let Some(default) = &attr.default
                && attr.computed
            {
                *slot = default.clone();
            }
            continue;
        }
        if let AttributeKind::Nested(nesting, nested) = &attr.kind {
            for_each_nested_pair(*nesting, config_value, slot, |cfg, element| {
                apply_defaults(nested, cfg.unwrap_or(&Value::Null), element);
            });
        }
    }
}

fn mark_unknown(
    attributes: &Attributes,
    config: &Value,
    planned: &mut Value,
    prior: Option<&Value>,
) {
    for (name, attr) in attributes.iter() {
        let config_value = config.get(name).unwrap_or(&Value::Null);
        let prior_value = prior.and_then(|p| p.get(name));
        let Some(slot) = planned.get_mut(name) else {
            continue;
        };
        if attr.write_only {
            continue;
        }
        if attr.computed && config_value.is_null() && attr.default.is_none() {
            *slot = match prior_value {
                Some(known) if carries_prior(attr, known) => known.clone(),
                _ => Value::Unknown,
            };
            continue;
        }
        let AttributeKind::Nested(nesting, nested) = &attr.kind else {
            continue;
        };
        match nesting {
            Nesting::Single => {
                let prior_object = prior_value.filter(|v| !v.is_null() && !v.is_unknown());
                if !slot.is_null() && !slot.is_unknown() {
                    mark_unknown(nested, config_value, slot, prior_object);
                }
            }
            Nesting::List => {
                let prior_elements = prior_value.and_then(Value::as_elements).unwrap_or(&[]);
                let config_elements = config_value.as_elements().unwrap_or(&[]);
                if let Value::List(elements) = slot {
                    for (i, element) in elements.iter_mut().enumerate() {
                        if element.is_null() || element.is_unknown() {
                            continue;
                        }
                        let cfg = config_elements.get(i).unwrap_or(&Value::Null);
                        mark_unknown(nested, cfg, element, prior_elements.get(i));
                    }
                }
            }
        }
    }
}

/// Whether a stable attribute keeps its prior value in the plan.
fn carries_prior(attr: &Attribute, prior: &Value) -> bool {
    attr.stable && !prior.is_null() && prior.is_wholly_known()
}

fn replace_paths(
    attributes: &Attributes,
    prior: &Value,
    planned: &Value,
    path: &mut AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for (name, attr) in attributes.iter() {
        let before = prior.get(name).unwrap_or(&Value::Null);
        let after = planned.get(name).unwrap_or(&Value::Null);
        path.push(PathStep::Attribute(name.to_owned()));
        if attr.requires_replace {
            if before != after {
                out.push(path.clone());
            }
        } else if let AttributeKind::Nested(nesting, nested) = &attr.kind
            && !after.is_null()
            && !after.is_unknown()
        {
            match nesting {
                Nesting::Single => replace_paths(nested, before, after, path, out),
                Nesting::List => {
                    let prior_elements = before.as_elements().unwrap_or(&[]);
                    for (i, element) in after.as_elements().unwrap_or(&[]).iter().enumerate() {
                        path.push(PathStep::Index(i as i64));
                        let before = prior_elements.get(i).unwrap_or(&Value::Null);
                        replace_paths(nested, before, element, path, out);
                        path.pop();
                    }
                }
            }
        }
        path.pop();
    }
}

/// Calls `f` with each nested object of `slot` and the matching configuration object.
fn for_each_nested_pair(
    nesting: Nesting,
    config: &Value,
    slot: &mut Value,
    mut f: impl FnMut(Option<&Value>, &mut Value),
) {
    if slot.is_null() || slot.is_unknown() {
        return;
    }
    match (nesting, slot) {
        (Nesting::Single, slot) => f(Some(config), slot),
        (Nesting::List, Value::List(elements)) => {
            let config_elements = config.as_elements().unwrap_or(&[]);
            for (i, element) in elements.iter_mut().enumerate() {
                f(config_elements.get(i), element);
            }
        }
        _ => {}
    }
}

fn nested_elements_mut(nesting: Nesting, slot: &mut Value) -> Vec<&mut Value> {
    match (nesting, slot) {
        (_, Value::Null | Value::Unknown) => Vec::new(),
        (Nesting::Single, slot) => vec![slot],
        (Nesting::List, Value::List(v)) => v.iter_mut().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
