variable "app" {
  description = "Application name, used in tunnel names and labels."
  type        = string
  default     = "shop"
}

variable "hostname" {
  description = "Public hostname split between the releases."
  type        = string
  default     = "shop.example.com"
}

variable "service" {
  description = "Origin as seen from each connector's host."
  type        = string
  default     = "http://127.0.0.1:4000"
}

variable "canary_weight" {
  description = "Percent of requests sent to release=canary (1 to 99)."
  type        = number
  default     = 10

  validation {
    condition     = var.canary_weight >= 1 && var.canary_weight <= 99
    error_message = "canary_weight must be between 1 and 99."
  }
}
