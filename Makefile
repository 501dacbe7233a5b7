# One entry point for setting up, testing and running the main job.
#   make setup   create .venv and install everything (idempotent, seconds when done)
#   make test    setup + the test suite (without the `research` tests)
#   make test-research  setup + the research tests (the learned shape, ~5 min)
#   make main-latency   setup + DP-S under a latency budget, timed beside human and DP-S
#   make main    setup + the main job (train + evaluate DynOPool HRNet and baseline)
#   make tradeoff  setup + accuracy-vs-GMACs curves on the built-in data (Figure 5.2)
#   make baselines setup + DynOPool vs Shape Adaptor vs DiffStride on the built-in data
#   make gpu-check on a CUDA machine: backend checks, op benchmark (torch + triton only;
#                  the mm-stack checks too where .venv or the mm stack is there)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
# No TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD: `import mmseg_dynopool` gives mmengine a loader
# that reads its checkpoints with weights_only=True (docs/reliability.md, safe checkpoints).

.PHONY: setup test test-research main main-latency bench tradeoff baselines clean-venv gpu-check

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
$(EXT): $(VENV)/.mmcv-done mmseg_dynopool/ops/cpu/dynopool_cpu.cpp setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

$(STAMP): $(VENV)/.mmcv-done $(EXT) requirements/runtime.txt requirements/tests.txt setup.py
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt
	DYNOPOOL_NO_EXT=1 $(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import mmseg_dynopool, mmseg.models, mmpretrain.models, mmcv.ops; from mmseg_dynopool import _C"
	touch $@

# Two xdist workers (one per core, one torch thread each); tests sharing an expensive
# module-scoped fixture run on one worker (groups set in tests/conftest.py).
# `research` tests (hundreds of training iterations each, checking what DynOPool
# learns rather than that the code works) run separately: `make test-research`.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not research" tests

test-research: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m research tests

main: setup
	$(PY) tools/run_main_job.py

# Issue 22: DP-S under a latency budget (predicted frozen latency <= 0.84x the human
# model's; fits work_dirs/latency/cpu.json first if missing) beside human and DP-S.
main-latency: setup
	$(PY) tools/run_latency_job.py

# Figure 5.2 on the built-in data: the tiny HRNet at 3 input scales vs DynOPool at 3
# GMACs budgets, 3 seeds each, 300 iterations per run (~20-25 min on 2 cores).
# TRADEOFF_BASELINES="--baselines <Shape Adaptor config> <DiffStride config>" adds their
# curves to the same plot (the human / DynOPool points already trained are reused).
SYNTH_DATA := data/synthetic_voc/VOC2012
TRADEOFF_ITERS := 300
TRADEOFF_BASELINES :=
tradeoff: setup
	test -f $(SYNTH_DATA)/ImageSets/Segmentation/train.txt || $(PY) -c "from mmseg_dynopool.datasets import write_synthetic_voc as w; w('$(SYNTH_DATA)', 120, 30, seed=0)"
	$(PY) tools/analysis/tradeoff.py configs/synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py \
	    configs/synthetic/fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py $(TRADEOFF_BASELINES) \
	    --work-dir work_dirs/tradeoff --scales 0.75 1.0 1.25 --targets 0.6 0.8 1.0 --seeds 3 \
	    --cfg-options train_cfg.max_iters=$(TRADEOFF_ITERS) train_cfg.val_interval=$(TRADEOFF_ITERS) \
	    param_scheduler.0.end=$(TRADEOFF_ITERS) default_hooks.checkpoint.interval=$(TRADEOFF_ITERS) \
	    train_dataloader.dataset.data_root=$(SYNTH_DATA) val_dataloader.dataset.data_root=$(SYNTH_DATA) \
	    test_dataloader.dataset.data_root=$(SYNTH_DATA)

# The side-by-side table of docs/baselines.md: the main job's models plus Shape Adaptor
# and DiffStride, unconstrained and at DP-S's cost, 3 seeds each (~30 min on 2 cores).
baselines: setup
	$(PY) tools/run_main_job.py --models human dp-s dp-b sa-s sa-b ds-s ds-b --seeds 3 \
	    --work-dir work_dirs/baselines

bench: setup
	$(PY) tools/benchmark/bench_dynopool.py
	$(PY) tools/benchmark/bench_hrnet.py

# GPU benchmark (issue 12): DynOPool vs MaxPool2d at HRNet-W48's shapes, and FCN-HRNetV2-W48
# training steps (human / DynOPool at init / at Table 5.4's sizes). Needs a CUDA device.
.PHONY: bench-gpu
bench-gpu: setup
	$(PY) tools/benchmark/bench_gpu.py

clean-venv:
	rm -rf $(VENV)

# No set-up step: runs with whatever Python has torch + triton (the .venv if present).
GPU_PY := $(shell test -x $(PY) && echo $(PY) || echo python3)
gpu-check:
	$(GPU_PY) tools/gpu_check.py $(GPU_CHECK_ARGS)
