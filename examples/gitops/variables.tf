variable "services" {
  description = "The team's services: tunnel name => hostname, origin (as seen from the connector), team, release label, and whether only internal networks may reach it."
  type = map(object({
    hostname = string
    origin   = string
    team     = string
    release  = optional(string, "stable")
    internal = optional(bool, false)
  }))
  default = {
    billing = {
      hostname = "billing.example.com"
      origin   = "http://127.0.0.1:8081"
      team     = "payments"
      internal = true
    }
    storefront = {
      hostname = "shop.example.com"
      origin   = "http://127.0.0.1:8082"
      team     = "web"
    }
  }
}

variable "internal_cidrs" {
  description = "Networks that count as internal."
  type        = list(string)
  default     = ["127.0.0.0/8", "10.0.0.0/8"]
}
