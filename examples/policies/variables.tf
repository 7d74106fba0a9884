variable "hostname" {
  description = "Public hostname protected by the policies."
  type        = string
  default     = "api.example.com"
}

variable "office_cidrs" {
  description = "Networks allowed to reach the API."
  type        = list(string)
  default     = ["127.0.0.0/8", "10.0.0.0/8"]
}

variable "guest_cidrs" {
  description = "Networks denied even inside the office ranges (deny wins)."
  type        = list(string)
  default     = ["10.99.0.0/16"]
}

variable "requests_per_second" {
  description = "Rate limit per client IP; also the burst."
  type        = number
  default     = 50
}

variable "jwt_issuer" {
  description = "Required iss claim of the tokens."
  type        = string
  default     = "https://id.example.com/"
}

variable "jwt_secret" {
  description = "HS256 secret shared with the identity provider (at least 16 characters)."
  type        = string
  sensitive   = true
  default     = "change-me-to-a-long-random-secret"
}

variable "jwt_mode" {
  description = "enforce blocks requests without a valid token; report only counts and logs them."
  type        = string
  default     = "enforce"
}
