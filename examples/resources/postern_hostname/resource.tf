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

# Several services on one hostname: /api to a gRPC server (HTTP/2 without TLS), /admin
# behind its own policy, everything else to the web server. The longest prefix wins.
resource "postern_hostname" "store" {
  hostname  = "store.example.com"
  service   = "http://localhost:3000"
  tunnel_id = postern_tunnel.web.id

  paths = [
    { prefix = "/api", service = "h2c://localhost:50051" },
    { prefix = "/admin", service = "http://localhost:3001", policy_ids = [postern_policy.api.id] },
  ]
}

# An HTTPS origin spoken to in HTTP/2, verified against a private CA under its own name.
resource "postern_hostname" "grpc" {
  hostname  = "grpc.example.com"
  service   = "https://10.0.0.7:8443"
  tunnel_id = postern_tunnel.web.id

  origin = {
    http2       = true
    ca_cert_pem = file("${path.module}/origin-ca.pem")
    server_name = "grpc.internal"
  }
}

# Every name one label below dev.example.com (a.dev…, b.dev…), in DNS and on HTTPS;
# a hostname declared under it (say api.dev.example.com) wins over the wildcard.
resource "postern_hostname" "previews" {
  hostname  = "*.dev.example.com"
  service   = "http://localhost:5173"
  tunnel_id = postern_tunnel.web.id
}
