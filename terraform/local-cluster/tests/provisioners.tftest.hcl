# Applies the local root with the stand-in nodes script (it only records its arguments in $RECSYS_NODES_STUB_LOG), so
# the create- and destroy-time provisioners really run; tests/unit/infra/terraform.test.ts reads the record and checks
# the calls and their order (rank 0 up first, down last).

variables {
  cluster_id          = "t2"
  node_count          = 3
  subnet_prefix       = "10.231.8"
  ssh_public_key_path = "tests/fixtures/id_ed25519.pub"
  nodes_script        = "tests/fixtures/nodes-stub.sh"
}

run "apply_calls_the_nodes_script" {
  assert {
    condition     = output.private_addresses == ["10.231.8.10", "10.231.8.11", "10.231.8.12"]
    error_message = "addresses after apply: ${jsonencode(output.private_addresses)}"
  }
}
