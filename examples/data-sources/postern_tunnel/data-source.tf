# By name (or by id); the token is never exposed by the data source.
data "postern_tunnel" "web" {
  name = "web"
}

output "web_labels" {
  value = data.postern_tunnel.web.labels
}
