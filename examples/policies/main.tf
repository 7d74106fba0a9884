# Edge policies: the edge checks every request against a hostname's policies, in order, before
# anything reaches the tunnel. The first deny wins.

terraform {
  required_version = ">= 1.10"
  required_providers {
    postern = {
      source  = "postern/postern"
      version = "~> 0.1"
    }
  }
}

provider "postern" {}

resource "postern_tunnel" "api" {
  name = "api"
}

# Only the office network, never the guest Wi-Fi inside it.
resource "postern_policy" "office_only" {
  name      = "office-only"
  allow_ips = var.office_cidrs
  deny_ips  = var.guest_cidrs
}

# Read-only access to the public part of the API, 50 requests per second per client IP.
resource "postern_policy" "public_api" {
  name          = "public-api"
  allow_methods = ["GET", "HEAD"]
  allow_paths   = ["/v1/**", "/healthz"]

  rate_limit = {
    requests_per_second = var.requests_per_second
    burst               = var.requests_per_second
    per                 = "client_ip"
  }
}

# Callers must present a JWT signed with the shared secret, issued by our identity provider.
resource "postern_policy" "signed_in" {
  name = "signed-in"
  mode = var.jwt_mode

  jwt = {
    issuer       = var.jwt_issuer
    audiences    = ["api"]
    hs256_secret = var.jwt_secret
  }
}

resource "postern_hostname" "api" {
  hostname   = var.hostname
  service    = "http://127.0.0.1:8000"
  tunnel_id  = postern_tunnel.api.id
  policy_ids = [postern_policy.office_only.id, postern_policy.public_api.id, postern_policy.signed_in.id]
}
