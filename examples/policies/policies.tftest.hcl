run "protects_the_api" {
  command = apply

  assert {
    condition     = length(output.policy_ids) == 3 && output.policy_ids[0] == postern_policy.office_only.id
    error_message = "the hostname should apply the three policies in order"
  }

  assert {
    condition     = output.rate_limit.requests_per_second == 50 && output.rate_limit.per == "client_ip"
    error_message = "the rate limit should be stored as declared"
  }

  assert {
    condition     = postern_policy.signed_in.mode == "enforce" && postern_policy.office_only.mode == "enforce"
    error_message = "policies enforce by default"
  }

  assert {
    condition     = contains(postern_policy.public_api.allow_methods, "GET")
    error_message = "the public API allows GET"
  }
}

run "switches_jwt_to_report_only" {
  command = apply

  variables {
    jwt_mode = "report"
  }

  assert {
    condition     = postern_policy.signed_in.mode == "report"
    error_message = "the JWT policy should only report now"
  }
}
