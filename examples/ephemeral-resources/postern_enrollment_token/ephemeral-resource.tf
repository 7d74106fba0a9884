resource "postern_tunnel" "web" {
  name        = "web"
  store_token = false # no long-lived connector secret in state
}

# Minted on every run, never written to plan or state; it enrols one connector, once.
ephemeral "postern_enrollment_token" "web" {
  tunnel_id = postern_tunnel.web.id
  ttl       = "15m"
}

# Hand it to a secret store through a write-only attribute (Terraform 1.11+); the connector
# host reads it from there: postern tunnel run --token "$(aws secretsmanager get-secret-value …)".
# Bump secret_string_wo_version to enrol another connector with a fresh token.
resource "aws_secretsmanager_secret" "web_connector" {
  name = "postern/web/enrollment-token"
}

resource "aws_secretsmanager_secret_version" "web_connector" {
  secret_id                = aws_secretsmanager_secret.web_connector.id
  secret_string_wo         = ephemeral.postern_enrollment_token.web.token
  secret_string_wo_version = 1
}
