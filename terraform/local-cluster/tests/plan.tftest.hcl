# The local root at plan level (no provisioner runs, no namespace is made): addresses, the inventory contract and the
# inputs it refuses. tests/fixtures holds a public key and a stand-in for nodes.sh.

variables {
  cluster_id          = "t1"
  node_count          = 3
  subnet_prefix       = "10.231.7"
  ssh_public_key_path = "tests/fixtures/id_ed25519.pub"
  nodes_script        = "tests/fixtures/nodes-stub.sh"
}

run "addresses_and_inventory" {
  command = plan

  assert {
    condition     = output.head_address == "10.231.7.10"
    error_message = "rank 0 sits at <prefix>.10, got ${output.head_address}"
  }
  assert {
    condition     = output.private_addresses == ["10.231.7.10", "10.231.7.11", "10.231.7.12"]
    error_message = "node i sits at <prefix>.<10+i>: ${jsonencode(output.private_addresses)}"
  }
  assert {
    condition     = output.node_names == ["rsc-t1-0", "rsc-t1-1", "rsc-t1-2"]
    error_message = "nodes are the namespaces rsc-<id>-<i>: ${jsonencode(output.node_names)}"
  }
  assert {
    condition = yamldecode(output.ansible_inventory) == {
      training_nodes = {
        hosts = {
          node0 = { ansible_host = "10.231.7.10", node_rank = 0, private_address = "10.231.7.10" }
          node1 = { ansible_host = "10.231.7.11", node_rank = 1, private_address = "10.231.7.11" }
          node2 = { ansible_host = "10.231.7.12", node_rank = 2, private_address = "10.231.7.12" }
        }
        vars = { nnodes = 3, rdzv_endpoint = "10.231.7.10:29500", ansible_user = "root" }
      }
    }
    error_message = "inventory: ${output.ansible_inventory}"
  }
  assert {
    condition     = module.head.address == "10.231.7.10" && length(module.workers) == 2
    error_message = "one head and node_count - 1 workers"
  }
}

run "one_node" {
  command = plan
  variables {
    node_count = 1
  }

  assert {
    condition     = length(module.workers) == 0 && keys(yamldecode(output.ansible_inventory).training_nodes.hosts) == ["node0"]
    error_message = "one node: ${output.ansible_inventory}"
  }
}

run "rejects_a_cluster_id_too_long_for_interface_names" {
  command = plan
  variables {
    cluster_id = "abcdefghi"
  }
  expect_failures = [var.cluster_id]
}

run "rejects_an_upper_case_cluster_id" {
  command = plan
  variables {
    cluster_id = "Run1"
  }
  expect_failures = [var.cluster_id]
}

run "rejects_zero_nodes" {
  command = plan
  variables {
    node_count = 0
  }
  expect_failures = [var.node_count]
}

run "rejects_nine_nodes" {
  command = plan
  variables {
    node_count = 9
  }
  expect_failures = [var.node_count]
}

run "rejects_a_full_address_as_prefix" {
  command = plan
  variables {
    subnet_prefix = "10.231.7.0"
  }
  expect_failures = [var.subnet_prefix]
}

run "rejects_an_octet_over_255" {
  command = plan
  variables {
    subnet_prefix = "10.256.7"
  }
  expect_failures = [var.subnet_prefix]
}

run "rejects_a_missing_public_key" {
  command = plan
  variables {
    ssh_public_key_path = "tests/fixtures/missing.pub"
  }
  expect_failures = [var.ssh_public_key_path]
}

run "rejects_a_file_that_is_not_a_public_key" {
  command = plan
  variables {
    ssh_public_key_path = "tests/fixtures/nodes-stub.sh"
  }
  expect_failures = [var.ssh_public_key_path]
}

run "rejects_a_missing_nodes_script" {
  command = plan
  variables {
    nodes_script = "tests/fixtures/missing.sh"
  }
  expect_failures = [var.nodes_script]
}
