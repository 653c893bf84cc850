terraform {
  required_version = ">= 1.12.0"

  # Built-in resources only: nothing to download. State per run, as for the Chameleon root:
  # `tofu init -backend-config=path=<cluster dir>/terraform.tfstate`.
  backend "local" {}
}
