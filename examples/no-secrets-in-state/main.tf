# No secrets in state: the tunnel keeps its long-lived token out of Terraform's state, and each
# run mints a single-use, short-lived enrolment token that Terraform never writes down.
#
# The provider reads the edge's address and an API token from POSTERN_ENDPOINT and
# POSTERN_API_TOKEN.

terraform {
  required_version = ">= 1.11"
  required_providers {
    postern = {
      source  = "postern/postern"
      version = "~> 0.1"
    }
  }
}

provider "postern" {}

resource "postern_tunnel" "web" {
  name        = var.tunnel_name
  store_token = false
}

resource "postern_hostname" "app" {
  hostname  = var.hostname
  service   = var.service
  tunnel_id = postern_tunnel.web.id
}

# Opened on every plan and apply; its token is in neither plan nor state.
ephemeral "postern_enrollment_token" "web" {
  tunnel_id = postern_tunnel.web.id
  ttl       = var.token_ttl
}

# The hand-over, local-only so that `terraform test` can run it: the token goes to a 0600 file
# on the connector's host, read once by `postern tunnel run --token "$(cat FILE)"`. Provisioner
# settings are not stored, so they may hold ephemeral values. In production, pass the token to a
# secret store's write-only attribute instead (see README.md). Bump `enrolment` to hand over a
# fresh token for another connector.
resource "terraform_data" "enrolment" {
  triggers_replace = [postern_tunnel.web.id, var.enrolment]

  provisioner "local-exec" {
    command = "umask 077 && printf '%s' \"$POSTERN_TOKEN\" > \"$TOKEN_FILE\""
    environment = {
      POSTERN_TOKEN = ephemeral.postern_enrollment_token.web.token
      TOKEN_FILE    = var.token_file
    }
  }
}
