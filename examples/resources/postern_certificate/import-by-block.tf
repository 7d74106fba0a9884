import {
  to = postern_certificate.apps
  id = "7d4cbf5e-1b0e-4c0a-9a8e-0d2b8c1f5e21"
}
