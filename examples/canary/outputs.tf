output "stable_token" {
  description = "Connector token of the stable tunnel."
  value       = postern_tunnel.stable.token
  sensitive   = true
}

output "canary_token" {
  description = "Connector token of the canary tunnel."
  value       = postern_tunnel.canary.token
  sensitive   = true
}

output "split" {
  description = "Weight per route, keyed by the route's release."
  value       = { for r in postern_hostname.app.routes : r.selector["release"] => r.weight }
}

output "canary_tunnels" {
  description = "Names of the tunnels labelled release=canary for this app (discovered through the edge)."
  value       = [for t in data.postern_tunnels.canaries.tunnels : t.name]
}
