variable "cluster_id" {
  description = "The run's cluster id; names the namespaces rsc-<id>-<i> and the bridge rsb<id> (15-character interface names)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]{1,8}$", var.cluster_id))
    error_message = "cluster_id must be 1-8 characters of [a-z0-9], got \"${var.cluster_id}\"."
  }
}

variable "node_count" {
  description = "How many nodes (namespaces); rank 0 is the head."
  type        = number
  nullable    = false

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 8 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 8, got ${var.node_count}."
  }
}

variable "subnet_prefix" {
  description = "First three octets of the cluster's /24, e.g. \"10.231.7\": the bridge takes <prefix>.1, node i <prefix>.<10+i>."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}$", var.subnet_prefix)) && can(cidrhost("${var.subnet_prefix}.0/24", 0))
    error_message = "subnet_prefix must be three octets such as \"10.231.7\", got \"${var.subnet_prefix}\"."
  }
}

variable "ssh_public_key_path" {
  description = "Public key allowed to log in to every node (the cluster's <state dir>/id_ed25519.pub)."
  type        = string
  nullable    = false

  validation {
    condition     = try(can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp[0-9]+) [A-Za-z0-9+/=]+", file(var.ssh_public_key_path))), false)
    error_message = "ssh_public_key_path must be a readable OpenSSH public key file, got \"${var.ssh_public_key_path}\"."
  }
}

variable "nodes_script" {
  description = "Path of infra/local-cluster/nodes.sh (called as `nodes.sh up|down ...`)."
  type        = string
  nullable    = false

  validation {
    condition     = try(fileexists(var.nodes_script), false)
    error_message = "nodes_script must be an existing file, got \"${var.nodes_script}\"."
  }
}

variable "ssh_user" {
  description = "User ansible logs in as (the namespaces' sshd admits root with the cluster key)."
  type        = string
  default     = "root"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a POSIX user name, got \"${var.ssh_user}\"."
  }
}
