# N GPU nodes of one run under a Blazar reservation, on either kind of Chameleon site:
#  - baremetal (CHI@TACC, CHI@UC): a physical:host reservation. Nodes take flavor "baremetal" and the reservation as
#    the scheduler hint `reservation`; bare-metal ports on the shared network carry no security groups.
#  - kvm (KVM@TACC GPU VMs): a flavor:instance reservation. Blazar creates the flavor "reservation:<id>" whose id is the
#    reservation id, so the reservation is expressed by the flavor alone; nodes get ports with a security group that
#    admits SSH from ssh_cidr and any traffic between the cluster's own ports (torchrun rendezvous on 29500, gloo/NCCL).
# Rank 0 gets the one floating IP; the controller reaches the other ranks through it (ProxyJump).

locals {
  baremetal = var.site_kind == "baremetal"
  flavor_id = coalesce(var.flavor_id, var.reservation_id)
}

data "openstack_networking_network_v2" "nodes" {
  count = local.baremetal ? 0 : 1
  name  = var.network_name
}

resource "openstack_networking_secgroup_v2" "nodes" {
  count       = local.baremetal ? 0 : 1
  name        = "${var.cluster_name}-nodes"
  description = "recsys training cluster ${var.cluster_name}: SSH from ${var.ssh_cidr}, everything between its nodes"
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  count             = local.baremetal ? 0 : 1
  description       = "SSH from the controller"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = var.ssh_cidr
  security_group_id = openstack_networking_secgroup_v2.nodes[0].id
}

resource "openstack_networking_secgroup_rule_v2" "intra_cluster" {
  count             = local.baremetal ? 0 : 1
  description       = "any protocol and port between the cluster's nodes (rendezvous, gloo, NCCL)"
  direction         = "ingress"
  ethertype         = "IPv4"
  remote_group_id   = openstack_networking_secgroup_v2.nodes[0].id
  security_group_id = openstack_networking_secgroup_v2.nodes[0].id
}

resource "openstack_networking_port_v2" "nodes" {
  count              = local.baremetal ? 0 : var.node_count
  name               = "${var.cluster_name}-node${count.index}"
  network_id         = data.openstack_networking_network_v2.nodes[0].id
  admin_state_up     = true
  security_group_ids = [openstack_networking_secgroup_v2.nodes[0].id]
}

resource "openstack_compute_instance_v2" "nodes" {
  count       = var.node_count
  name        = "${var.cluster_name}-node${count.index}"
  image_name  = var.image_name
  flavor_name = local.baremetal ? var.flavor_name : null
  flavor_id   = local.baremetal ? null : local.flavor_id
  key_pair    = var.key_pair

  metadata = {
    recsys_cluster     = var.cluster_name
    recsys_node_rank   = tostring(count.index)
    recsys_reservation = var.reservation_id
  }

  network {
    name = local.baremetal ? var.network_name : null
    port = local.baremetal ? null : openstack_networking_port_v2.nodes[count.index].id
  }

  dynamic "scheduler_hints" {
    for_each = local.baremetal ? [var.reservation_id] : []
    content {
      additional_properties = {
        reservation = scheduler_hints.value
      }
    }
  }
}

resource "openstack_networking_floatingip_v2" "head" {
  pool        = var.floating_ip_pool
  description = "recsys training cluster ${var.cluster_name}: rank 0"
}

resource "openstack_networking_floatingip_associate_v2" "head" {
  floating_ip = openstack_networking_floatingip_v2.head.address
  # The port of rank 0: the one Nova made on the shared network (bare metal) or the one made above (KVM).
  port_id = local.baremetal ? openstack_compute_instance_v2.nodes[0].network[0].port : openstack_networking_port_v2.nodes[0].id
}

locals {
  head_address      = openstack_networking_floatingip_v2.head.address
  private_addresses = openstack_compute_instance_v2.nodes[*].access_ip_v4
}

# Only rank 0 has a public address: the controller reaches the others through it.
module "inventory" {
  source = "../ansible-inventory"

  private_addresses = local.private_addresses
  head_address      = local.head_address
  ssh_user          = var.ssh_user
  jump_through_head = true
}
