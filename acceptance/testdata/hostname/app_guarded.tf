resource "postern_hostname" "app" {
  hostname   = "{host}"
  service    = "{service}"
  tunnel_id  = postern_tunnel.web.id
  policy_ids = [postern_policy.api.id]
}
