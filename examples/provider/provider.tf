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
}

variable "postern_api_token" {
  description = "An API token of the edge (the admin token is in <data-dir>/admin-token)."
  type        = string
  sensitive   = true
}
