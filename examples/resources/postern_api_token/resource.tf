# A CI pipeline that manages tunnels, hostnames and policies, but not API tokens.
resource "postern_api_token" "ci" {
  name = "ci-deploy"
  role = "editor"
}

# A dashboard (the status page, Prometheus) that only reads, for a year.
resource "postern_api_token" "dashboard" {
  name       = "dashboard"
  role       = "viewer"
  expires_at = "2027-06-30T00:00:00Z"
}

# Hand the secret to the pipeline (a CI secret, a vault); it is shown only to this
# configuration, and destroying the resource revokes it on every edge node.
output "ci_token" {
  value     = postern_api_token.ci.secret
  sensitive = true
}
