import {
  to = postern_hostname.app
  id = "app.example.com"
}
