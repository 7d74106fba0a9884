variable "tunnel_name" {
  description = "Name of the tunnel the connector enrols as."
  type        = string
  default     = "quickstart"
}

variable "hostname" {
  description = "Public hostname served through the tunnel; must lie inside one of the edge's zones."
  type        = string
  default     = "hello.example.com"
}

variable "service" {
  description = "Origin as seen from the connector's host: http://..., https://... or http_status:NNN."
  type        = string
  default     = "http://127.0.0.1:4000"
}
