# One entry point for setting up, testing and running the main job.
#   make setup   create .venv and install everything (idempotent, seconds when done)
#   make test    setup + the test suite
#   make main    setup + the main job (train + evaluate DynOPool HRNet and baseline)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
# torch >= 2.6 changed torch.load's default; mmengine 0.10.7 relies on the old one.
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD := 1

.PHONY: setup test test-all main bench clean-venv

setup: $(STAMP)

$(VENV)/.torch-done: requirements/torch.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "pip>=24,<26" "setuptools>=69,<82" wheel
	$(PIP) install -q -r requirements/torch.txt
	touch $@

# mmcv 2.1.0 is a source distribution; its ops are compiled here (~10 min on 2 cores,
# the wheel is cached). It needs the venv's torch and pkg_resources at build time.
$(VENV)/.mmcv-done: $(VENV)/.torch-done
	$(PY) -c "import mmcv.ops" 2>/dev/null || bash tools/setup/build_mmcv.sh $(PY)
	touch $@

# The fused CPU kernel of DynOPool, compiled in place (~1 min); rebuilt when it changes.
EXT := mmseg_dynopool/_C.done
$(EXT): $(VENV)/.mmcv-done mmseg_dynopool/csrc/dynopool_cpu.cpp setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

$(STAMP): $(VENV)/.mmcv-done $(EXT) requirements/runtime.txt requirements/tests.txt setup.py
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt
	DYNOPOOL_NO_EXT=1 $(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import mmseg_dynopool, mmseg.models, mmpretrain.models, mmcv.ops; from mmseg_dynopool import _C"
	touch $@

test: setup
	$(PY) -m pytest -q tests

main: setup
	$(PY) tools/run_main_job.py

bench: setup
	$(PY) tools/benchmark/bench_dynopool.py
	$(PY) tools/benchmark/bench_hrnet.py

clean-venv:
	rm -rf $(VENV)
