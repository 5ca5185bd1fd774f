# The two commands of the README, and the steps they are made of.
#   make lab    set up, build the engines (once per machine), then run the whole job on the lab
#               site: validate, plan, inventory, test hosts and cluster up, pulumi up and preview,
#               bootstrap (twice), verify, storage, evidence, pulumi destroy, test hosts down
#   make test   set up, build the engines (once per machine), then run the test suite (what CI runs)

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SETUP   := $(VENV)/.setup-done
APT_PKGS := mmdebstrap systemd-container apt-cacher-ng iproute2 openssh-client ceph-mon ceph-osd radosgw ceph-common qemu-user-static binfmt-support arch-test

.PHONY: lab test setup engines lint bench clean

$(SETUP): pyproject.toml
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	fi
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(SETUP)

# The Pulumi CLI, its Kubernetes provider, kube-apiserver, etcd and helm, built from engines/ into
# /var/cache/aifactory/engines (minutes the first time on a machine, then found there).
engines: $(SETUP)
	$(BIN)/aifactory engines build

lab: engines
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/aifactory lab

# Two workers, one file each at a time: the test-host file (first, the longest) on one, the rest
# on the other; on 2 cores the bootstrap's dpkg and the Python tests overlap.
test: engines
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(SETUP)
	$(BIN)/ruff check src tests benchmarks stacks
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --profile production roles playbooks

bench: $(SETUP)
	$(BIN)/python benchmarks/plan_bench.py

clean:
	-PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/aifactory testhosts down
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
