# An API token is imported by its id (GET /v1/tokens lists them); its secret cannot be read
# back, so an imported token's `secret` is null.
terraform import postern_api_token.ci 0b7e3c44-51f2-4d8b-b1a4-6f0f1f8b2c3d
