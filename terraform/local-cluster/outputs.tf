output "head_address" {
  description = "Address of rank 0 on the cluster bridge."
  value       = module.head.address
}

output "private_addresses" {
  description = "Addresses of the nodes, by rank."
  value       = local.private_addresses
}

output "node_names" {
  description = "Network namespaces, by rank."
  value       = [for rank in range(var.node_count) : "rsc-${var.cluster_id}-${rank}"]
}

output "ssh_user" {
  description = "Login user of every node."
  value       = var.ssh_user
}

output "ansible_inventory" {
  description = "YAML ansible inventory (group training_nodes)."
  value       = module.inventory.yaml
}
