terraform {
  required_providers {
    postern = {
      source  = "postern/postern"
      version = "~> 0.1"
    }
  }
}

# These settings can come from the environment instead:
# POSTERN_ENDPOINT, POSTERN_API_TOKEN and POSTERN_CA_CERT.
provider "postern" {
  endpoint  = "http://127.0.0.1:7070"
  api_token = var.postern_api_token

  # For an API served over TLS (https://), the CA that signed its certificate; with
  # `postern-edge --api-tls edge-ca` that is the edge's <data-dir>/ca.pem.
  # ca_cert_pem = file("ca.pem")

  # An apply returns once every connected connector of the affected tunnels serves the
  # change, and fails naming the connectors that do not within this time ("0s": no wait).
  rollout_timeout = "30s"
}

variable "postern_api_token" {
  description = "An API token of the edge: an editor token for a pipeline (the admin token is in <data-dir>/admin-token)."
  type        = string
  sensitive   = true
}
