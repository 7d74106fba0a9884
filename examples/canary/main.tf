# A canary release: two tunnels told apart by their `release` label, and one hostname that
# sends var.canary_weight percent of requests to `release=canary` and the rest to
# `release=stable`. Run one connector with each tunnel's token.

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

resource "postern_tunnel" "stable" {
  name = "${var.app}-stable"
  labels = {
    app     = var.app
    release = "stable"
  }
}

resource "postern_tunnel" "canary" {
  name = "${var.app}-canary"
  labels = {
    app     = var.app
    release = "canary"
  }
}

resource "postern_hostname" "app" {
  hostname = var.hostname
  service  = var.service

  routes = [
    {
      selector = { app = var.app, release = "stable" }
      weight   = 100 - var.canary_weight
    },
    {
      selector = { app = var.app, release = "canary" }
      weight   = var.canary_weight
    },
  ]

  # The routes select tunnels by label; make sure both exist before traffic is routed.
  depends_on = [postern_tunnel.stable, postern_tunnel.canary]
}

# Discovery: every tunnel currently labelled as a canary of this app.
data "postern_tunnels" "canaries" {
  selector = {
    app     = var.app
    release = "canary"
  }
  depends_on = [postern_tunnel.canary]
}
