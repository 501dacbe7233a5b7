"""Thesis chapter 3 on a non-square crop: the learned stem shape follows the data, not
the crop (issue 23, docs/information_asymmetry.md).

1:3 crops (38x114, the long axis W) of the built-in data, the main job's tiny DynOPool
HRNet at the human cost (budget ``target_ratio=1.0``, sizes projected onto it at the
end; alpha at the configs' 0.1x learning rate), 200 iterations of batch 8: the study's
1:3 cells (``tools/analysis/shape_study.py``) without validation.

* images stretched 3x along W (the long axis): the stem should keep fewer columns than
  rows, ``r_w < r_h``;
* images enlarged isotropically (the control): the stem stays near-isotropic,
  ``|log(r_w / r_h)| <= CONTROL_TOL``.

Measured (docs/information_asymmetry.md): at this budget neither setting reliably
learns the data's direction on the stretched 1:3 crop (the study: 0.00 +- 0.02 over 3
seeds; here seed 0 now ends with ``r_w < r_h``, seed 1 not), so that test, which asks
it of both seeds, is a strict xfail: it records today's behaviour and fails (XPASS) the
day every seed learns the direction, when the mark must go. The control passes with both settings.

``AXIS_GRAD`` is the setting the study recommends (the thesis-exact gradient);
``SHAPE_DIRECTION_AXIS_GRAD=per_query`` (or ``exact``) in the environment runs the same
tests with the other setting.

The one crop-aspect bias the study found is on its second data set
(``write_synthetic_voc(style='blobs')``, isotropic objects): on the unstretched 1:3 crop
the exact gradient shrinks the long axis (stem ``log(r_w / r_h)`` -0.08 +- 0.02 over 3
seeds in the study; -0.04 and -0.09 for seeds 0 and 1 in this test's runs),
``axis_grad='per_query'`` does not (-0.01 +- 0.02; -0.02 and -0.01 here). The blobs test
runs that cell with the study's own code (``analysis.shape_study.study_config`` /
``run_one``) for two seeds with both gradients and asserts that per-query keeps each
seed isotropic within ``BLOBS_TOL`` *and* is more isotropic than the exact gradient on
average, so it fails if the option stops removing the bias (or the exact gradient is
already isotropic, i.e. there is no bias to remove).
"""
import math
import os

import pytest
from mmengine.runner import Runner

from mmseg_dynopool import resizing_layers
from mmseg_dynopool.analysis.shape_study import run_one, study_config

from ..helpers import SYNTH_DP_CFG, tiny_config

# One thread (conftest's one_thread): on the shared 2-core machine two threads ran
# several times slower; the study ran on one too.
pytestmark = [pytest.mark.slow, pytest.mark.research,
              pytest.mark.usefixtures('one_thread')]

AXIS_GRAD = os.environ.get('SHAPE_DIRECTION_AXIS_GRAD', 'exact')
CROP = (38, 114)  # (H, W)
BASE = 1.3        # isotropic enlargement before the stretch, as in the study
ITERS = 200
# |log(r_w / r_h)| allowed on the control: one stem row of a 38-row crop is 0.026 in
# r_h, ~0.055 in log at r ~ 0.48, and the study's control cells spread by about that
# much between seeds and settings; 0.08 is ~1.5 rows.
CONTROL_TOL = 0.08
STRETCH = {'long': (3.0 * BASE, BASE),  # mmcv scale_factor is (w, h)
           'none': (math.sqrt(3.0) * BASE, math.sqrt(3.0) * BASE)}


def _stem_ratio(root: str, work_dir: str, seed: int, data: str):
    cfg = tiny_config(SYNTH_DP_CFG, root, work_dir, ITERS, crop=CROP[0], batch_size=8,
                      validate=False, alpha_lr_mult=0.1,
                      gmacs_hook=dict(loss_weight=0.0, target_ratio=1.0),
                      randomness=dict(seed=seed))
    backbone = cfg.model.backbone
    backbone.pool_cfg = dict(backbone.pool_cfg, axis_grad=AXIS_GRAD)
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        dict(type='Resize', scale_factor=STRETCH[data], keep_ratio=False),
        dict(type='RandomCrop', crop_size=CROP, cat_max_ratio=0.9),
        dict(type='RandomFlip', prob=0.5), dict(type='Pad', size=CROP[::-1]),
        dict(type='PackSegInputs')]
    cfg.model.data_preprocessor.size = CROP
    cfg.default_hooks.logger.interval = 50
    runner = Runner.from_cfg(cfg)
    runner.train()
    pools = dict(resizing_layers(runner.model))
    assert pools['backbone.dynopool_stem'].axis_grad == AXIS_GRAD
    return pools['backbone.dynopool_stem'].ratio.tolist()


@pytest.mark.xfail(strict=True, reason=(
    'issue 23: at 200 iterations on 38x114 crops not every seed keeps r_w < r_h on data '
    'stretched along W (recorded as r_h/r_w for seeds 0/1: exact 0.466/0.469 and '
    '0.474/0.482 in an earlier session, seed 0 0.469/0.452 on 2026-12-07; per_query '
    '0.440/0.484, 0.474/0.482); the study: 0.00 +- 0.02 over 3 seeds; '
    'docs/information_asymmetry.md'))
def test_stretch_along_the_long_axis_keeps_fewer_columns(main_job_voc_root, tmp_path):
    """Every seed must learn the direction (one seed doing so is within the noise)."""
    ratios = {seed: _stem_ratio(main_job_voc_root, str(tmp_path / f'seed{seed}'), seed,
                                'long') for seed in (0, 1)}
    for seed, (r_h, r_w) in ratios.items():
        print(f'axis_grad={AXIS_GRAD} seed {seed} long: stem r_h={r_h:.3f} r_w={r_w:.3f}')
    assert all(r_w < r_h for r_h, r_w in ratios.values()), (AXIS_GRAD, ratios)


@pytest.mark.parametrize('seed', [0, 1])
def test_unstretched_control_stays_isotropic(main_job_voc_root, tmp_path, seed):
    r_h, r_w = _stem_ratio(main_job_voc_root, str(tmp_path), seed, 'none')
    print(f'axis_grad={AXIS_GRAD} seed {seed} none: stem r_h={r_h:.3f} r_w={r_w:.3f}')
    assert abs(math.log(r_w / r_h)) <= CONTROL_TOL, (AXIS_GRAD, seed, r_h, r_w)


# |log(r_w / r_h)| allowed on the blobs control with per-query: its seeds end within
# about 0.02 of isotropic (the study, and this test's runs), the exact gradient's at
# -0.04 to -0.09.
BLOBS_TOL = 0.05
BLOBS_SEEDS = (0, 1)


@pytest.fixture(scope='module')
def blobs_voc_root(tmp_path_factory):
    """The study's second data set: 120 / 30 images of isotropic blobs, seed 0."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path_factory.mktemp('blobs') / 'VOC2012')
    write_synthetic_voc(root, 120, 30, seed=0, style='blobs')
    return root


def _blobs_control_log_ratio(root: str, work_dir: str, seed: int, axis_grad: str
                             ) -> float:
    cfg = study_config('dynopool', CROP, 'none', seed, ITERS, 8, root, work_dir,
                       axis_grad=axis_grad)
    r_h, r_w = run_one(cfg)['ratios']['stem']
    print(f'blobs 1:3 control, axis_grad={axis_grad} seed {seed}: stem r_h={r_h:.3f} '
          f'r_w={r_w:.3f} log(r_w/r_h)={math.log(r_w / r_h):+.3f}')
    return math.log(r_w / r_h)


def test_per_query_removes_the_long_axis_bias_of_the_blobs_control(blobs_voc_root,
                                                                   tmp_path):
    """The same seeds with both gradients: per-query keeps every seed's stem isotropic
    and, over the seeds, is more isotropic than the thesis-exact gradient (which shrinks
    the long axis: the bias; the assertion fails if the option does not remove it)."""
    logs = {grad: [_blobs_control_log_ratio(blobs_voc_root, str(tmp_path / f'{grad}{s}'),
                                            s, grad) for s in BLOBS_SEEDS]
            for grad in ('exact', 'per_query')}
    assert all(abs(v) <= BLOBS_TOL for v in logs['per_query']), logs
    mean_abs = {grad: sum(abs(v) for v in vs) / len(vs) for grad, vs in logs.items()}
    assert mean_abs['per_query'] < mean_abs['exact'], logs
