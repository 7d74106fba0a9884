# terraform test: runs against the edge named by POSTERN_ENDPOINT / POSTERN_API_TOKEN.

run "keeps_the_long_lived_token_out_of_state" {
  command = apply

  assert {
    condition     = postern_tunnel.web.token == null && postern_tunnel.web.store_token == false
    error_message = "with store_token = false the tunnel's token must not be in state"
  }

  assert {
    condition     = startswith(file(var.token_file), "postern1.")
    error_message = "the single-use enrolment token should have been handed over"
  }

  assert {
    condition     = postern_hostname.app.tunnel_id == postern_tunnel.web.id
    error_message = "the hostname should be served by the tunnel"
  }
}

run "a_new_round_hands_over_a_fresh_token" {
  command = apply

  variables {
    enrolment = 2
  }

  assert {
    condition     = output.tunnel_id == run.keeps_the_long_lived_token_out_of_state.tunnel_id
    error_message = "a new enrolment round must not replace the tunnel"
  }

  assert {
    condition     = startswith(file(var.token_file), "postern1.")
    error_message = "a fresh single-use token should have been handed over"
  }
}
