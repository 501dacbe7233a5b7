"""Per-axis task gradient on DynOPool's alpha for isotropic data at several aspect ratios.

Question (docs/information_asymmetry.md): along an axis with ``2 H_out`` query
positions, ``d pos_k / d alpha`` grows with ``k``, so the task gradient on the alpha of
the longer axis may sum more and larger terms. If ``|dL/d alpha_w| / |dL/d alpha_h|``
grows with ``W / H`` on data with no preferred direction, the learned shape is biased by
the crop's aspect ratio, not by the data.

Setup: the main job's tiny DynOPool HRNet (FCN head, random init, ``r = 0.5``) on
isotropic inputs (white noise blurred by an isotropic Gaussian, so neighbouring pixels
correlate equally along both axes) with isotropic random label maps (blurred noise,
arg-max over 4 classes); loss = the head's cross-entropy. For each crop ``H x W``, the
mean over ``--seeds`` model initialisations x ``--batches`` batches of ``|dL/d alpha_h|``
and ``|dL/d alpha_w|`` of every pool, and their ratio.

    python tools/analysis/axis_gradients.py [--crops 64x64 64x128 64x192 128x64]
"""
import argparse
import statistics
import sys
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode='reflect'),
                 k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode='reflect'),
                    k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def isotropic_batch(n: int, h: int, w: int, gen: torch.Generator
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    x = _blur(torch.randn(n, 3, h, w, generator=gen), 2.0)
    x = x / x.std()
    labels = _blur(torch.randn(n, 4, h, w, generator=gen), 4.0).argmax(1)
    return x, labels


def build(seed: int):
    from mmseg.registry import MODELS

    from mmseg_dynopool.models.backbones import DynOPoolHRNet  # noqa: F401
    torch.manual_seed(seed)
    from mmengine.config import Config
    import os.path as osp
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs', 'synthetic',
                                   'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py'))
    cfg.model.decode_head.num_classes = 4
    cfg.model.decode_head.dropout_ratio = 0.0
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    model = MODELS.build(cfg.model)
    model.train()
    return model


def measure(crop: Tuple[int, int], seeds: int, batches: int, batch: int
            ) -> Dict[str, Tuple[float, float]]:
    from mmseg_dynopool import resizing_layers
    grads: Dict[str, List[Tuple[float, float]]] = {}
    for seed in range(seeds):
        model = build(seed)
        gen = torch.Generator().manual_seed(1000 + seed)
        for _ in range(batches):
            x, labels = isotropic_batch(batch, *crop, gen)
            model.zero_grad()
            logits = model(x, mode='tensor')
            logits = F.interpolate(logits, size=crop, mode='bilinear',
                                   align_corners=False)
            F.cross_entropy(logits, labels).backward()
            for name, pool in resizing_layers(model):
                g = pool.alpha.grad.abs().tolist()
                grads.setdefault(name, []).append((g[0], g[1]))
    return {name: (statistics.mean(g[0] for g in v), statistics.mean(g[1] for g in v))
            for name, v in grads.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--crops', nargs='+', default=['64x64', '64x128', '64x192',
                                                       '128x64'])
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--batches', type=int, default=4)
    parser.add_argument('--batch', type=int, default=4)
    args = parser.parse_args(argv)
    crops = []
    for text in args.crops:
        try:
            h, w = (int(v) for v in text.lower().split('x'))
        except ValueError:
            parser.error(f'crops must look like 64x128, got {text!r}')
        if h < 16 or w < 16:
            parser.error(f'crop {text} is too small (at least 16x16)')
        crops.append((h, w))
    import mmseg_dynopool  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    print('mean |dL/d alpha| per axis on isotropic data '
          f'({args.seeds} inits x {args.batches} batches of {args.batch})')
    print(f"{'crop':>8} {'W/H':>5} {'pool':>28} {'|g_h|':>10} {'|g_w|':>10} "
          f"{'|g_w|/|g_h|':>12}")
    for crop in crops:
        for name, (gh, gw) in measure(crop, args.seeds, args.batches, args.batch).items():
            print(f'{crop[0]:>3}x{crop[1]:<4} {crop[1] / crop[0]:>5.2f} {name:>28} '
                  f'{gh:>10.3e} {gw:>10.3e} {gw / gh:>12.3f}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
