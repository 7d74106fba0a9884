# A policy is imported by its id (GET /v1/policies lists them).
terraform import postern_policy.api 0b7e2d5c-3f1a-4c55-8a0e-2f6b8f0c9d11
