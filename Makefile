# poisonrepro: `make reproduce` runs the notebooks, `make test` runs the tests.
# Both first create or update the virtual environment .venv from pyproject.toml.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# cpu by default, with or without a GPU (the notebooks use a GPU wherever there is one: train.default_device);
# never paper by default: its published settings take over 100 GPU-hours (make plan PROFILE=paper)
PROFILE ?= cpu
NOTEBOOKS ?=
# the offline data mirror, where this checkout has one beside it
ifneq ($(wildcard ../shared/data/cifar10-jpeg.tar.gz),)
export POISONREPRO_DATA ?= $(abspath ../shared/data)
endif

.PHONY: help venv reproduce publish book test test-slow unit notebooks-test plan clean
help:
	@echo "make reproduce [PROFILE=smoke|cpu|paper] [NOTEBOOKS=\"01_poison_frogs ...\"]"
	@echo "    run the notebooks with papermill; everything goes to build/<PROFILE>/: the executed"
	@echo "    notebooks, figures, tables, claims, summary.csv and a REPORT.md comparing the paper, the"
	@echo "    committed cpu run and this run (default PROFILE: $(PROFILE)). Nothing committed changes."
	@echo "make publish [NOTEBOOKS=...]  maintainers: copy a finished cpu run from build/cpu/ to notebooks/ and figures/cpu/"
	@echo "make book        the compendium as a static site in build/book/html/ (open index.html; no execution)"
	@echo "make test        unit tests + every notebook under nbval at the smoke profile (the CI's command)"
	@echo "make test-slow   the heavy checks make test leaves out (five paper dry runs, dask, benches)"
	@echo "make unit        the unit tests only (tests/), one process"
	@echo "make notebooks-test  the notebooks only, under nbval at the smoke profile, one process"
	@echo "make plan [PROFILE=paper]  trials and estimated GPU hours per notebook, totals for 1 and 64 GPUs"
	@echo "make venv        create/update .venv: an editable install of poisonrepro with the test extra"
	@echo "    extras: pip install -e . runs the notebooks; .[book] adds make book; .[cluster] Dask clusters"
	@echo "    (dask-jobqueue); .[test] is what make test needs (book included). requirements-lock.txt pins the"
	@echo "    exact versions of the committed cpu runs (pip install -r requirements-lock.txt; pip install --no-deps -e .)"
	@echo "make clean       remove build/ and data/derived/ (caches)"
	@echo "make help        this list"
	@echo "Data: POISONREPRO_DATA=$(POISONREPRO_DATA)"

# the test extra: make test's tools, the book's (sphinx, playwright) and dask for the executor's tests
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]' 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import poisonrepro, torch, papermill, nbval"
	touch $@

venv: $(VENV)/.installed

reproduce: venv
	$(PY) -m poisonrepro.reproduce --profile $(PROFILE) --notebooks "$(NOTEBOOKS)"

# maintainers: copy a finished cpu run from build/cpu/ to the committed notebooks/ and figures/cpu/
publish: venv
	$(PY) -m poisonrepro.reproduce --publish --profile cpu --notebooks "$(NOTEBOOKS)"

unit: venv
	POISONREPRO_PROGRESS=0 $(PY) -m pytest tests -q

notebooks-test: venv
	POISONREPRO_PROFILE=smoke POISONREPRO_PROGRESS=0 $(PY) -m pytest --nbval-lax notebooks -q

# one pytest worker per core (pytest-xdist), each on one thread; --dist loadscope keeps each notebook (and each
# test file, or class) on one worker, which nbval needs: a notebook's cells share one kernel (worksteal once moved
# cells of 08 to a worker whose kernel had not run its imports); the paper dry runs are one class each, so they spread
test: venv
	POISONREPRO_PROFILE=smoke POISONREPRO_PROGRESS=0 OMP_NUM_THREADS=1 $(PY) -m pytest tests notebooks --nbval-lax -q -n auto --dist loadscope --durations=25 -m "not slow"

# what `make test` leaves out to fit the CI's 20 minutes (tests marked slow: five paper dry runs, the dask cluster, the benches)
test-slow: venv
	POISONREPRO_PROFILE=smoke POISONREPRO_PROGRESS=0 OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n auto --dist loadscope -m slow

book: venv
	$(PY) -m poisonrepro.book

plan: venv
	$(PY) -m poisonrepro.plan --profile $(PROFILE)

clean:
	rm -rf build data/derived
