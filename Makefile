# kubedrift — every dependency is installed from here; nothing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test unit integration lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-deps

# promtool (Debian's prometheus package) unit-tests the shipped alert rules; git drives the sources;
# openssl makes the tests' https git server certificate.
system-deps:
	@command -v git >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git)
	@command -v openssl >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl)
	@command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)

demo: $(STAMP)
	$(BIN)/kubedrift scan --manifests examples/gitops/overlays/production --live examples/live/cluster-snapshot.yaml --namespace shop --output table; \
	  rc=$$?; if [ $$rc -eq 1 ]; then exit 1; fi; echo "(kubedrift exit code $$rc: 0 = no drift, 2 = drift found)"

test: install
	$(BIN)/pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache benchmarks/out
