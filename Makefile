# Two entry points: `make demo` and `make test`. Both build .venv on their own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build on this machine, and only when no torch is importable:
# an unpinned `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# The demo's folder holds the demo's own run: a second `make demo` replaces it.
demo: $(STAMP)
	$(VENV)/bin/clipforge demo --set run.overwrite=true

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet --no-deps open_clip_torch==3.3.0
	$(PY) bench/bench_tokenizer.py
	$(PY) bench/bench_inference.py
	$(PY) -u bench/bench_train.py
	$(PY) -u bench/bench_vs_openclip_train.py --warmup 2 --steps 10 --rounds 2

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
