# The two set-up-and-go commands (see README): `make demo` and `make test`.
# Each creates/updates .venv and installs what it needs; as root on Debian/Ubuntu it also
# installs the system packages the sandbox needs (OpenSSH server, Redis, iproute2, Prometheus
# with promtool, Alertmanager and the node/Redis/PostgreSQL exporters).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What the sandbox runs, as program:package (installed as root when a program is missing).
SYSTEM_TOOLS := sshd:openssh-server ssh-keygen:openssh-client redis-server:redis-server \
	redis-sentinel:redis-sentinel ip:iproute2 unshare:util-linux ping:iputils-ping sudo:sudo \
	ps:procps nft:nftables chromium:chromium prometheus:prometheus promtool:prometheus \
	prometheus-alertmanager:prometheus-alertmanager prometheus-node-exporter:prometheus-node-exporter \
	prometheus-redis-exporter:prometheus-redis-exporter \
	prometheus-postgres-exporter:prometheus-postgres-exporter
BENCH_PACKAGES := wrk nginx-light

.PHONY: demo lab lab-stop test lint system-deps bench clean-venv lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

# Every package comes from requirements.lock (exact versions, resolved by `make lock`).
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  -c requirements.lock -e '.[test]'
	@touch $@

# Refresh requirements.lock: the newest versions pyproject.toml allows, for every Python the
# package supports (uv's universal resolution). Then `make test` proves the new set.
lock: $(VENV)/.installed
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
	  --no-header --quiet -o requirements.lock

system-deps:
	@missing=""; \
	for tool in $(SYSTEM_TOOLS); do \
	  command -v $${tool%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${tool%%:*} ] || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "install them with: sudo apt-get install -y$$missing"; exit 2; \
	  fi; \
	fi

# Main job: the lab-book headless on the sandbox (params/local.yaml), applying each phase to the
# sandbox's isolated nodes (--apply); prints the report's path last.
demo: system-deps $(VENV)/.installed
	$(BIN)/labkit run --params params/local.yaml --apply

# Step through the lab-book: the sandbox up, JupyterLab on 127.0.0.1 with a token at
# notebooks/ (as root with --allow-root, which it needs there). Ctrl-C, or `make lab-stop`
# from another terminal, stops JupyterLab and takes the sandbox down if this brought it up.
LAB_PORT ?= 8888
lab: system-deps $(VENV)/.installed
	$(BIN)/labkit lab --params params/local.yaml --port $(LAB_PORT)

lab-stop: $(VENV)/.installed
	$(BIN)/labkit lab --stop --params params/local.yaml

lint: $(VENV)/.installed
	$(BIN)/ruff check labkit tests benchmarks
	$(BIN)/ruff format --check labkit tests benchmarks
	$(BIN)/mypy

# The whole test suite: lint, types, unit and integration tests against real local services,
# and every committed notebook top to bottom (nbval).
test: system-deps lint
	$(BIN)/python -m pytest tests

bench: system-deps $(VENV)/.installed
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PACKAGES) >/dev/null; \
	  else echo "benchmarks need: sudo apt-get install -y $(BENCH_PACKAGES)"; exit 2; fi; }
	$(BIN)/python benchmarks/bench_engine.py

clean-venv:
	rm -rf $(VENV)
