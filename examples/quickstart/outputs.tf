output "tunnel_id" {
  description = "The tunnel's id."
  value       = postern_tunnel.quickstart.id
}

output "tunnel_token" {
  description = "What the connector needs: postern tunnel run --token \"$(terraform output -raw tunnel_token)\"."
  value       = postern_tunnel.quickstart.token
  sensitive   = true
}

output "hostname" {
  description = "The public hostname."
  value       = postern_hostname.hello.hostname
}

output "addresses" {
  description = "What the edge's DNS answers for the hostname."
  value       = postern_hostname.hello.addresses
}
