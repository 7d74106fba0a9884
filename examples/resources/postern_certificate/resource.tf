# Bring your own: served for its names at once, before any ACME certificate for them. The key
# is write-only: sent to the edge on create, never in plan or state.
resource "postern_certificate" "shop" {
  certificate_pem = file("${path.module}/shop.example.com.chain.pem")
  private_key_pem = file("${path.module}/shop.example.com.key.pem")
}

# Ask the edge for a wildcard by ACME (the edge runs with --acme-directory). The dns-01
# challenge is answered from the edge's own zone: no DNS provider plug-in.
resource "postern_certificate" "apps" {
  names = ["*.apps.example.com"]
}

# Fail a plan's checks while a hostname is not served with a public certificate.
check "app_has_a_public_certificate" {
  assert {
    condition     = postern_hostname.app.certificate.status == "valid" && postern_hostname.app.certificate.source != "edge_ca"
    error_message = "app.example.com is not served with a valid public certificate yet."
  }
}
