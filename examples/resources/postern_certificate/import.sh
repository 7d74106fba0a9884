# A certificate is imported by its id (GET /v1/certificates lists them). The edge never returns
# a key or a chain: an imported ACME certificate (names) matches its configuration at once; an
# imported upload is uploaded again by the next apply, from its configuration.
terraform import postern_certificate.apps 7d4cbf5e-1b0e-4c0a-9a8e-0d2b8c1f5e21
