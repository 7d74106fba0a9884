output "policy_ids" {
  description = "The policies applied to the hostname, in order."
  value       = postern_hostname.api.policy_ids
}

output "rate_limit" {
  description = "The public API's rate limit as the edge stores it."
  value       = postern_policy.public_api.rate_limit
}
