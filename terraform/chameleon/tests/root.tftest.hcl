# The Chameleon root wired to the module, against a mocked provider (offline): unset optional variables fall back to
# the module's defaults, the outputs pass through, and the clouds.yaml entry is required.

mock_provider "openstack" {
  mock_resource "openstack_networking_floatingip_v2" {
    defaults = {
      address = "203.0.113.20"
    }
  }
}

variables {
  cloud          = "CHI@TACC"
  site_kind      = "baremetal"
  cluster_name   = "rs-x1"
  reservation_id = "6a0c8d4e-1f2b-4c3d-8e9f-a0b1c2d3e4f5"
  node_count     = 2
  key_pair       = "recsys"
}

run "outputs_follow_the_contract_with_module_defaults" {
  assert {
    condition     = output.head_address == "203.0.113.20"
    error_message = "head_address is rank 0's floating IP, got ${output.head_address}"
  }
  assert {
    condition     = length(output.private_addresses) == 2 && output.node_names == ["rs-x1-node0", "rs-x1-node1"]
    error_message = "two nodes by rank: ${jsonencode(output.node_names)}"
  }
  assert {
    condition     = output.ssh_user == "cc" && yamldecode(output.ansible_inventory).training_nodes.vars.ansible_user == "cc"
    error_message = "an unset ssh_user falls back to the module's default (cc)"
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).training_nodes.hosts.node1.ansible_ssh_common_args == "-o ProxyJump=cc@203.0.113.20"
    error_message = "the worker is reached through rank 0: ${output.ansible_inventory}"
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).training_nodes.vars.rdzv_endpoint == "${output.private_addresses[0]}:29500"
    error_message = "the rendezvous is rank 0's private address on 29500: ${output.ansible_inventory}"
  }
}

run "kvm_through_the_root" {
  variables {
    cloud     = "KVM@TACC"
    site_kind = "kvm"
  }

  assert {
    condition     = yamldecode(output.ansible_inventory).training_nodes.vars.nnodes == 2
    error_message = "nnodes = 2: ${output.ansible_inventory}"
  }
}

run "rejects_an_empty_cloud" {
  command = plan
  variables {
    cloud = ""
  }
  expect_failures = [var.cloud]
}

run "the_runs_own_key_becomes_the_nodes_key_pair" {
  command = plan

  variables {
    key_pair            = null
    ssh_public_key_path = "../local-cluster/tests/fixtures/id_ed25519.pub"
  }

  assert {
    condition     = length(openstack_compute_keypair_v2.run) == 1 && openstack_compute_keypair_v2.run[0].name == "rs-x1"
    error_message = "the run's public key is registered as a key pair named after the run"
  }
}

run "rejects_no_key_at_all" {
  command = plan

  variables {
    key_pair = null
  }

  expect_failures = [var.key_pair]
}
