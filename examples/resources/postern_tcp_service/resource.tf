# SSH to a host that is not on the internet: the edge listens on a port of its --tcp-ports
# range (the one it picks, or listen_port) and carries each connection down the tunnel.
resource "postern_policy" "office" {
  name      = "office"
  allow_ips = ["198.51.100.0/24"]

  # Connections per second per client address.
  rate_limit = {
    requests_per_second = 2
    burst               = 10
  }
}

resource "postern_tcp_service" "ssh" {
  name       = "ssh"
  service    = "tcp://127.0.0.1:22"
  tunnel_id  = postern_tunnel.web.id
  policy_ids = [postern_policy.office.id]
}

# A database on a fixed port, served by whichever tunnel carries release = "stable".
resource "postern_tcp_service" "db" {
  name        = "db"
  service     = "tcp://127.0.0.1:5432"
  listen_port = 25432
  routes      = [{ selector = { release = "stable" }, weight = 1 }]
}

output "ssh_address" {
  value = postern_tcp_service.ssh.listen # e.g. "203.0.113.7:20000": ssh -p 20000 203.0.113.7
}
