# The module validates every value; null here means the module's default.

variable "cloud" {
  description = "Entry of clouds.yaml to authenticate with (an application credential for the site, e.g. \"CHI@TACC\")."
  type        = string
  nullable    = false

  validation {
    condition     = length(trimspace(var.cloud)) > 0
    error_message = "cloud must name an entry of clouds.yaml."
  }
}

variable "site_kind" {
  description = "\"baremetal\" (CHI@TACC, CHI@UC) or \"kvm\" (KVM@TACC)."
  type        = string
}

variable "cluster_name" {
  description = "Name of the run's cluster, used in every resource name."
  type        = string
}

variable "reservation_id" {
  description = "The reservation's id inside the Blazar lease (not the lease id)."
  type        = string
}

variable "node_count" {
  description = "Number of GPU nodes (1-8)."
  type        = number
}

variable "key_pair" {
  description = "Name of a key pair registered at the site (used when ssh_public_key_path is null)."
  type        = string
  default     = null

  validation {
    condition     = var.key_pair != null || var.ssh_public_key_path != null
    error_message = "give key_pair (a registered key pair) or ssh_public_key_path (the run's own key)."
  }
}

variable "ssh_public_key_path" {
  description = "The run's public key (the controller's <state dir>/id_ed25519.pub), registered as a key pair named cluster_name."
  type        = string
  default     = null
}

variable "image_name" {
  description = "Image of every node (null: CC-Ubuntu22.04-CUDA)."
  type        = string
  default     = null
}

variable "flavor_name" {
  description = "Bare-metal flavor (null: baremetal)."
  type        = string
  default     = null
}

variable "flavor_id" {
  description = "KVM flavor id (null: the reservation's flavor, whose id is the reservation id)."
  type        = string
  default     = null
}

variable "network_name" {
  description = "Network of the nodes (null: sharednet1)."
  type        = string
  default     = null
}

variable "ssh_user" {
  description = "Login user of the image (null: cc)."
  type        = string
  default     = null
}

variable "floating_ip_pool" {
  description = "Pool of the head's floating IP (null: public)."
  type        = string
  default     = null
}

variable "ssh_cidr" {
  description = "Where SSH may come from on KVM (null: 0.0.0.0/0)."
  type        = string
  default     = null
}
