# tflint with its bundled terraform ruleset, every rule on (the AWS ruleset is a plugin that
# would be downloaded; tests/aws/test_terraform.py runs this offline).
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
