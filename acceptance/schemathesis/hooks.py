"""Schemathesis hooks for `acceptance/tests/openapi_contract.rs`.

One check replaces Schemathesis' own `positive_data_acceptance`: a request that
`schema/openapi.json` allows must be accepted (2xx), except for the answers the
document itself declares for the rules no schema can say:

* 404, 409 and 412, where the operation documents them (an id that names
  nothing, a name another object has, a version that no longer matches);
* 400 with code `invalid` whose `path` is a pointer listed in the operation's
  400 response under `x-postern-rules` (`*` stands for any one token), or that
  answers an `exclusive` rule listed there when the request gave more than one
  of those query parameters.

Anything else (any other 4xx, a 400 at another pointer) fails the run.
"""

import schemathesis

# The answers an operation may give to a request its document allows, when it documents them.
DECLARED_REFUSALS = ("404", "409", "412")


def _responses(case):
    return case.operation.definition.raw.get("responses", {})


def _pointer_matches(template, pointer):
    wanted = template.split("/")
    got = pointer.split("/")
    return len(wanted) == len(got) and all(w in ("*", g) for w, g in zip(wanted, got))


def _declared_400(case, response):
    """Whether a 400 answers one of the operation's `x-postern-rules`."""
    rules = _responses(case).get("400", {}).get("x-postern-rules", [])
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if error.get("code") != "invalid":
        return False
    pointer = error.get("path", "")
    query = case.query or {}
    for rule in rules:
        if "pointer" in rule and _pointer_matches(rule["pointer"], pointer):
            return True
        exclusive = rule.get("exclusive")
        if exclusive and sum(1 for name in exclusive if name in query) > 1:
            return True
    return False


@schemathesis.check
def positive_data_acceptance_as_documented(ctx, response, case):
    """A request the document allows is accepted, or refused only as the document declares."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500:
        # 5xx is `not_a_server_error`'s to judge.
        return None
    if str(status) in DECLARED_REFUSALS and str(status) in _responses(case):
        return None
    if status == 400 and _declared_400(case, response):
        return None
    raise AssertionError(
        f"The document allows this request, but the edge refused it with {status} "
        f"(allowed: 2xx, the operation's documented {', '.join(DECLARED_REFUSALS)}, "
        f"and 400s listed under x-postern-rules)\n{response.text}"
    )



@schemathesis.hook
def before_call(ctx, case, kwargs):
    """`GET /v1/requests?follow=true` streams until the client goes away, which a generated
    request never does: it is asked without `follow` here (in every phase), and followed by
    `acceptance/tests/access_log.rs`."""
    if case.operation.path == "/v1/requests" and isinstance(case.query, dict):
        if str(case.query.get("follow")).lower() == "true":
            del case.query["follow"]
