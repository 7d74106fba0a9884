resource "postern_hostname" "{name}" {
  hostname = "{host}"
  service  = "{service}"
  routes = [
    { selector = { release = "stable" }, weight = 90 },
    { selector = { release = "canary" }, weight = 10 },
  ]
}
