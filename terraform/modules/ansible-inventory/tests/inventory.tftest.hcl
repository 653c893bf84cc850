# The inventory contract, with distinct addresses per rank (a mocked provider gives every instance the same values).

variables {
  private_addresses = ["10.52.0.11", "10.52.0.12", "10.52.0.13"]
  head_address      = "203.0.113.30"
  ssh_user          = "cc"
  jump_through_head = true
}

run "workers_jump_through_rank_0" {
  command = plan

  assert {
    condition = yamldecode(output.yaml) == {
      training_nodes = {
        hosts = {
          node0 = { ansible_host = "203.0.113.30", node_rank = 0, private_address = "10.52.0.11" }
          node1 = { ansible_host = "10.52.0.12", node_rank = 1, private_address = "10.52.0.12", ansible_ssh_common_args = "-o ProxyJump=cc@203.0.113.30" }
          node2 = { ansible_host = "10.52.0.13", node_rank = 2, private_address = "10.52.0.13", ansible_ssh_common_args = "-o ProxyJump=cc@203.0.113.30" }
        }
        vars = { nnodes = 3, rdzv_endpoint = "10.52.0.11:29500", ansible_user = "cc" }
      }
    }
    error_message = "inventory: ${output.yaml}"
  }
}

run "directly_reachable_nodes_need_no_jump" {
  command = plan

  variables {
    private_addresses = ["10.231.7.10", "10.231.7.11"]
    head_address      = "10.231.7.10"
    ssh_user          = "root"
    jump_through_head = false
  }

  assert {
    condition = yamldecode(output.yaml) == {
      training_nodes = {
        hosts = {
          node0 = { ansible_host = "10.231.7.10", node_rank = 0, private_address = "10.231.7.10" }
          node1 = { ansible_host = "10.231.7.11", node_rank = 1, private_address = "10.231.7.11" }
        }
        vars = { nnodes = 2, rdzv_endpoint = "10.231.7.10:29500", ansible_user = "root" }
      }
    }
    error_message = "inventory: ${output.yaml}"
  }
}

run "one_node" {
  command = plan

  variables {
    private_addresses = ["10.52.0.11"]
  }

  assert {
    condition     = keys(yamldecode(output.yaml).training_nodes.hosts) == ["node0"] && yamldecode(output.yaml).training_nodes.vars.nnodes == 1
    error_message = "inventory: ${output.yaml}"
  }
}

run "rejects_no_nodes" {
  command = plan
  variables {
    private_addresses = []
  }
  expect_failures = [var.private_addresses]
}

run "rejects_nine_nodes" {
  command = plan
  variables {
    private_addresses = [for i in range(9) : "10.52.0.${i + 11}"]
  }
  expect_failures = [var.private_addresses]
}
