# The two commands of the README are `make book` and `make test`; both set themselves up.
# `make help` lists the rest.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.kexue-installed
BENCH_STAMP := $(VENV)/.kexue-bench-installed
HTML    := _build/html
CHAPTER ?=
# How the chapter run is spread: one kernel per core, a chapter at a time on each (JOBS= runs serially).
JOBS    ?= -n 2 --dist loadfile
# Extra arguments for `make bench`, e.g. BENCH_ARGS="--threads 1" on a machine shared with other work.
BENCH_ARGS ?=

# Sources of Python code that ruff checks (chapters are checked through jupytext, see scripts/).
PY_SOURCES := src tests benchmarks scripts conftest.py book/_ext

# The python3 of a borrowed GPU machine (`make gpu-check`): it has torch, and no venv is made there.
GPU_PYTHON ?= python3
# The benchmark peers (and the pure-Python test peers) as wheels for that machine (Python 3.12, no
# network there): `make gpu-wheels`.
WHEELS  := .whl

.PHONY: help setup lint format unit chapters chapter book html-check bench lab test clean \
	gpu-check gpu-wheels wheel-check

help:
	@echo "make book        build the HTML book (every chapter executed) into $(HTML)"
	@echo "make test        lint, unit tests, every chapter under nbval, the book, the browser check"
	@echo "make setup       create $(VENV) with the pinned environment and kexue (editable)"
	@echo "make lint        ruff on the package, tests and the chapters' code cells; mypy on the package"
	@echo "make format      ruff format on the same (chapter metadata left untouched)"
	@echo "make unit        the unit and property tests (tests/, without the browser check)"
	@echo "make chapters    every chapter in _toc.yml executed by nbval, with per-chapter times"
	@echo "make chapter CHAPTER=chapters/<part>/<topic>.md   one chapter alone"
	@echo "make html-check  open every page of $(HTML) in headless Chromium and check it"
	@echo "make wheel-check build the wheel and sdist, check their contents, install the wheel into a"
	@echo "                 fresh venv outside the repository and use every part of kexue from it"
	@echo "make bench       time kexue's kernels against the libraries people use (installs"
	@echo "                 requirements-bench.txt) and write benchmarks/results/<device>.json"
	@echo "make gpu-check   on a CUDA machine: unit and hostile-input tests on CUDA, short"
	@echo "                 benchmarks to benchmarks/results/<gpu>.json (book/running.md)"
	@echo "make gpu-wheels  download the benchmark peers as wheels into $(WHEELS)/ for gpu-check"
	@echo "make lab         install JupyterLab (requirements-lab.txt) and open the chapters in it"
	@echo "make clean       remove $(HTML), caches and $(VENV)"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "Python 3.10 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# Build matplotlib's font cache now, so that no chapter prints "building the font cache" to stderr.
	MPLBACKEND=Agg $(BIN)/python -c "import matplotlib.pyplot"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/python scripts/lint_chapters.py
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/python scripts/format_chapters.py

unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/html --durations=10 -n 2

# Each chapter runs once: nbval executes it here and leaves the executed notebook in
# _build/.executed, which `make book` renders instead of executing the chapter again.
chapters: $(STAMP)
	rm -rf _build/.executed
	@# Two kernels share the two cores: one thread each (two threads each oversubscribe the cores).
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=180 -p no:cacheprovider $(JOBS) chapters

chapter: $(STAMP)
	@test -n "$(CHAPTER)" || { echo "usage: make chapter CHAPTER=chapters/<part>/<topic>.md"; exit 2; }
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=180 -p no:cacheprovider $(CHAPTER)

book: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(abspath $(HTML))/index.html"

# The wheel stands alone: built, installed into a fresh venv in a temporary folder (never this
# checkout), and used from there (scripts/wheel_check.sh says how; about a minute).
wheel-check: $(STAMP)
	bash scripts/wheel_check.sh $(BIN)/python

html-check: $(STAMP)
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest tests/html --html-dir $(HTML) -n 2

# The peers timed by `make bench` (benchmark-only, never dependencies of kexue): --no-deps, because
# requirements-bench.txt lists their dependencies itself and must not move a pin of requirements.txt.
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-bench.txt
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# No set-up on purpose: it runs where there is no venv and no network (scripts/gpu-check.sh).
gpu-check:
	PYTHON=$(GPU_PYTHON) bash scripts/gpu-check.sh

gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
		-d $(WHEELS) $$(grep -v '^#' requirements-bench.txt) $$(grep -E \
		'^(rotary-embedding-torch|torch-einops-utils|flash-pytorch|pytorch-metric-learning)==' \
		requirements.txt) $$(grep -E '^(vector-quantize-pytorch|einx|frozendict|loguru)==' \
		requirements.txt)

# JupyterLab is not part of the pinned book environment; it has its own pinned file.
$(VENV)/.kexue-lab-installed: $(STAMP) requirements-lab.txt
	$(BIN)/python -m pip install --quiet -r requirements-lab.txt -c requirements.txt
	touch $@

lab: $(VENV)/.kexue-lab-installed
	$(BIN)/jupyter lab chapters

test: lint unit wheel-check chapters book html-check

clean:
	rm -rf _build .pytest_cache .ruff_cache .mypy_cache .hypothesis $(VENV)
