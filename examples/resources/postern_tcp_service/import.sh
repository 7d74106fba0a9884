# A TCP service is imported by its id (GET /v1/tcp-services lists them).
terraform import postern_tcp_service.ssh 6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11
