# The two commands: `make demo` and `make test`. Both install what they need (idempotently, cached outside the
# checkout) and start the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: ## install Node deps, the Temporal CLI, versitygw, the Python env, Redis and Prometheus (idempotent)
	@bash infra/install.sh

stack-up: setup ## start Temporal (+ Web UI), the object store, MLflow, Redis and Prometheus on 127.0.0.1
	@bash infra/stack.sh up

stack-down: ## stop the servers that stack-up started
	@bash infra/stack.sh down

stack-status: ## show which servers are up
	@bash infra/stack.sh status

demo: stack-up ## run continuous training end to end on MovieLens-100K and leave the stack running
	@bash infra/demo.sh

test: setup ## lint, type-check, unit, Python and integration tests against the real stack
	@bash infra/test.sh

bench: stack-up ## run the benchmarks and print their figures
	@bash infra/bench.sh

lint: ## eslint + prettier + tsc
	@npx eslint . && npx prettier --check . && npx tsc -p tsconfig.json

.PHONY: help setup stack-up stack-down stack-status demo test bench lint
