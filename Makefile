# Two commands do everything on a fresh Python 3.11 machine:
#   make demo   install, then RSIR (1 round) with SASRec on the embedded dataset (a few minutes on CPU)
#   make test   install, then the test suite
PYTHON ?= python3
PIP = $(PYTHON) -m pip
OUT ?= runs/demo
# the GitHub-source RecStudio the suite also runs on (skipped with a message when absent)
SOURCE_ARCHIVE ?= ../shared/host/recstudio-github-6f628dd.tar.gz

.PHONY: install demo test test-pypi test-source examples compare paper bench-generation clean

install:
	$(PIP) install -q torch==2.13.0
	@# RecStudio from PyPI, without its unsatisfiable pins; an existing GitHub-source install is kept.
	@$(PYTHON) -c "import recstudio" 2>/dev/null || $(PIP) install -q --no-deps recstudio==0.0.2a1
	$(PIP) install -q -e '.[test]'

demo: install
	$(PYTHON) run_recstudio.py --config yamls/demo.yaml --output $(OUT)

examples: install  # every script in examples/, full settings (a couple of minutes each on CPU)
	for f in quickstart weak_to_strong custom_augmenter own_csv; do $(PYTHON) examples/$$f.py || exit 1; done

test: install
	$(PYTHON) -m pytest -q tests
	PYTHON=$(PYTHON) bash tools/test_source_flavour.sh $(SOURCE_ARCHIVE)

test-pypi: install   # the suite on the PyPI flavour only
	$(PYTHON) -m pytest -q tests

test-source: install # the suite on the GitHub-source flavour only (../shared/host/), in .venv-source/
	PYTHON=$(PYTHON) bash tools/test_source_flavour.sh $(SOURCE_ARCHIVE)

compare: install   # issue #5: base / reorder / insert / RSIR / RSIR fidelity off on the embedded dataset + report
	$(PYTHON) -m recstudio_rsir.cli suite yamls/compare_embedded.yaml

paper: install     # issue #6 on a 2-core CPU budget: SASRec base vs +RSIR on Beauty and Toys (3 seeds, patience 20), Beauty per-round curve + heuristics (1 seed)
	bash benchmarks/paper_tables.sh

bench-generation: install
	$(PYTHON) benchmarks/bench_generation.py

clean:
	rm -rf runs .pytest_cache .venv-source
