# The local path's cluster: N network namespaces on a bridge of the root namespace, with sshd in each, standing in
# for GPU nodes (see ../README.md). Same outputs as the Chameleon root, so the activities after `tofu apply` do not
# know which one ran. Rank 0 comes up first (its `nodes.sh up` creates the bridge) and goes down last (its
# `nodes.sh down` removes the bridge), so the script never races itself over the bridge.

locals {
  nodes_script        = abspath(var.nodes_script)
  ssh_public_key_path = abspath(var.ssh_public_key_path)
}

module "head" {
  source = "./node"

  cluster_id          = var.cluster_id
  index               = 0
  subnet_prefix       = var.subnet_prefix
  ssh_public_key_path = local.ssh_public_key_path
  nodes_script        = local.nodes_script
}

module "workers" {
  source     = "./node"
  count      = var.node_count - 1
  depends_on = [module.head]

  cluster_id          = var.cluster_id
  index               = count.index + 1
  subnet_prefix       = var.subnet_prefix
  ssh_public_key_path = local.ssh_public_key_path
  nodes_script        = local.nodes_script
}

locals {
  private_addresses = concat([module.head.address], module.workers[*].address)
}

# Every node is on a bridge of the root namespace, reachable from the controller: no jump host.
module "inventory" {
  source = "../modules/ansible-inventory"

  private_addresses = local.private_addresses
  head_address      = module.head.address
  ssh_user          = var.ssh_user
  jump_through_head = false
}
