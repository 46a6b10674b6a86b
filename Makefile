# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
VENV := .venv
PY := $(VENV)/bin/python
DEMO_ROOT ?= demo-output
PYTEST_ARGS ?=

.PHONY: install demo test lint bench compile clean images images-test base-image

install:
	@bash scripts/bootstrap.sh

demo: install
	$(PY) -m pipelines.demo --root $(DEMO_ROOT)

test: install
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

compile: install
	$(VENV)/bin/mhubert pipeline compile --out build/mhubert_pipeline.yaml

clean:
	rm -rf build $(DEMO_ROOT) .pytest_cache

# Known vulnerabilities in requirements.lock (pip-audit; needs the network, so not part of `make test`).
.PHONY: audit
audit:
	@bash scripts/audit.sh

# Container images (scripts/images.sh; podman, or docker). Not part of `make test`. Names from
# mhubert/images.py; where no registry answers, they are built on a stand-in base made once from Debian
# packages (`make base-image`, cached in the container store). IMAGES picks roles: make images IMAGES=api
IMAGES ?= cpu gpu api

images:
	@bash scripts/images.sh build $(IMAGES)

images-test: install
	PYTHONPATH=$(CURDIR) $(PY) scripts/images_test.py $(IMAGES)

base-image:
	@bash scripts/images.sh base
