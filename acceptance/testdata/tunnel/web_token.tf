output "token" {
  value     = postern_tunnel.web.token
  sensitive = true
}
