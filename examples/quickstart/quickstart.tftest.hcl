# terraform test: runs against the edge named by POSTERN_ENDPOINT / POSTERN_API_TOKEN.

run "creates_a_tunnel_and_a_hostname" {
  command = apply

  assert {
    condition     = postern_tunnel.quickstart.name == "quickstart"
    error_message = "the tunnel should be named after var.tunnel_name"
  }

  assert {
    condition     = startswith(postern_tunnel.quickstart.token, "postern1.")
    error_message = "the tunnel should carry a connector token"
  }

  assert {
    condition     = postern_hostname.hello.tunnel_id == postern_tunnel.quickstart.id
    error_message = "the hostname should be served by the quickstart tunnel"
  }

  assert {
    condition     = output.hostname == "hello.example.com" && length(output.addresses) > 0
    error_message = "the hostname should resolve to the edge's public addresses"
  }
}

run "changes_the_service_in_place" {
  command = apply

  variables {
    service = "http_status:204"
  }

  assert {
    condition     = postern_hostname.hello.service == "http_status:204"
    error_message = "the service should be updated"
  }

  assert {
    condition     = output.tunnel_id == run.creates_a_tunnel_and_a_hostname.tunnel_id
    error_message = "changing the service must not replace the tunnel"
  }
}
