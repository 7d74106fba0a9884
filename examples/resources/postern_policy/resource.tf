resource "postern_policy" "api" {
  name          = "api"
  allow_ips     = ["10.0.0.0/8", "192.0.2.10"]
  deny_ips      = ["10.99.0.0/16"]
  allow_methods = ["GET", "POST"]
  allow_paths   = ["/v1/**", "/healthz"]

  rate_limit = {
    requests_per_second = 50
    burst               = 100
    per                 = "client_ip"
  }

  jwt = {
    issuer    = "https://id.example.com/"
    audiences = ["api"]
    # Write-only: sent to the edge, never kept in state. Change the version to send a new one.
    hs256_secret         = var.jwt_secret
    hs256_secret_version = 1
  }
}

variable "jwt_secret" {
  description = "HS256 secret shared with the identity provider."
  type        = string
  sensitive   = true
}
