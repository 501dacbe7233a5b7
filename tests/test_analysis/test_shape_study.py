"""The shape study's library (mmseg_dynopool/analysis/shape_study.py, issue 23): crop
names, the per-run config, and the summary table; no training."""
import math

import pytest

from mmseg_dynopool.analysis import shape_study as study


def test_crop_size_takes_named_ratios_and_h_x_w():
    assert study.crop_size('1:3') == (38, 114)
    assert study.crop_size('56x168') == (56, 168)
    assert study.crop_size('56X168') == (56, 168)
    for bad in ('2:5', '56x', '0x10', '56x168x3', 'abc'):
        with pytest.raises(ValueError, match='HxW'):
            study.crop_size(bad)


@pytest.mark.parametrize('data,scale', [('long', (3.9, 1.3)), ('short', (1.3, 3.9)),
                                        ('none', (1.3 * math.sqrt(3), 1.3 * math.sqrt(3)))])
def test_study_config_sets_crop_stretch_budget_and_axis_grad(tmp_path, data, scale):
    cfg = study.study_config('dynopool', study.crop_size('56x168'), data, seed=3,
                             iters=7, batch_size=4, data_root=str(tmp_path / 'voc'),
                             work_dir=str(tmp_path / 'work'), axis_grad='per_query')
    assert cfg.model.data_preprocessor.size == (56, 168)
    steps = {s['type']: s for s in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomCrop']['crop_size'] == (56, 168)
    assert tuple(steps['Pad']['size']) == (168, 56)  # mmcv's Pad takes (w, h)
    assert steps['Resize']['scale_factor'] == pytest.approx(scale)
    val_resize = [s for s in cfg.val_dataloader.dataset.pipeline if s['type'] == 'Resize']
    assert val_resize[0]['scale_factor'] == pytest.approx(scale)
    assert cfg.train_cfg.max_iters == 7 and cfg.randomness.seed == 3
    assert cfg.train_dataloader.batch_size == 4
    hook = cfg.custom_hooks[0]
    assert hook['target_ratio'] == 1.0 and 'target_gmacs' not in hook
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['.alpha']['lr_mult'] == 0.1
    assert cfg.model.backbone.pool_cfg['axis_grad'] == 'per_query'


def test_study_config_rejects_bad_arguments(tmp_path):
    args = dict(seed=0, iters=1, batch_size=1, data_root=str(tmp_path), work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="'dynopool' or 'human'"):
        study.study_config('vgg', (8, 8), 'none', **args)
    with pytest.raises(ValueError, match='axis_grad'):
        study.study_config('dynopool', (8, 8), 'none', axis_grad='log', **args)
    with pytest.raises(ValueError, match='data must be one of'):
        study.study_config('dynopool', (8, 8), 'diagonal', **args)


def test_summary_and_table_average_over_seeds():
    runs = {
        'dynopool|exact|56x168|long|0': dict(ratios={'stem': [0.5, 0.4]}, miou=40.0,
                                             total_s=1.0),
        'dynopool|exact|56x168|long|1': dict(ratios={'stem': [0.5, 0.5]}, miou=50.0,
                                             total_s=3.0),
        'human|-|56x168|long|0': dict(ratios={}, miou=60.0, total_s=1.0),
    }
    rows = {(r['model'], r['crop']): r for r in study.summarise(runs)}
    dp = rows[('dynopool', '56x168')]
    assert dp['n'] == 2 and dp['miou'][0] == pytest.approx(45.0)
    assert dp['levels']['stem']['r_w'][0] == pytest.approx(0.45)
    assert dp['levels']['stem']['log_w_over_h'][0] == pytest.approx(math.log(0.8) / 2)
    table = study.markdown(study.summarise(runs))
    line = [ln for ln in table.splitlines() if ln.startswith('| 56×168')]
    assert len(line) == 1 and '45.0' in line[0] and '60.0 (n=1)' in line[0]
