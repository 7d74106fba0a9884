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

# People log in at the team's OpenID Connect provider before they reach the application.
resource "postern_policy" "people" {
  name = "people"

  oidc = {
    issuer    = "https://id.example.com"
    client_id = "postern"
    # Write-only: sent to the edge, never kept in state. Change the version to send a new one.
    client_secret         = var.oidc_client_secret
    client_secret_version = 1
    allowed_email_domains = ["example.com"]
    allowed_groups        = ["ops"]
    session_duration      = "12h"
  }
}

variable "oidc_client_secret" {
  description = "The client secret registered at the OpenID provider."
  type        = string
  sensitive   = true
}

# A password for a staging site: the hash (argon2 or bcrypt, in PHC form), never the password.
resource "postern_policy" "staging" {
  name = "staging"

  basic_auth = {
    users = {
      tester = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
    }
  }
}
