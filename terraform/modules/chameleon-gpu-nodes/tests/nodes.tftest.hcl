# The module against a mocked OpenStack provider (offline; `apply` creates nothing): what each kind of site gets,
# the inventory contract, and the inputs it refuses.

mock_provider "openstack" {
  mock_resource "openstack_networking_floatingip_v2" {
    defaults = {
      address = "203.0.113.10"
    }
  }
}

variables {
  cluster_name   = "rs-abc123"
  reservation_id = "0b5f3c2e-8a41-4d0e-9c1b-2f6a7d8e9f01"
  node_count     = 3
  key_pair       = "recsys"
}

run "baremetal_nodes_carry_the_reservation_as_a_scheduler_hint" {
  variables {
    site_kind = "baremetal"
  }

  assert {
    condition     = length(openstack_compute_instance_v2.nodes) == 3
    error_message = "expected 3 instances, got ${length(openstack_compute_instance_v2.nodes)}"
  }
  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : n.flavor_name == "baremetal" && n.image_name == "CC-Ubuntu22.04-CUDA" && n.key_pair == "recsys"])
    error_message = "bare-metal nodes must use flavor baremetal, image CC-Ubuntu22.04-CUDA and the key pair"
  }
  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : [for h in n.scheduler_hints : h.additional_properties["reservation"]] == ["0b5f3c2e-8a41-4d0e-9c1b-2f6a7d8e9f01"]])
    error_message = "every bare-metal node needs exactly one scheduler hint reservation = <reservation id>"
  }
  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : n.network[0].name == "sharednet1"])
    error_message = "bare-metal nodes join sharednet1"
  }
  assert {
    condition     = openstack_compute_instance_v2.nodes[*].name == ["rs-abc123-node0", "rs-abc123-node1", "rs-abc123-node2"]
    error_message = "nodes are named <cluster>-node<rank>: ${jsonencode(openstack_compute_instance_v2.nodes[*].name)}"
  }
  assert {
    condition     = length(openstack_networking_port_v2.nodes) == 0 && length(openstack_networking_secgroup_v2.nodes) == 0
    error_message = "bare metal uses Nova's own ports on the shared network, without security groups"
  }
  assert {
    condition     = openstack_networking_floatingip_v2.head.pool == "public"
    error_message = "the floating IP comes from pool public"
  }
  assert {
    condition     = openstack_networking_floatingip_associate_v2.head.port_id == openstack_compute_instance_v2.nodes[0].network[0].port
    error_message = "the floating IP must be bound to rank 0's port"
  }
  assert {
    condition     = output.head_address == "203.0.113.10"
    error_message = "head_address must be the floating IP, got ${output.head_address}"
  }
  assert {
    condition     = output.private_addresses == openstack_compute_instance_v2.nodes[*].access_ip_v4
    error_message = "private_addresses must list the nodes' fixed addresses by rank"
  }
}

run "baremetal_inventory_reaches_workers_through_rank_0" {
  variables {
    site_kind = "baremetal"
  }

  assert {
    condition     = keys(yamldecode(output.ansible_inventory)) == ["training_nodes"]
    error_message = "the inventory has the one group training_nodes: ${output.ansible_inventory}"
  }
  assert {
    condition     = keys(yamldecode(output.ansible_inventory).training_nodes.hosts) == ["node0", "node1", "node2"]
    error_message = "hosts are node0..node2: ${output.ansible_inventory}"
  }
  assert {
    condition = yamldecode(output.ansible_inventory).training_nodes.hosts.node0 == {
      ansible_host    = "203.0.113.10"
      node_rank       = 0
      private_address = output.private_addresses[0]
    }
    error_message = "rank 0 is reached directly at the floating IP: ${output.ansible_inventory}"
  }
  assert {
    condition = alltrue([for rank in [1, 2] : yamldecode(output.ansible_inventory).training_nodes.hosts["node${rank}"] == {
      ansible_host            = output.private_addresses[rank]
      node_rank               = rank
      private_address         = output.private_addresses[rank]
      ansible_ssh_common_args = "-o ProxyJump=cc@203.0.113.10"
    }])
    error_message = "workers are reached at their private address through a ProxyJump to cc@<floating IP>: ${output.ansible_inventory}"
  }
  assert {
    condition = yamldecode(output.ansible_inventory).training_nodes.vars == {
      nnodes        = 3
      rdzv_endpoint = "${output.private_addresses[0]}:29500"
      ansible_user  = "cc"
    }
    error_message = "group vars are nnodes, rdzv_endpoint (rank 0's private address:29500), ansible_user: ${output.ansible_inventory}"
  }
}

run "kvm_nodes_use_the_reserved_flavor_and_ports_with_a_security_group" {
  variables {
    site_kind  = "kvm"
    node_count = 2
    ssh_user   = "ubuntu"
  }

  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : n.flavor_id == "0b5f3c2e-8a41-4d0e-9c1b-2f6a7d8e9f01"])
    error_message = "KVM nodes use the reserved flavor, whose id is the reservation id"
  }
  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : length(n.scheduler_hints) == 0])
    error_message = "KVM nodes carry no reservation hint (the flavor is the reservation)"
  }
  assert {
    condition     = length(openstack_networking_port_v2.nodes) == 2 && openstack_compute_instance_v2.nodes[*].network[0].port == openstack_networking_port_v2.nodes[*].id
    error_message = "each KVM node is attached to its own port"
  }
  assert {
    condition     = alltrue([for p in openstack_networking_port_v2.nodes : p.security_group_ids == toset([openstack_networking_secgroup_v2.nodes[0].id])])
    error_message = "every port carries the cluster's security group"
  }
  assert {
    condition = (openstack_networking_secgroup_rule_v2.ssh[0].direction == "ingress" && openstack_networking_secgroup_rule_v2.ssh[0].protocol == "tcp"
      && openstack_networking_secgroup_rule_v2.ssh[0].port_range_min == 22 && openstack_networking_secgroup_rule_v2.ssh[0].port_range_max == 22
    && openstack_networking_secgroup_rule_v2.ssh[0].remote_ip_prefix == "0.0.0.0/0")
    error_message = "SSH (tcp/22) is open from anywhere by default"
  }
  assert {
    condition = (openstack_networking_secgroup_rule_v2.intra_cluster[0].remote_group_id == openstack_networking_secgroup_v2.nodes[0].id
      && openstack_networking_secgroup_rule_v2.intra_cluster[0].security_group_id == openstack_networking_secgroup_v2.nodes[0].id
    && openstack_networking_secgroup_rule_v2.intra_cluster[0].protocol == null && openstack_networking_secgroup_rule_v2.intra_cluster[0].port_range_min == null)
    error_message = "all traffic between the cluster's ports is allowed (rendezvous 29500, gloo, NCCL)"
  }
  assert {
    condition     = openstack_networking_floatingip_associate_v2.head.port_id == openstack_networking_port_v2.nodes[0].id
    error_message = "the floating IP is bound to rank 0's port"
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).training_nodes.hosts.node1.ansible_ssh_common_args == "-o ProxyJump=ubuntu@203.0.113.10"
    error_message = "the jump goes through ssh_user at rank 0"
  }
}

run "kvm_flavor_id_can_be_given" {
  command = plan

  variables {
    site_kind = "kvm"
    flavor_id = "e81f12f8-de06-4107-acfd-e649217036ef"
  }

  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.nodes : n.flavor_id == "e81f12f8-de06-4107-acfd-e649217036ef"])
    error_message = "an explicit flavor_id wins over the reservation id"
  }
}

run "one_node_has_no_jump_host" {
  variables {
    site_kind  = "baremetal"
    node_count = 1
  }

  assert {
    condition     = keys(yamldecode(output.ansible_inventory).training_nodes.hosts) == ["node0"]
    error_message = "one node, one host"
  }
  assert {
    condition     = !contains(keys(yamldecode(output.ansible_inventory).training_nodes.hosts.node0), "ansible_ssh_common_args")
    error_message = "rank 0 never jumps"
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).training_nodes.vars.nnodes == 1
    error_message = "nnodes = 1"
  }
}

run "rejects_a_lease_name_for_the_reservation_id" {
  command = plan
  variables {
    site_kind      = "baremetal"
    reservation_id = "recsys-train-abc123"
  }
  expect_failures = [var.reservation_id]
}

run "rejects_an_upper_case_uuid" {
  command = plan
  variables {
    site_kind      = "baremetal"
    reservation_id = "0B5F3C2E-8A41-4D0E-9C1B-2F6A7D8E9F01"
  }
  expect_failures = [var.reservation_id]
}

run "rejects_zero_nodes" {
  command = plan
  variables {
    site_kind  = "baremetal"
    node_count = 0
  }
  expect_failures = [var.node_count]
}

run "rejects_nine_nodes" {
  command = plan
  variables {
    site_kind  = "baremetal"
    node_count = 9
  }
  expect_failures = [var.node_count]
}

run "rejects_a_fractional_node_count" {
  command = plan
  variables {
    site_kind  = "baremetal"
    node_count = 1.5
  }
  expect_failures = [var.node_count]
}

run "rejects_an_unknown_site_kind" {
  command = plan
  variables {
    site_kind = "vm"
  }
  expect_failures = [var.site_kind]
}

run "rejects_a_cluster_name_that_cannot_name_resources" {
  command = plan
  variables {
    site_kind    = "baremetal"
    cluster_name = "Run_1"
  }
  expect_failures = [var.cluster_name]
}

run "rejects_a_flavor_name_as_flavor_id" {
  command = plan
  variables {
    site_kind = "kvm"
    flavor_id = "g1.h100.pci.1"
  }
  expect_failures = [var.flavor_id]
}

run "rejects_an_empty_image" {
  command = plan
  variables {
    site_kind  = "baremetal"
    image_name = " "
  }
  expect_failures = [var.image_name]
}

run "rejects_an_empty_key_pair" {
  command = plan
  variables {
    site_kind = "baremetal"
    key_pair  = ""
  }
  expect_failures = [var.key_pair]
}

run "rejects_an_ipv6_or_malformed_ssh_cidr" {
  command = plan
  variables {
    site_kind = "kvm"
    ssh_cidr  = "0.0.0.0"
  }
  expect_failures = [var.ssh_cidr]
}
