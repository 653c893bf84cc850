# GPU nodes for one training run on a Chameleon allocation (see ../README.md). Credentials are not variables: the
# provider reads the named cloud from clouds.yaml (an application credential), found through OS_CLIENT_CONFIG_FILE or
# the standard locations, outside the checkout.

provider "openstack" {
  cloud = var.cloud
}

# The run's own key (the controller made it; its private half never leaves the controller): the nodes trust it, so the
# platform's ssh and ansible reach them without the operator's key. Destroyed with the run. Without a public key the
# operator's registered key pair is used instead.
resource "openstack_compute_keypair_v2" "run" {
  count      = var.ssh_public_key_path == null ? 0 : 1
  name       = var.cluster_name
  public_key = file(var.ssh_public_key_path)
}

module "nodes" {
  source = "../modules/chameleon-gpu-nodes"

  site_kind        = var.site_kind
  cluster_name     = var.cluster_name
  reservation_id   = var.reservation_id
  node_count       = var.node_count
  image_name       = var.image_name
  flavor_name      = var.flavor_name
  flavor_id        = var.flavor_id
  network_name     = var.network_name
  key_pair         = var.ssh_public_key_path == null ? var.key_pair : openstack_compute_keypair_v2.run[0].name
  ssh_user         = var.ssh_user
  floating_ip_pool = var.floating_ip_pool
  ssh_cidr         = var.ssh_cidr
}
