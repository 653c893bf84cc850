terraform {
  required_version = ">= 1.12.0"

  required_providers {
    openstack = {
      source = "terraform-provider-openstack/openstack"
      # The root pins the exact version; the module accepts the 3.x line it was written against.
      version = ">= 3.4.0, < 4.0.0"
    }
  }
}
