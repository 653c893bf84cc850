terraform {
  required_version = ">= 1.12.0"

  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "3.4.0"
    }
  }

  # Local state, at a path given per run: `tofu init -backend-config=path=<cluster dir>/terraform.tfstate`, so a run's
  # state lives under ~/.cache/recsys/clusters/<id>/ and never in the checkout.
  backend "local" {}
}
