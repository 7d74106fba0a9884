data "postern_edge" "this" {}

output "edge_zones" {
  value = data.postern_edge.this.zones
}

# Trust the edge CA, e.g. for clients of its HTTPS listener.
output "edge_ca" {
  value = data.postern_edge.this.ca_cert_pem
}
