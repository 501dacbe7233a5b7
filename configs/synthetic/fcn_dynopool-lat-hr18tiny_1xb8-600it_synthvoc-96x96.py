# DynOPool-S of the main job with its budget in time instead of GMACs (issue 22,
# docs/budget.md "Latency budgets"): the predicted latency of the frozen model (one
# 96x96 image, PyTorch eager, on the device the latency model was fitted on) at most
# 0.84x the human model's (the DP-S GMACs ratio, 69.39 / 82.55 in Table 5.4). The rest
# is the DP-S config: lambda from 0 by dual ascent, projection and lock after 90 %.
# Fit the latency model first (`make main-latency` does):
#   .venv/bin/python tools/analysis/calibrate_cost.py fit --out work_dirs/latency/cpu.json
_base_ = ['./fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py']
custom_hooks = [
    dict(type='DynOPoolLatencyHook',
         latency_model='work_dirs/latency/cpu.json',  # relative to the working directory
         reference_config='{{fileDirname}}/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py',
         target_latency_ratio=0.84,
         lock_after=0.9)
]
