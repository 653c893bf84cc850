variable "site_kind" {
  description = "Which kind of Chameleon site: \"baremetal\" (CHI@TACC, CHI@UC: a physical:host reservation, flavor \"baremetal\", the reservation as a scheduler hint) or \"kvm\" (KVM@TACC GPU VMs: a flavor:instance reservation whose flavor id is the reservation id)."
  type        = string
  nullable    = false

  validation {
    condition     = contains(["baremetal", "kvm"], var.site_kind)
    error_message = "site_kind must be \"baremetal\" or \"kvm\", got \"${var.site_kind}\"."
  }
}

variable "cluster_name" {
  description = "Name of the run's cluster; every resource is named after it (\"<cluster_name>-node<rank>\"), so a retry or the sweeper can find them."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be 1-32 characters of [a-z0-9-], starting and ending with a letter or digit, got \"${var.cluster_name}\"."
  }
}

variable "reservation_id" {
  description = "The id of the reservation inside the Blazar lease (not the lease id): `openstack reservation lease show <lease>` lists it under reservations."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.reservation_id))
    error_message = "reservation_id must be a lower-case UUID (the reservation's id, not the lease's name), got \"${var.reservation_id}\"."
  }
}

variable "node_count" {
  description = "How many GPU nodes to create (the reservation's min = max); rank 0 is the head."
  type        = number
  nullable    = false

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 8 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 8, got ${var.node_count}."
  }
}

variable "image_name" {
  description = "Glance image of every node (Chameleon's supported image with the CUDA stack by default)."
  type        = string
  default     = "CC-Ubuntu22.04-CUDA"
  nullable    = false

  validation {
    condition     = length(trimspace(var.image_name)) > 0
    error_message = "image_name must not be empty."
  }
}

variable "flavor_name" {
  description = "Flavor of bare-metal nodes (site_kind = \"baremetal\"); Chameleon's bare-metal sites have one, \"baremetal\"."
  type        = string
  default     = "baremetal"
  nullable    = false

  validation {
    condition     = length(trimspace(var.flavor_name)) > 0
    error_message = "flavor_name must not be empty."
  }
}

variable "flavor_id" {
  description = "Flavor id of KVM nodes (site_kind = \"kvm\"). Blazar creates the reserved flavor \"reservation:<reservation id>\" with the reservation id as its id, so null (the default) means reservation_id."
  type        = string
  default     = null

  validation {
    condition     = var.flavor_id == null || can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.flavor_id))
    error_message = "flavor_id must be null (use the reservation's flavor) or a lower-case UUID, got \"${coalesce(var.flavor_id, "null")}\"."
  }
}

variable "network_name" {
  description = "Network every node joins; the shared, routable network of Chameleon's sites by default."
  type        = string
  default     = "sharednet1"
  nullable    = false

  validation {
    condition     = length(trimspace(var.network_name)) > 0
    error_message = "network_name must not be empty."
  }
}

variable "key_pair" {
  description = "Name of a key pair already registered at the site (Nova); its public key is installed for ssh_user on every node."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_. -]{0,254}$", var.key_pair))
    error_message = "key_pair must be the name of an existing key pair (letters, digits, '_', '.', '-', spaces), got \"${var.key_pair}\"."
  }
}

variable "ssh_user" {
  description = "Login user of the image (\"cc\" on Chameleon's images)."
  type        = string
  default     = "cc"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a POSIX user name, got \"${var.ssh_user}\"."
  }
}

variable "floating_ip_pool" {
  description = "External network the head's floating IP comes from."
  type        = string
  default     = "public"
  nullable    = false

  validation {
    condition     = length(trimspace(var.floating_ip_pool)) > 0
    error_message = "floating_ip_pool must not be empty."
  }
}

variable "ssh_cidr" {
  description = "Where SSH to the nodes may come from (KVM security group); the controller's address/32 narrows it."
  type        = string
  default     = "0.0.0.0/0"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.ssh_cidr, 0)) && !strcontains(var.ssh_cidr, ":")
    error_message = "ssh_cidr must be an IPv4 CIDR such as 0.0.0.0/0 or 203.0.113.7/32, got \"${var.ssh_cidr}\"."
  }
}
