"""Deployed speed: the human model against DynOPool, live and frozen, in PyTorch eager and
onnxruntime, side by side in one process.

GMACs (Eq. 4.7) is what the budgets count; this measures what users pay. Per model pair
and per (threads, batch): inference (``no_grad``, eval mode) of the human model, the
live DynOPool model and the frozen one (``mmseg_dynopool.deploy.freeze_dynopool``) in
PyTorch, and of the human and frozen models exported to ONNX in onnxruntime (CPU; CUDA
in PyTorch when ``--device cuda``), repetitions interleaved in a rotating order,
medians, each time as a ratio to the human model's in the same runtime. Pairs:

* ``hrnet48``: FCN-HRNetV2-W48 at 480x480, DynOPool at Table 5.4's DP-S sizes (stem
  367x349, streams 134x130, 52x50, 22x21, 10x9);
* ``deeplab``: DeepLabV3+ R50-D8 (``DynOPoolBackbone``) at 512x512 with its pools scaled
  so the GMACs are <= ``--target`` (0.84) x the human model's;
* ``--pair HUMAN_CFG DP_CFG [--checkpoints H_CKPT DP_CKPT] --size N``: any two configs,
  e.g. the main job's trained models (``work_dirs/main/<model>/seed0``).

    python tools/benchmark/bench_deploy.py --models hrnet48 deeplab \
        [--batches 1 8] [--threads 1 2] [--repeats 5] [--no-onnx]
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)

HRNET_HUMAN = osp.join(REPO, 'configs', 'dynopool_hrnet',
                       'fcn_hr48_4xb4-40k_voc12aug-480x480.py')
HRNET_DP = osp.join(REPO, 'configs', 'dynopool_hrnet',
                    'fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py')
DEEPLAB_DP = osp.join(REPO, 'configs', 'dynopool_any',
                      'deeplabv3plus_dynopool-s-r50-d8_4xb4-20k_voc12aug-512x512.py')
DEEPLAB_HUMAN = osp.join(REPO, 'configs', 'dynopool_any',
                         'deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py')
OFFLINE = {'model.pretrained': None}


def _build(cfg: str, ckpt: Optional[str] = None, options: Optional[dict] = None
           ) -> nn.Module:
    from mmseg_dynopool.models.build import build_model_from_config
    opts = dict(OFFLINE)  # no pretrained weights to download
    opts.update(options or {})
    model = build_model_from_config(cfg, ckpt, cfg_options=opts)
    model.eval()
    return model


def hrnet48_pair(size: int) -> Tuple[nn.Module, nn.Module, str]:
    from bench_gpu import table_5_4_ratios
    human = _build(HRNET_HUMAN)
    # Table 5.4's per-level ratios (its sizes at 480x480; scaled at other sizes).
    dp = _build(HRNET_DP, options={'model.backbone.init_ratios': table_5_4_ratios(480)})
    return human, dp, "Table 5.4's DP-S ratios"


def _scale_to_budget(dp: nn.Module, human_gmacs: float, target: float, size: int) -> str:
    """Scale every pool's ratio by one factor (bisection) so the GMACs are <= target x
    the human model's."""
    from mmseg_dynopool import resizing_layers
    from mmseg_dynopool.models.cost import count_gmacs
    from mmseg_dynopool.layers import ratio_parameter, scale_ratio
    pools = [p for _, p in resizing_layers(dp)]
    start = [ratio_parameter(p).detach().clone() for p in pools]

    def cost(factor: float) -> float:
        for p, s in zip(pools, start):
            scale_ratio(p, s, torch.tensor(factor))
        return count_gmacs(dp, (size, size)) / human_gmacs

    lo, hi = 0.5, 1.0  # factor on the ratio; 1.0 = the human sizes
    for _ in range(7):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= target else (lo, mid)
    return f'ratios x{lo:.3f}: {cost(lo):.3f}x the human GMACs'


def deeplab_pair(size: int, target: float) -> Tuple[nn.Module, nn.Module, str]:
    from mmseg_dynopool.models.cost import count_gmacs
    human = _build(DEEPLAB_HUMAN)
    dp = _build(DEEPLAB_DP)
    note = _scale_to_budget(dp, count_gmacs(human, (size, size)), target, size)
    return human, dp, note


def interleaved_times(fns: Dict[str, Callable[[], None]], repeats: int,
                      sync: Callable[[], None] = lambda: None) -> Dict[str, List[float]]:
    """Every call's time in seconds, ``repeats`` rounds of all ``fns`` after one warm-up
    call each."""
    for fn in fns.values():  # warm-up
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        # The order rotates (and reverses every other round), so no model is always
        # timed right after the same other one: in a fixed order (human, live, frozen)
        # HRNet-W48's frozen model measured 1-8% slower than the live one at batch 8,
        # with the order rotated it did not (README, "Deployed speed").
        order = names[r % len(names):] + names[:r % len(names)]
        for name in (order[::-1] if r % 2 else order):
            sync()
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def _median_times(fns: Dict[str, Callable[[], None]], repeats: int,
                  sync: Callable[[], None]) -> Dict[str, float]:
    return {name: statistics.median(v)
            for name, v in interleaved_times(fns, repeats, sync).items()}


def bench_pair(name: str, human: nn.Module, dp: nn.Module, note: str, size: int,
               batches: Sequence[int], threads: Sequence[int], repeats: int,
               onnx: bool, device: str) -> None:
    from mmseg_dynopool.deploy import freeze_dynopool
    from mmseg_dynopool.deploy.onnx import TensorForward, export_onnx
    from mmseg_dynopool.models.cost import count_gmacs
    shape = (size, size)
    gm_h, gm_d = count_gmacs(human, shape), count_gmacs(dp, shape)
    frozen = freeze_dynopool(copy.deepcopy(dp), shape)
    models = {'human': TensorForward(human).eval(), 'live': TensorForward(dp).eval(),
              'frozen': TensorForward(frozen).eval()}
    for m in models.values():
        m.to(device)
    print(f'\n== {name} at {size}x{size} ({note}); GMACs human {gm_h:.2f}, DynOPool '
          f'{gm_d:.2f} ({gm_d / gm_h:.3f}x)', flush=True)
    sessions = {}
    if onnx:
        import onnxruntime as ort
        tmp = tempfile.mkdtemp(prefix='bench_deploy_')
        paths = {'human': export_onnx(human, shape, osp.join(tmp, 'human.onnx')),
                 'frozen': export_onnx(frozen, shape, osp.join(tmp, 'frozen.onnx'))}
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    print(f"{'threads':>7}{'batch':>6} | {'torch human ms':>15}{'live x':>8}{'frozen x':>9} "
          f"| {'ort human ms':>13}{'frozen x':>9}")
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        if onnx:
            options = ort.SessionOptions()
            options.intra_op_num_threads = n_threads
            options.log_severity_level = 3
            sessions = {k: ort.InferenceSession(p, options,
                                                providers=['CPUExecutionProvider'])
                        for k, p in paths.items()}
        for batch in batches:
            x = torch.randn(batch, 3, *shape, device=device)
            with torch.no_grad():
                t = _median_times({k: (lambda m=m: m(x)) for k, m in models.items()},
                                  repeats, sync)
            line = (f'{n_threads:>7}{batch:>6} | {t["human"] * 1e3:>15.1f}'
                    f'{t["live"] / t["human"]:>8.3f}{t["frozen"] / t["human"]:>9.3f} |')
            if sessions:
                arr = x.cpu().numpy()
                o = _median_times({k: (lambda s=s: s.run(None, {'input': arr}))
                                   for k, s in sessions.items()}, repeats, lambda: None)
                line += f'{o["human"] * 1e3:>13.1f}{o["frozen"] / o["human"]:>9.3f}'
            print(line, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='*', default=['hrnet48', 'deeplab'],
                        choices=['hrnet48', 'deeplab'])
    parser.add_argument('--pair', nargs=2, metavar=('HUMAN_CFG', 'DP_CFG'))
    parser.add_argument('--checkpoints', nargs=2, metavar=('HUMAN_CKPT', 'DP_CKPT'))
    parser.add_argument('--size', type=int, default=None,
                        help='input size (default: 480 hrnet48, 512 deeplab)')
    parser.add_argument('--target', type=float, default=0.84)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--no-onnx', action='store_true')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    for value, name in ((args.size, '--size'), (args.repeats, '--repeats')):
        if value is not None and value < 1:
            parser.error(f'{name} must be positive')
    import mmseg_dynopool  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    onnx = not args.no_onnx and args.device == 'cpu'
    pairs = []
    if args.pair:
        ckpts = args.checkpoints or (None, None)
        human, dp = _build(args.pair[0], ckpts[0]), _build(args.pair[1], ckpts[1])
        pairs.append(('given configs', human, dp, 'trained' if args.checkpoints else
                      'initial state', args.size or 512))
    for name in ([] if args.pair else args.models):
        size = args.size or (480 if name == 'hrnet48' else 512)
        human, dp, note = (hrnet48_pair(size) if name == 'hrnet48'
                           else deeplab_pair(size, args.target))
        pairs.append((name, human, dp, note, size))
    for name, human, dp, note, size in pairs:
        bench_pair(name, human, dp, note, size, args.batches, args.threads, args.repeats,
                   onnx, args.device)
    return 0


if __name__ == '__main__':
    sys.exit(main())
