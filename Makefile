# Two commands do everything on a fresh Python 3.11 machine:
#   make demo   install, then RSIR (2 rounds) with SASRec on the embedded dataset (a few minutes on CPU)
#   make test   install, then the test suite
PYTHON ?= python3
PIP = $(PYTHON) -m pip
OUT ?= runs/demo

.PHONY: install demo test bench-generation clean

install:
	$(PIP) install -q torch==2.13.0
	@# RecStudio from PyPI, without its unsatisfiable pins; an existing GitHub-source install is kept.
	@$(PYTHON) -c "import recstudio" 2>/dev/null || $(PIP) install -q --no-deps recstudio==0.0.2a1
	$(PIP) install -q -e '.[test]'

demo: install
	$(PYTHON) run_recstudio.py --config yamls/demo.yaml --output $(OUT)

test: install
	$(PYTHON) -m pytest -q tests

bench-generation: install
	$(PYTHON) benchmarks/bench_generation.py

clean:
	rm -rf runs .pytest_cache
