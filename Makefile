# kubedrift — every dependency is installed from here; nothing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps image-deps image wheelhouse release-manifests image-constraints demo test unit integration lint bench clean

APT     := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' operator/kubedrift/__init__.py)
# The image reference deploy/deployment.yaml runs; `make image IMAGE=registry.example/kubedrift:dev` for your own.
IMAGE   ?= ghcr.io/kubedrift/kubedrift:$(VERSION)
IMAGE_INPUTS := Dockerfile .dockerignore README.md pyproject.toml $(wildcard image/*) $(wildcard crds/*.yaml) \
                $(shell find operator/kubedrift -name '*.py' -o -name 'py.typed' -o -name '*.yaml' -o -name '*.json')

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-deps

# promtool (Debian's prometheus package) unit-tests the shipped alert rules; git drives the sources;
# openssl makes the tests' https git server certificate; the tests of `scan --pushgateway` start
# Debian's Pushgateway on 127.0.0.1 (its own service is not used).
system-deps:
	@command -v git >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git)
	@command -v openssl >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl)
	@command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)
	@command -v prometheus-pushgateway >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-pushgateway)

# buildah and mmdebstrap (Debian) build the image offline (image/build-offline.sh); the image tests run it
# with unshare/chroot (util-linux, coreutils) behind a TLS proxy whose certificates openssl makes.
image-deps:
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null && command -v openssl >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq --no-install-recommends buildah mmdebstrap openssl)

# The container image as an OCI archive (SPEC §3 Image), built from Dockerfile without a registry.
image: dist/kubedrift-image.tar

dist/kubedrift-image.tar: $(IMAGE_INPUTS) build/image/revision | $(STAMP) image-deps
	image/build-offline.sh $(IMAGE) $@

# Wheels of the pinned dependencies for installs without an index (the image, the packaging test).
wheelhouse: $(STAMP)
	image/wheelhouse.sh build/image/wheels

# Changes with HEAD, so a new commit rebuilds the image (its revision label and `kubedrift version`).
build/image/revision: FORCE
	@mkdir -p $(@D); rev=$$(git rev-parse HEAD 2>/dev/null || echo unknown); \
	  [ "$$(cat $@ 2>/dev/null)" = "$$rev" ] || echo "$$rev" > $@
FORCE:

# One manifest for `kubectl apply -f`: CRDs + deploy/ in apply order, the image set to $(IMAGE).
release-manifests: $(STAMP)
	@mkdir -p dist
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python deploy/render_install.py --image $(IMAGE) > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml

# Pins of what the image installs, resolved afresh from pyproject.toml's dependencies.
image-constraints: $(STAMP)
	$(BIN)/python image/pin.py > image/constraints.txt.tmp && mv image/constraints.txt.tmp image/constraints.txt

demo: $(STAMP)
	$(BIN)/kubedrift scan --manifests examples/gitops/overlays/production --live examples/live/cluster-snapshot.yaml --namespace shop --output table; \
	  rc=$$?; if [ $$rc -eq 1 ]; then exit 1; fi; echo "(kubedrift exit code $$rc: 0 = no drift, 2 = drift found)"

test: install image release-manifests
	$(BIN)/pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache benchmarks/out
