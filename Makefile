# Two commands for a fresh machine: `make demo` and `make test`. Both install first if needed.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec

# The second stack (docs/install.md): Python 3.12 with NumPy 2, through chainer_yolo_dist/compat.py.
PYTHON312 ?= $(shell tools/find_python.sh 3.12)
VENV312 := .venv312
STAMP312 := $(VENV312)/.installed
PY312 := $(VENV312)/bin/python
# `make test-py312 TESTS="tests/test_losses.py"` runs a part of the suite.
TESTS ?=

.PHONY: setup demo test test-fast clean-venv setup-py312 test-py312

setup: $(STAMP)

# Re-installs only when a pinned requirement, setup.py or the install script changed.
$(STAMP): setup.py requirements/constraints.txt requirements/build.txt requirements/runtime.txt tools/install_stack.sh tools/_nms_gpu_post.pyx
	PYTHON=$(PYTHON) tools/install_stack.sh
	touch $@

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

setup-py312: $(STAMP312)

$(STAMP312): setup.py requirements/constraints-py312.txt requirements/build.txt requirements/runtime.txt tools/install_stack.sh tools/_nms_gpu_post.pyx chainer_yolo_dist/compat.py
	@test -n "$(PYTHON312)" || { echo "no python3.12 found (set PYTHON312=/path/to/python3.12)"; exit 2; }
	PYTHON=$(PYTHON312) VENV=$(VENV312) CONSTRAINTS=requirements/constraints-py312.txt tools/install_stack.sh
	touch $@

test-py312: $(STAMP312)
	$(PY312) -m pytest -q $(TESTS)

clean-venv:
	rm -rf $(VENV) $(VENV312)
