output "tunnel_id" {
  description = "The tunnel's id."
  value       = postern_tunnel.web.id
}

output "token_file" {
  description = "Where the single-use token was handed over: postern tunnel run --token \"$(cat FILE)\"."
  value       = var.token_file
}
