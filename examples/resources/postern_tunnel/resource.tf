resource "postern_tunnel" "web" {
  name = "web"
  labels = {
    app     = "shop"
    release = "stable"
  }
}

# The connector needs the token: postern tunnel run --token "$(terraform output -raw web_token)"
output "web_token" {
  value     = postern_tunnel.web.token
  sensitive = true
}

# Or keep the long-lived token out of state: connectors enrol with single-use tokens from
# the postern_enrollment_token ephemeral resource instead.
resource "postern_tunnel" "api" {
  name        = "api"
  store_token = false
}
