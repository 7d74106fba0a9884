# The quickstart: one tunnel and one public hostname served through it.
#
# The provider reads the edge's address and an API token from POSTERN_ENDPOINT and
# POSTERN_API_TOKEN (run.sh sets both).

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

resource "postern_tunnel" "quickstart" {
  name = var.tunnel_name
  labels = {
    release = "stable"
  }
}

resource "postern_hostname" "hello" {
  hostname  = var.hostname
  service   = var.service
  tunnel_id = postern_tunnel.quickstart.id
}
