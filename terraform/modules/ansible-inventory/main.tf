# The ansible inventory every root outputs (the contract of the training activities), built in one place:
# group training_nodes with hosts node0..node<N-1> (ansible_host, node_rank, private_address) and group vars nnodes,
# rdzv_endpoint (rank 0's private address and the torchrun rendezvous port) and ansible_user. When only rank 0 is
# reachable from the controller (jump_through_head), the other ranks are reached at their private address through it.

terraform {
  required_version = ">= 1.12.0"
}

variable "private_addresses" {
  description = "Every node's address on the cluster network, by rank."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.private_addresses) >= 1 && length(var.private_addresses) <= 8
    error_message = "private_addresses must list 1 to 8 nodes, got ${length(var.private_addresses)}."
  }
}

variable "head_address" {
  description = "Where the controller reaches rank 0."
  type        = string
  nullable    = false
}

variable "ssh_user" {
  description = "Login user of every node."
  type        = string
  nullable    = false
}

variable "jump_through_head" {
  description = "Whether ranks other than 0 are reached through rank 0 (they have no address the controller can route to)."
  type        = bool
  nullable    = false
}

variable "rdzv_port" {
  description = "Port of torchrun's rendezvous on rank 0."
  type        = number
  default     = 29500
  nullable    = false
}

locals {
  jump = "-o ProxyJump=${var.ssh_user}@${var.head_address}"

  inventory = {
    training_nodes = {
      hosts = {
        for rank, address in var.private_addresses : "node${rank}" => merge(
          {
            ansible_host    = rank == 0 ? var.head_address : address
            node_rank       = rank
            private_address = address
          },
          rank > 0 && var.jump_through_head ? { ansible_ssh_common_args = local.jump } : {},
        )
      }
      vars = {
        nnodes        = length(var.private_addresses)
        rdzv_endpoint = "${var.private_addresses[0]}:${var.rdzv_port}"
        ansible_user  = var.ssh_user
      }
    }
  }
}

output "yaml" {
  description = "The inventory as YAML (ansible's YAML inventory format)."
  value       = yamlencode(local.inventory)
}
