run "splits_ninety_ten" {
  command = apply

  assert {
    condition     = output.split == { stable = 90, canary = 10 }
    error_message = "the default split should be 90/10"
  }

  assert {
    condition     = postern_tunnel.canary.labels["release"] == "canary" && postern_tunnel.stable.labels["release"] == "stable"
    error_message = "the tunnels should carry their release labels"
  }

  assert {
    condition     = output.canary_tunnels == ["shop-canary"]
    error_message = "discovery should find exactly the canary tunnel"
  }
}

run "moves_to_fifty_fifty" {
  command = apply

  variables {
    canary_weight = 50
  }

  assert {
    condition     = output.split == { stable = 50, canary = 50 }
    error_message = "the split should follow canary_weight"
  }
}

run "rejects_an_out_of_range_weight" {
  command = plan

  variables {
    canary_weight = 100
  }

  expect_failures = [var.canary_weight]
}
