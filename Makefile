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

.PHONY: setup demo demo-results demo-cyclegan demo-slowfast study rehearse test test-fast clean-venv \
	setup-py312 test-py312

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

# Paper 002 at CPU scale (docs/cyclegan.md): CycleGAN at 64 px on the synthetic domains on two
# processes, then Table 2's detectors on "real" only (a) and on "real" + translated "CG" (c),
# both evaluated on "real" only. Outputs in runs/demo-cyclegan/.
demo-cyclegan: $(STAMP)
	OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_cyclegan.py --out runs/demo-cyclegan/cyclegan --overwrite
	OMP_NUM_THREADS=1 $(PY) scripts/make_synthetic_detection_sets.py runs/demo-cyclegan/detection_data --generator runs/demo-cyclegan/cyclegan/model.npz
	for set in a c; do OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_yolo.py --preset yolov3_person_demo --data-dir runs/demo-cyclegan/detection_data --class-names object --train-split $$set --out runs/demo-cyclegan/detector_$$set --overwrite --loaderjob 0 || exit 1; done
	$(PY) scripts/compare_map.py runs/demo-cyclegan/detector_a runs/demo-cyclegan/detector_c

study: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/study.py --out results/runs/study --overwrite

# Paper 004's SlowFast against its Slow-only baseline on synthetic action clips, 2 ranks each
# (about 10 minutes on 2 idle cores, docs/slowfast.md); runs/demo-slowfast/{slowfast,slow}/.
SLOWFAST_DEMO := OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_slowfast.py --preset slowfast_demo --loader-workers 1 --profile --overwrite
demo-slowfast: $(STAMP)
	$(SLOWFAST_DEMO) --model slowfast_narrow --out runs/demo-slowfast/slowfast
	$(SLOWFAST_DEMO) --model slow_narrow --out runs/demo-slowfast/slow
	$(PY) -c "import json; m = {n: json.load(open('runs/demo-slowfast/%s/metrics.json' % n))['map'] for n in ('slowfast', 'slow')}; print('frame mAP@0.5 on held-out clips: SlowFast %.3f, Slow-only %.3f' % (m['slowfast'], m['slow']))"

# The papers' data sizes on disk (VOC 21,503 images, ImageNet 1,331,167 entries) and the real
# training scripts under mpiexec -n 4 (docs/rehearsal.md): results/bench/rehearsal_*.json.
rehearse: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/rehearse.py --out results/bench

test: $(STAMP)
	$(PY) -m pytest -q

# Everything but the end-to-end training runs (marked slow): about a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

setup-py312: $(STAMP312)

$(STAMP312): setup.py requirements/constraints-py312.txt requirements/build.txt requirements/runtime.txt tools/install_stack.sh tools/_nms_gpu_post.pyx chainer_yolo_dist/compat.py
	@test -n "$(PYTHON312)" || { echo "no python3.12 found (set PYTHON312=/path/to/python3.12)"; exit 2; }
	PYTHON=$(PYTHON312) VENV=$(VENV312) CONSTRAINTS=requirements/constraints-py312.txt tools/install_stack.sh
	touch $@

test-py312: $(STAMP312)
	$(PY312) -m pytest -q $(TESTS)

clean-venv:
	rm -rf $(VENV) $(VENV312)
