output "head_address" {
  description = "The floating IP of rank 0: where the controller reaches the cluster."
  value       = local.head_address
  # Usable only once the address is bound to rank 0's port.
  depends_on = [openstack_networking_floatingip_associate_v2.head]
}

output "private_addresses" {
  description = "Private IPv4 address of every node, by rank."
  value       = local.private_addresses
}

output "node_names" {
  description = "Instance names, by rank."
  value       = openstack_compute_instance_v2.nodes[*].name
}

output "instance_ids" {
  description = "Nova instance ids, by rank."
  value       = openstack_compute_instance_v2.nodes[*].id
}

output "ssh_user" {
  description = "Login user of every node."
  value       = var.ssh_user
}

output "ansible_inventory" {
  description = "YAML inventory: group training_nodes (node0..node<N-1> with ansible_host, node_rank, private_address; workers through a ProxyJump to rank 0) and group vars nnodes, rdzv_endpoint, ansible_user."
  value       = module.inventory.yaml
  depends_on  = [openstack_networking_floatingip_associate_v2.head]
}
