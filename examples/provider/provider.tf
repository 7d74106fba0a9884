terraform {
  required_providers {
    postern = {
      source  = "postern/postern"
      version = "~> 0.1"
    }
  }
}

# Both settings can come from the environment instead:
# POSTERN_ENDPOINT and POSTERN_API_TOKEN.
provider "postern" {
  endpoint  = "http://127.0.0.1:7070"
  api_token = var.postern_api_token

  # An apply returns once every connected connector of the affected tunnels serves the
  # change, and fails naming the connectors that do not within this time ("0s": no wait).
  rollout_timeout = "30s"
}

variable "postern_api_token" {
  description = "An API token of the edge (the admin token is in <data-dir>/admin-token)."
  type        = string
  sensitive   = true
}
