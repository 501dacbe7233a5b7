"""The import rule of docs/architecture.md, held by a test.

(a) ``import mmseg_dynopool`` (what ``custom_imports=dict(imports=['mmseg_dynopool'])``
    in a config does) registers what configs need and loads nothing downstream: no
    module of ``analysis/``, ``deploy/`` or ``dropclass/report.py``, and none of the
    deprecated shim modules.
(b) A static check of every ``import`` statement in the package (module level and
    inside functions alike): dependencies point one way, ops <- layers <- models <-
    engine, with analysis, deploy and tools downstream.
"""
import ast
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = 'mmseg_dynopool'
PACKAGE_DIR = osp.join(REPO, PACKAGE)

#: The op's compiled C++ kernel (``ops/cpu/dynopool_cpu.cpp``, built in place as
#: ``mmseg_dynopool._C``; absent from a checkout that has not been built).
EXTENSION = '_C'

#: Downstream code: nothing in the training code may import it.
DOWNSTREAM = ('analysis', 'deploy', 'tools', 'dropclass.report')

#: The rule table (docs/architecture.md, "An arrow points from a package to what it may
#: import"): for the modules under a folder of the package, either the only folders of
#: ours they may import (``only``) or the ones they must not import (``never``). Names
#: are relative to the package; ``''`` is the package's ``__init__`` itself. ``utils/``
#: and ``datasets/`` are leaves.
RULES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    'ops': dict(only=('ops', 'utils', EXTENSION)),
    'layers': dict(only=('ops', 'layers', 'utils')),
    'utils': dict(only=('utils', )),
    'datasets': dict(only=('datasets', 'utils')),
    'models': dict(never=('engine', ) + DOWNSTREAM),
    'dropclass': dict(never=('engine', ) + DOWNSTREAM),  # head + metric: training code
    'engine': dict(never=DOWNSTREAM),
    '': dict(never=DOWNSTREAM),  # mmseg_dynopool/__init__.py: what configs load
}
#: Modules exempt from the rule of their folder: downstream code that lives beside the
#: training code it reports on.
EXEMPT = ('dropclass.report', )

#: Deprecated shim modules kept for old import paths; the package never imports them.
SHIMS = ('mmseg_dynopool.analysis.per_class', 'mmseg_dynopool.analysis.gmacs',
         'mmseg_dynopool.models.decode_heads.dropclass_head')


# ----------------------------------------------------------------------- the checker
def _is_module(dotted: str) -> bool:
    """Whether ``mmseg_dynopool.<dotted>`` is a module or package on disk (or the
    compiled extension, built or not)."""
    if dotted == EXTENSION:
        return True
    path = osp.join(PACKAGE_DIR, *dotted.split('.')) if dotted else PACKAGE_DIR
    return osp.isfile(path + '.py') or osp.isfile(osp.join(path, '__init__.py'))


def _imports(module: str, source: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """``(line, target)`` of every import of ours in ``source`` (the module
    ``mmseg_dynopool.<module>``); ``target`` is relative to the package (``''`` = the
    package itself), resolved to the submodule when a name imported from a package is
    one."""
    parts = module.split('.') if module else []
    package = parts if is_package else parts[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + '.'):
                    yield node.lineno, alias.name[len(PACKAGE) + 1:]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    raise ValueError(f'{module}: relative import beyond the package')
                base = package[:len(package) - (node.level - 1)]
                base += node.module.split('.') if node.module else []
            elif node.module == PACKAGE or (node.module or '').startswith(PACKAGE + '.'):
                base = node.module.split('.')[1:]
            else:
                continue
            base_name = '.'.join(base)
            for alias in node.names:
                sub = f'{base_name}.{alias.name}' if base_name else alias.name
                yield node.lineno, sub if _is_module(sub) else base_name


def _covers(prefix: str, target: str) -> bool:
    return target == prefix or target.startswith(prefix + '.')


def _rule_of(module: str) -> Optional[Tuple[str, Dict[str, Tuple[str, ...]]]]:
    if any(_covers(e, module) for e in EXEMPT):
        return None
    if module == '':
        return '', RULES['']
    folder = module.split('.')[0]
    return (folder, RULES[folder]) if folder in RULES else None


def violations(module: str, source: str, is_package: bool = False) -> List[str]:
    """Imports of ``mmseg_dynopool.<module>`` (given its source) that break the rule
    table, as ``'<module>:<line> imports <target>'``."""
    rule = _rule_of(module)
    if rule is None:
        return []
    folder, table = rule
    found = []
    for line, target in _imports(module, source, is_package):
        if 'only' in table:
            ok = any(_covers(allowed, target) for allowed in table['only'])
        else:
            ok = not any(_covers(banned, target) for banned in table['never'])
        if not ok:
            where = f'{PACKAGE}.{target}'.rstrip('.')
            found.append(f'{PACKAGE}.{module}:{line} imports {where}')
    return found


def package_modules() -> Iterator[Tuple[str, str, bool]]:
    """``(module, path, is_package)`` of every Python file of the package."""
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = [d for d in dirs if not d.startswith(('.', '__'))]
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            rel = osp.relpath(osp.join(root, name), PACKAGE_DIR)[:-3].split(os.sep)
            is_package = rel[-1] == '__init__'
            if is_package:
                rel = rel[:-1]
            yield '.'.join(rel), osp.join(root, name), is_package


# ----------------------------------------------------------------------- (b) static
def test_the_package_follows_the_import_rule():
    modules = list(package_modules())
    # The walk sees the packages the rules are about (a rule for a folder that is
    # gone, or a walk that finds nothing, would make this test vacuous).
    folders = {m.split('.')[0] for m, _, _ in modules}
    assert {'ops', 'models', 'engine', 'dropclass', 'analysis', 'deploy'} <= folders
    assert set(RULES) - {''} - {'layers'} <= folders
    found = []
    for module, path, is_package in modules:
        with open(path) as f:
            found += violations(module, f.read(), is_package)
    assert not found, 'imports against docs/architecture.md:\n' + '\n'.join(found)


@pytest.mark.parametrize('module, source, is_package, bad', [
    # ops imports nothing of ours outside ops/ (relative, absolute, package-level)
    ('ops.functional', 'from ..layers import DynOPool', False, 'layers'),
    ('ops.cpu', 'from ...datasets import synthetic_voc', True,
     'datasets.synthetic_voc'),
    ('ops.native', 'import mmseg_dynopool.models.cost', False, 'models.cost'),
    ('ops.native', 'from mmseg_dynopool import layers', False, 'layers'),
    ('ops.native', 'import mmseg_dynopool', False, ''),
    ('ops.cpu', 'from ... import _C, datasets', True, 'datasets'),
    # layers: ops, layers, utils only
    ('layers.dynopool', 'from ..models import cost', False, 'models.cost'),
    ('layers.baselines.diffstride', 'from ...engine.hooks import x', False,
     'engine.hooks'),
    # models never import engine or downstream code, not even lazily
    ('models.cost', 'def f():\n    from ..analysis.report import model_report\n',
     False, 'analysis.report'),
    ('models.build', 'from ..dropclass import report', False, 'dropclass.report'),
    ('models.converter.trace', 'from ...engine import hooks', False, 'engine.hooks'),
    # engine never imports downstream code
    ('engine.hooks.gmacs_hook', 'import mmseg_dynopool.deploy.onnx', False,
     'deploy.onnx'),
    ('engine.budget', 'from ...analysis import plots', True, 'analysis.plots'),
    # DropClass training code (head, metric) never imports its report
    ('dropclass.metric', 'from .report import per_class_report', False,
     'dropclass.report'),
    # the package's __init__: what every config loads
    ('', 'from . import analysis', True, 'analysis'),
])
def test_the_checker_catches_a_forbidden_import(module, source, is_package, bad):
    found = violations(module, source, is_package)
    assert len(found) == 1 and found[0].endswith(f'imports {PACKAGE}.{bad}'.rstrip('.'))


@pytest.mark.parametrize('module, source, is_package', [
    ('ops.functional', 'from .geometry import query_geometry', False),
    ('ops.cpu', 'from ... import _C', True),
    ('ops.functional', 'from ..utils.pairs import to_pair', False),
    ('layers.dynopool', 'from ..ops import functional\nfrom ..utils.pairs import x',
     False),
    ('models.cost', 'from ..layers import resizing_layers', False),
    ('models.decode_heads.dropclass_head', 'from ...dropclass.head import X', False),
    ('engine.hooks.gmacs_hook', 'from ...models.cost import profile_gmacs', False),
    ('dropclass', 'from .head import DropClassFCNHead', True),
    ('dropclass.report', 'from ..models.build import read_checkpoint', False),
    ('analysis.plots', 'from ..models.build import build_model_from_config', False),
    ('', 'from . import datasets, dropclass, engine, models', True),
])
def test_the_checker_accepts_what_the_rule_allows(module, source, is_package):
    assert violations(module, source, is_package) == []


# ----------------------------------------------------------------------- (a) dynamic
def test_importing_the_package_loads_nothing_downstream():
    """In a fresh interpreter: load a DropClass config the way mmseg's tools do
    (``custom_imports`` imports the package), then look at ``sys.modules`` and the
    registries."""
    config = osp.join(REPO, 'configs', 'dropclass',
                      'fcn-dropclass_hr18tiny_1xb8-600it_synthvoc-96x96.py')
    code = f'''
import json, sys
from mmengine.config import Config
cfg = Config.fromfile({config!r})  # custom_imports=dict(imports=['mmseg_dynopool'])
from mmseg.registry import METRICS, MODELS
from mmengine.registry import MODELS as ROOT_MODELS, HOOKS
print(json.dumps(dict(
    imports=cfg.custom_imports['imports'],
    modules=sorted(m for m in sys.modules if m.startswith('mmseg_dynopool')),
    registered={{name: reg.get(name) is not None for reg, name in (
        (MODELS, 'DropClassFCNHead'), (METRICS, 'PerClassIoUMetric'),
        (MODELS, 'DynOPoolHRNet'), (ROOT_MODELS, 'DynOPool'),
        (HOOKS, 'DynOPoolGMACsHook'))}})))
'''
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['imports'] == [PACKAGE]
    modules: Set[str] = set(out['modules'])
    assert PACKAGE in modules and f'{PACKAGE}.dropclass.metric' in modules
    loaded = sorted(m for m in modules
                    if any(_covers(f'{PACKAGE}.{d}', m) for d in DOWNSTREAM)
                    or m in SHIMS)
    assert not loaded, f'import {PACKAGE} loaded downstream or shim modules: {loaded}'
    # ... and registers everything the configs name.
    assert all(out['registered'].values()), out['registered']
