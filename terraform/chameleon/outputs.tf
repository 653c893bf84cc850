output "head_address" {
  description = "The floating IP of rank 0."
  value       = module.nodes.head_address
}

output "private_addresses" {
  description = "Private addresses, by rank."
  value       = module.nodes.private_addresses
}

output "node_names" {
  description = "Instance names, by rank."
  value       = module.nodes.node_names
}

output "ssh_user" {
  description = "Login user of every node."
  value       = module.nodes.ssh_user
}

output "ansible_inventory" {
  description = "YAML ansible inventory (group training_nodes)."
  value       = module.nodes.ansible_inventory
}
