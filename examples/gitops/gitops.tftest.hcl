run "declares_every_service" {
  command = apply

  assert {
    condition     = output.hostnames == { billing = "billing.example.com", storefront = "shop.example.com" }
    error_message = "every service should get its hostname"
  }

  assert {
    condition     = postern_tunnel.service["billing"].labels == tomap({ team = "payments", release = "stable" })
    error_message = "tunnels should be labelled with team and release"
  }

  assert {
    condition     = length(postern_hostname.service["billing"].policy_ids) == 2 && length(postern_hostname.service["storefront"].policy_ids) == 1
    error_message = "internal services get the internal policy too"
  }
}

run "adds_a_service_without_touching_the_others" {
  command = apply

  variables {
    services = {
      billing    = { hostname = "billing.example.com", origin = "http://127.0.0.1:8081", team = "payments", internal = true }
      storefront = { hostname = "shop.example.com", origin = "http://127.0.0.1:8082", team = "web" }
      search     = { hostname = "search.example.com", origin = "http://127.0.0.1:8083", team = "web", release = "canary" }
    }
  }

  assert {
    condition     = length(output.hostnames) == 3 && output.tunnel_ids["billing"] == run.declares_every_service.tunnel_ids["billing"]
    error_message = "adding a service must not replace existing tunnels"
  }
}
