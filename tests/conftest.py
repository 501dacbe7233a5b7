"""Shared fixtures: synthetic datasets, the default-scope isolation, and (from
tests/helpers.py, which the torchrun worker imports too) the one tiny-config helper.

The suite runs in parallel (``pytest -n 2``, pytest-xdist): every worker is its own
process with its own session fixtures, written under its own ``tmp_path_factory``
folder; nothing is written into the repository.
"""
import contextlib
import io
import os
import os.path as osp
from typing import List, Tuple

import pytest

from .helpers import (MOVING_SIZES, REPO, SYNTH_DP_CFG, SYNTH_HUMAN_CFG,  # noqa: F401
                      build_segmentor, tiny_config)



def _cache_installed_config_lookups() -> None:
    """Cache what ``Config.fromfile`` looks up in installed packages.

    mmengine resolves every ``mmseg::`` / ``mmpretrain::`` base (the synthetic configs
    have two) by first reading all of the package's ~50 model metafiles (pure-Python
    YAML, ~1.3 s) and re-checking that the package is installed: most of the time of
    loading a config. Installed packages do not change during a test run, so both are
    cached per process; the configs still load through mmengine's own code.
    """
    import functools

    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils
    if not hasattr(config_utils.load, 'cache_info'):
        # `load` there only reads the metafiles (model-index.yml and what it lists),
        # which mmengine reads and never modifies.
        config_utils.load = functools.lru_cache(maxsize=None)(config_utils.load)
    if not hasattr(config_module.is_installed, 'cache_info'):
        config_module.is_installed = functools.lru_cache(maxsize=None)(
            config_module.is_installed)


def pytest_configure(config) -> None:
    """Cache config look-ups in installed packages (above), no hypothesis database.

    In an xdist worker, one thread per process: ``-n 2`` on two cores runs two workers,
    and with two threads each every OpenMP region waits for a descheduled thread (a
    160x160 forward of the tiny HRNet went from 0.05 s to 3.3 s). Child processes
    (tools/train.py, torchrun) inherit the environment variables."""
    _cache_installed_config_lookups()
    # No example database: hypothesis would write it into the repository (.hypothesis/),
    # from both workers at once; a fresh checkout (CI) starts without one anyway.
    from hypothesis import settings
    settings.register_profile('suite', database=None)
    settings.load_profile('suite')
    if os.environ.get('PYTEST_XDIST_WORKER'):
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = '1'
        import torch
        torch.set_num_threads(1)


#: Module-scoped fixtures cheap enough to build once per xdist worker.
_CHEAP_MODULE_FIXTURES = frozenset({'one_thread'})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Under xdist (``-n 2 --dist loadgroup``, the Makefile's ``test``): tests that share
    an expensive module-scoped fixture (a trained tiny model, a built HRNet-W48) go to
    one worker as a group (``xdist_group`` = their module), every other test is
    scheduled on its own; and the ``slow`` tests are handed out first, so that the
    short ones fill the gaps at the end instead of one long run ending the suite alone.

    Runs before xdist's own hook, which turns the ``xdist_group`` marks into the
    scheduling groups. A serial run keeps the collection order and no groups.
    """
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        return
    for item in items:
        info = getattr(item, '_fixtureinfo', None)  # pytest's, there since pytest 3
        defs = info.name2fixturedefs if info is not None else {}
        if any(d.scope in ('module', 'class', 'package')
               for name, fixture_defs in defs.items()
               if name not in _CHEAP_MODULE_FIXTURES for d in fixture_defs[-1:]):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(scope='module')
def one_thread():
    """Run a module's in-process work on one thread (restored afterwards): for modules
    that train while child processes (or other jobs) use the other core."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def voc_root(tmp_path_factory):
    """A small synthetic VOC-layout dataset shared by the integration tests (8 train,
    4 val images, 64-80 px)."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path_factory.mktemp('synthvoc') / 'VOC2012')
    write_synthetic_voc(root, num_train=8, num_val=4, size_range=(64, 80), seed=0)
    return root


@pytest.fixture(scope='session')
def main_job_voc_root(tmp_path_factory):
    """The main job's synthetic dataset (120 training images, default sizes)."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path_factory.mktemp('synthvoc_main') / 'VOC2012')
    write_synthetic_voc(root, num_train=120, num_val=4, seed=0)
    return root


# A small DeepLabV3+ (ResNetV1c-18 inside DynOPoolBackbone) whose resizing layers are
# ShapeAdaptor or DiffStride: the DP-S config of configs/dynopool_any/ with pool_cfg
# replaced. ``exact_sizes=False``: these layers' sizes at init follow their own rules.
RESIZING_DP_CFG = osp.join(REPO, 'configs', 'dynopool_any',
                           'deeplabv3plus_dynopool-s-r50-d8_4xb4-20k_voc12aug-512x512.py')


def resizing_layer_cfg(kind: str, out_dir: str) -> str:
    """Write a config file (in ``out_dir``) for the small model with ``kind`` layers."""
    path = osp.join(str(out_dir), f'r18_{kind.lower()}.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = [{RESIZING_DP_CFG!r}]\n"
                "model = dict(\n"
                "    backbone=dict(exact_sizes=False, backbone=dict(depth=18),\n"
                f"                  pool_cfg=dict(_delete_=True, type={kind!r})),\n"
                "    decode_head=dict(in_channels=512, c1_in_channels=64),\n"
                "    auxiliary_head=dict(in_channels=256))\n")
    return path


def load_tool(rel_path: str):
    """Import a script under tools/ (path relative to the repository) as a module, for
    its ``main(argv)``."""
    import importlib.util
    path = osp.join(REPO, rel_path)
    name = 'tool_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool_main(tool, argv: List[str]) -> Tuple[int, str]:
    """Run ``tool.main(argv)`` (a module from :func:`load_tool`) in this process: its exit
    status (0, or ``SystemExit``'s code) and what it printed. For the tools that drive
    ``tools/train.py`` in child processes (the main job, the trade-off sweep): the
    trainings stay the processes a user gets; the tool's own start-up (~4.5 s of imports)
    is skipped."""
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            tool.main(argv)
        except SystemExit as err:  # exit(None) is success, exit('message') failure
            if isinstance(err.code, int):
                code = err.code
            elif err.code is not None:
                code = 1
                print(err.code)
    return code, out.getvalue()


def tiny_hrnet_extra(stage3_modules: int = 1) -> dict:
    """The ``extra`` of a tiny HRNet (4 branches, widths 4-32, one block per branch)."""
    return dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1, ),
                    num_channels=(8, )),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1),
                    num_channels=(4, 8)),
        stage3=dict(num_modules=stage3_modules, num_branches=3, block='BASIC',
                    num_blocks=(1, 1, 1), num_channels=(4, 8, 16)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                    num_channels=(4, 8, 16, 32)))


def module_output_sizes(module, run) -> dict:
    """``(name, call index) -> (H, W)`` of the first 4-D output of every call of every
    submodule of ``module`` while ``run()`` executes (under no_grad)."""
    import torch
    sizes, counts, handles = {}, {}, []
    for name, m in module.named_modules():
        def hook(mod, args, out, name=name):
            k = counts.get(name, 0)
            counts[name] = k + 1
            outs = out if isinstance(out, (tuple, list)) else [out]
            t = next((o for o in outs if isinstance(o, torch.Tensor) and o.dim() == 4),
                     None)
            if t is not None:
                sizes[(name, k)] = tuple(t.shape[-2:])
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return sizes


def cuda_sync_messages(step) -> list:
    """Run ``step()`` under ``torch.cuda.set_sync_debug_mode('warn')`` and return the
    messages of the device synchronisations it made (CUDA only)."""
    import warnings

    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    return [str(w.message) for w in caught if 'synchroniz' in str(w.message)]


@pytest.fixture(autouse=True)
def _isolate_default_scope():
    """Start every test without a default scope, and restore the previous state after.

    A Runner (or ``init_default_scope``) in one test leaves its scope as mmengine's
    current default scope, and mmengine then looks every registry's names up in that
    scope's registry first: an mmpretrain backbone is not found through mmseg's
    registry and vice versa, so tests would depend on the order they run in. Without a
    default scope each registry resolves its own names (and its parents').
    """
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
