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
