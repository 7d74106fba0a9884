variable "tunnel_name" {
  description = "Name of the tunnel the connector enrols as."
  type        = string
  default     = "no-secrets"
}

variable "hostname" {
  description = "Public hostname served through the tunnel; must lie inside one of the edge's zones."
  type        = string
  default     = "vault.example.com"
}

variable "service" {
  description = "Origin as seen from the connector's host: http://..., https://... or http_status:NNN."
  type        = string
  default     = "http://127.0.0.1:4000"
}

variable "token_ttl" {
  description = "How long the single-use enrolment token stays usable (30s to 24h)."
  type        = string
  default     = "15m"
}

variable "token_file" {
  description = "Where the enrolment token is handed over to the connector's host (written with mode 0600)."
  type        = string
  default     = "enrolment-token"
}

variable "enrolment" {
  description = "Change it to hand over a fresh single-use token (for another connector)."
  type        = number
  default     = 1
}
