resource "postern_tunnel" "web" {
  name   = "web"
  labels = {labels}
}
