# Discovery: every tunnel labelled release=canary, with its live connector count.
data "postern_tunnels" "canary" {
  selector = {
    release = "canary"
  }
}

output "connected_canaries" {
  value = [for t in data.postern_tunnels.canary.tunnels : t.name if t.connections > 0]
}
