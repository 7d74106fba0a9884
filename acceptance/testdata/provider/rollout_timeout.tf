provider "postern" {
  rollout_timeout = "{rollout_timeout}"
}
