import {
  to = postern_tcp_service.ssh
  id = "6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11"
}
