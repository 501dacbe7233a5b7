"""Training runs through the OpenMMLab tools, shared by the main job and the trade-off tool.

A run is one ``tools/train.py`` invocation of mmseg (or mmpretrain, by the config's
``default_scope``) in a subprocess, exactly as a user would start it, optionally under
``torchrun`` for several GPUs. Its output is streamed: every mmengine log line goes to
``WORK_DIR/run.log`` and a one-line progress summary (iteration, loss, ETA, the GMACs
hook's ``gmacs``) is printed as it happens. After the run, the final validation metric is
read from mmengine's ``vis_data/scalars.json`` (:mod:`mmseg_dynopool.analysis.workdir`)
and a ``result.json`` marks it as done, so an interrupted sweep can continue where it
stopped. :func:`mean_std` summarises the runs of several seeds.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import threading
from typing import Dict, List, Optional, Sequence

from .workdir import final_metric, latest_checkpoint

# mmengine's config parsing (pkg_resources) is not thread-safe; runs may be started
# from several threads (run_main_job.py --jobs).
_CONFIG_LOCK = threading.Lock()

# Validation metric per OpenMMLab scope (what mmengine logs after the val loop).
METRIC_KEYS = {'mmseg': 'mIoU', 'mmpretrain': 'accuracy/top1'}

_PROGRESS = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?eta:\s*(\S+).*?'
                       r'(?:\s|^)loss:\s*([0-9.]+)')
_GMACS = re.compile(r'(?:\s|^)gmacs:\s*([0-9.]+)')


def mm_tool(scope: str, name: str) -> str:
    """Path of ``tools/<name>`` shipped inside the installed mmseg / mmpretrain."""
    package = __import__(scope)
    path = osp.join(osp.dirname(package.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{scope} tool {path} not found; is {scope} installed '
                                'from its wheel?')
    return path


def launcher(gpus: int, tool: str) -> List[str]:
    """``python TOOL`` or, for several GPUs, ``torchrun --nproc_per_node GPUS TOOL``."""
    if gpus > 1:
        return [sys.executable, '-m', 'torch.distributed.run',
                f'--nproc_per_node={gpus}', tool, '--launcher', 'pytorch']
    return [sys.executable, tool]


def run_streaming(cmd: Sequence[str], log_path: str, label: str, cwd: str,
                  quiet: bool = False) -> str:
    """Run ``cmd``, write its output to ``log_path``, print progress lines as they come.

    Raises ``SystemExit`` with the log's tail if the command fails.
    """
    os.makedirs(osp.dirname(osp.abspath(log_path)), exist_ok=True)
    if not quiet:
        print(f'[{label}] $ ' + ' '.join(cmd), flush=True)
    lines = []
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if quiet:
                continue
            match = _PROGRESS.search(line)
            if match:
                it, total, eta, loss = match.groups()
                gm = _GMACS.search(line)
                extra = f'  gmacs {float(gm.group(1)):.4f}' if gm else ''
                print(f'[{label}] iter {it}/{total}  loss {float(loss):.4f}{extra}  '
                      f'eta {eta}', flush=True)
            elif '(val)' in line and ('mIoU' in line or 'accuracy/top1' in line):
                print(f'[{label}] {line.strip()[-160:]}', flush=True)
        proc.wait()
    text = ''.join(lines)
    if proc.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f'[{label}] command failed ({proc.returncode}); full log: '
                         f'{log_path}')
    return text


def train_run(config: str, work_dir: str, cfg_options: Sequence[str] = (),
              gpus: int = 1, label: str = 'train', cwd: Optional[str] = None,
              quiet: bool = False) -> Dict:
    """Train ``config`` with the OpenMMLab ``tools/train.py``; returns the run's result.

    The result (``metric``, ``metric_key``, ``checkpoint``, ``work_dir``) is also written
    to ``WORK_DIR/result.json``; if that file exists the run is skipped and the stored
    result returned (resuming an interrupted sweep).
    """
    from mmengine.config import Config

    done = osp.join(work_dir, 'result.json')
    if osp.isfile(done):
        with open(done) as f:
            result = json.load(f)
        if not quiet:
            print(f'[{label}] already done: {result["metric_key"]} '
                  f'{result["metric"]:.2f} ({done})', flush=True)
        return result
    with _CONFIG_LOCK:
        scope = Config.fromfile(config).get('default_scope', 'mmseg')
    key = METRIC_KEYS.get(scope)
    if key is None:
        raise ValueError(f'{config}: default_scope {scope!r} is not one of '
                         f'{sorted(METRIC_KEYS)}')
    os.makedirs(work_dir, exist_ok=True)
    cmd = launcher(gpus, mm_tool(scope, 'train.py')) + [config, '--work-dir', work_dir]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    run_streaming(cmd, osp.join(work_dir, 'run.log'), label,
                  cwd or os.getcwd(), quiet=quiet)
    result = dict(config=config, work_dir=work_dir, cfg_options=list(cfg_options),
                  checkpoint=latest_checkpoint(work_dir), metric_key=key,
                  metric=final_metric(work_dir, key))
    with open(done, 'w') as f:
        json.dump(result, f, indent=2)
    return result


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return dict(mean=mean, std=std)
