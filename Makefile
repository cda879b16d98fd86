# Two commands for a fresh machine: `make demo` and `make test`. Both install first if needed.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec

.PHONY: setup demo demo-results study test test-fast clean-venv

setup: $(STAMP)

# Re-installs only when a pinned requirement, setup.py or the install script changed.
$(STAMP): setup.py requirements/constraints.txt requirements/build.txt requirements/runtime.txt tools/install_stack.sh tools/_nms_gpu_post.pyx
	PYTHON=$(PYTHON) tools/install_stack.sh
	touch $@

# A new runs/demo-<time>/ each time; demo-results refreshes the committed results/runs/demo/.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/demo.py

demo-results: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/demo.py --out results/runs/demo --overwrite

study: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/study.py --out results/runs/study --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

# Everything but the end-to-end training runs (marked slow): about a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
