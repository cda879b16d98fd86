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

.PHONY: lint setup demo demo-results demo-cyclegan demo-slowfast study study-parallelism rehearse test \
	test-fast test-slurm clean-venv setup-py312 test-py312

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
# processes (a Frechet distance every half epoch: paper 002 Fig. 6's curve), then Table 2's
# detectors on "real" only (a) and on "real" + translated "CG" (c), both evaluated on "real"
# only; ends with Table 2's columns, the distances and summary.json. Committed outputs in
# results/runs/demo-cyclegan/ (its .gitignore keeps snapshots and the image sets out).
# CG_DEMO_GAN / CG_DEMO_SETS / CG_DEMO_DET add options to the three steps (a shortened check:
# make demo-cyclegan CG_DEMO=/tmp/cg CG_DEMO_GAN="--iterations 16" CG_DEMO_DET="--iterations 4").
CG_DEMO ?= results/runs/demo-cyclegan
CG_DEMO_GAN ?=
CG_DEMO_SETS ?=
CG_DEMO_DET ?=
demo-cyclegan: $(STAMP)
	OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_cyclegan.py --out $(CG_DEMO)/cyclegan --overwrite --fid-interval 0.5 --no-progress $(CG_DEMO_GAN)
	OMP_NUM_THREADS=1 $(PY) scripts/make_synthetic_detection_sets.py $(CG_DEMO)/detection_data --generator $(CG_DEMO)/cyclegan/model.npz $(CG_DEMO_SETS)
	for set in a c; do OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_yolo.py --preset yolov3_person_demo --data-dir $(CG_DEMO)/detection_data --class-names object --train-split $$set --out $(CG_DEMO)/detector_$$set --overwrite --loaderjob 0 --no-progress $(CG_DEMO_DET) || exit 1; done
	$(PY) scripts/reproduce_figures.py --runs $(CG_DEMO)/cyclegan --no-published --out $(CG_DEMO)/figures
	$(PY) scripts/summarize_cyclegan_demo.py $(CG_DEMO)

study: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/study.py --out results/runs/study --overwrite

# Paper 003 / issue 14: sync, sync + LARS, async, local and stale side by side at k = 1, 2, 4
# on the synthetic classification crops (docs/parallelism.md; estimated at about 8-10 minutes
# on 2 idle cores). Outputs in results/runs/parallelism/.
study-parallelism: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/study_parallelism.py --out results/runs/parallelism --overwrite

# Paper 004's SlowFast against its Slow-only baseline on synthetic action clips, 2 ranks each,
# profiled (Table 4's form); writes results/runs/demo-slowfast/{slowfast,slow}/ and summary.json
# (estimated 8-10 minutes on 2 idle cores, docs/slowfast.md). SLOWFAST_DEMO_ARGS shortens a
# trial run, e.g. make demo-slowfast SLOWFAST_DEMO_OUT=/tmp/sf SLOWFAST_DEMO_ARGS="--iterations 20".
SLOWFAST_DEMO_OUT ?= results/runs/demo-slowfast
SLOWFAST_DEMO_ARGS ?=
SLOWFAST_DEMO := OMP_NUM_THREADS=1 $(MPIEXEC) -n 2 $(PY) scripts/train_slowfast.py --preset slowfast_demo --loader-workers 1 --profile --overwrite $(SLOWFAST_DEMO_ARGS)
demo-slowfast: $(STAMP)
	$(SLOWFAST_DEMO) --model slowfast_narrow --out $(SLOWFAST_DEMO_OUT)/slowfast
	$(SLOWFAST_DEMO) --model slow_narrow --out $(SLOWFAST_DEMO_OUT)/slow
	OMP_NUM_THREADS=1 $(PY) scripts/summarize_slowfast_demo.py $(SLOWFAST_DEMO_OUT)

# The papers' data sizes on disk (VOC 21,503 images, ImageNet 1,331,167 entries) and the real
# training scripts under mpiexec -n 4 (docs/rehearsal.md): results/bench/rehearsal_*.json.
rehearse: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) scripts/rehearse.py --out results/bench

test: $(STAMP) lint
	$(PY) -m pytest -q

# examples/cluster/slurm_train_yolo.sh under a one-node Slurm started here (Debian's packages,
# installed with apt-get where missing): the time limit's SIGTERM, a snapshot, a resubmission,
# the uninterrupted run's weights (tests/test_slurm.py; about 3 minutes; run by .ci/run).
test-slurm: $(STAMP)
	PY=$(PY) tools/test_slurm.sh

# pycodestyle and pyflakes over the package, scripts, tests and tools (.flake8: 99 columns).
lint: $(STAMP)
	$(PY) -m flake8

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
