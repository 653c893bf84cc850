# One local "node" (network namespace rsc-<cluster>-<index> with sshd, see infra/local-cluster/nodes.sh), as a built-in
# terraform_data whose create and destroy run the node script. The destroy-time provisioner may reference only self,
# so everything it needs travels in `input`; any change of it replaces the node.

variable "cluster_id" {
  type = string
}

variable "index" {
  type = number
}

variable "subnet_prefix" {
  type = string
}

variable "ssh_public_key_path" {
  description = "Absolute path of the cluster's public key."
  type        = string
}

variable "nodes_script" {
  description = "Absolute path of nodes.sh."
  type        = string
}

locals {
  node = {
    cluster_id    = var.cluster_id
    index         = tostring(var.index)
    subnet_prefix = var.subnet_prefix
    public_key    = var.ssh_public_key_path
    script        = var.nodes_script
  }
}

resource "terraform_data" "node" {
  input            = local.node
  triggers_replace = local.node

  # Arguments go through the environment, so no value is ever parsed by a shell.
  provisioner "local-exec" {
    command = "exec bash \"$NODES_SCRIPT\" up \"$CLUSTER_ID\" \"$NODE_INDEX\" \"$SUBNET_PREFIX\" \"$PUBLIC_KEY\""
    environment = {
      NODES_SCRIPT  = self.input.script
      CLUSTER_ID    = self.input.cluster_id
      NODE_INDEX    = self.input.index
      SUBNET_PREFIX = self.input.subnet_prefix
      PUBLIC_KEY    = self.input.public_key
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "exec bash \"$NODES_SCRIPT\" down \"$CLUSTER_ID\" \"$NODE_INDEX\""
    environment = {
      NODES_SCRIPT = self.input.script
      CLUSTER_ID   = self.input.cluster_id
      NODE_INDEX   = self.input.index
    }
  }
}

output "address" {
  description = "The node's address on the cluster bridge."
  value       = "${var.subnet_prefix}.${10 + var.index}"
  depends_on  = [terraform_data.node]
}
