output "hostnames" {
  description = "Public hostname per service."
  value       = { for k, h in postern_hostname.service : k => h.hostname }
}

output "tunnel_ids" {
  description = "Tunnel id per service; fetch a connector token with GET /v1/tunnels/{id}/token or terraform output."
  value       = { for k, t in postern_tunnel.service : k => t.id }
}
