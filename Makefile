# ocrfleet: every set-up step is here, idempotent and cached. `make demo` and `make test`
# are the two entry points the README names; both install what they need first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEBS := redis-server postgresql prometheus fonts-noto-cjk fonts-dejavu-core \
        podman runc mmdebstrap containerd containernetworking-plugins nftables conntrack iproute2 util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test deps system venv k8s-tools images lint bench clean

demo: deps images ## the main job on a local cluster with a real node: helm install, a pool, an OcrJob, its results
	$(PY) -m e2e.demo

test: deps images ## every test: lint, unit, real Redis/PostgreSQL/Triton, images, e2e on the local control plane
	$(PY) -m pytest $(PYTEST_ARGS)

deps: system venv k8s-tools

system: ## Debian packages: Redis, PostgreSQL, Prometheus (promtool and the e2e scraper; its service stays off), CJK fonts, podman and mmdebstrap (images), containerd and CNI (the real node)
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	  if systemctl is-active -q prometheus 2>/dev/null; then $(SUDO) systemctl disable -q --now prometheus; fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml worker-image/weights.txt
	@echo "installing the Python environment $(VENV) (PyTorch, the OCR weights: a few minutes the first time) ..."
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	# the reference pipeline and the OCR weights; its opencv-python pin would clash with headless
	$(PY) -m pip install -q --no-deps -r worker-image/weights.txt
	touch $@

k8s-tools: ## kube-apiserver, controller-manager, scheduler, etcd, kwok, helm, KEDA from pinned Go modules
	@e2e/tools/build.sh >/dev/null
	@e2e/tools/keda/build.sh >/dev/null

images: system venv ## the operator, API and worker images (podman over a Debian base; cached by input hash)
	$(PY) -m e2e.images build

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
