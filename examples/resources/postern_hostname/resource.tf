# Served by one tunnel.
resource "postern_hostname" "app" {
  hostname   = "app.example.com"
  service    = "http://localhost:4000"
  tunnel_id  = postern_tunnel.web.id
  policy_ids = [postern_policy.api.id]

  origin = {
    connect_timeout_ms = 2000
  }
}

# Split between tunnels by label: 90% stable, 10% canary.
resource "postern_hostname" "shop" {
  hostname = "shop.example.com"
  service  = "http://localhost:8080"

  routes = [
    { selector = { release = "stable" }, weight = 90 },
    { selector = { release = "canary" }, weight = 10 },
  ]
}
