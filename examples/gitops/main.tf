# GitOps: the whole edge configuration of a team, reviewed as pull requests. Each entry of
# var.services becomes a tunnel (labelled with its team and release) and a hostname; shared
# policies are attached by name. The pipeline in .github/workflows/postern.yml plans on every
# pull request, applies on merge and checks for drift every night.

terraform {
  required_version = ">= 1.10"
  required_providers {
    postern = {
      source  = "postern/postern"
      version = "~> 0.1"
    }
  }

  # Keep state where the pipeline can reach it and lock it, e.g.:
  # backend "s3" { bucket = "acme-terraform" key = "postern/edge.tfstate" region = "eu-west-1" }
}

provider "postern" {}

locals {
  policies = {
    internal = {
      allow_ips = var.internal_cidrs
    }
    rate-limited = {
      requests_per_second = 100
    }
  }
}

resource "postern_policy" "internal" {
  name      = "internal"
  allow_ips = local.policies.internal.allow_ips
}

resource "postern_policy" "rate_limited" {
  name = "rate-limited"
  rate_limit = {
    requests_per_second = local.policies["rate-limited"].requests_per_second
  }
}

resource "postern_tunnel" "service" {
  for_each = var.services

  name = each.key
  labels = {
    team    = each.value.team
    release = each.value.release
  }
}

resource "postern_hostname" "service" {
  for_each = var.services

  hostname  = each.value.hostname
  service   = each.value.origin
  tunnel_id = postern_tunnel.service[each.key].id
  policy_ids = concat(
    each.value.internal ? [postern_policy.internal.id] : [],
    [postern_policy.rate_limited.id],
  )
}
