"""Ahead-of-time compilation of the Triton kernels for NVIDIA targets, without a GPU.

Triton compiles a ``@triton.jit`` function for a given target from its signature and
constexprs (``triton.compile(ASTSource(...), target=GPUTarget('cuda', cc, 32))``); the
``ptxas`` and ``cuobjdump`` that ship in the triton wheel turn it into a cubin and report
its resources. So compile errors, register spills and the theoretical occupancy of every
specialisation the dispatcher (``triton/__init__.py``) can launch are checked on a CPU
machine, in CI (``tests/test_ops/test_triton_aot.py``; table: ``tools/analysis/
triton_resources.py``, docs/gpu.md).

A specialisation is what the dispatcher varies per launch: the kernel, ``IS_MAX``,
the map dtype (float32 / bfloat16 / float16 / float64), ``CHANNELS_LAST`` (forward and
input gradient), ``INT64`` indexing and, for the positional gradient, the column tile
``BLOCK_J``. Integer arguments are compiled generic (``i32``, or ``i64`` with ``INT64``):
Triton's value specialisations (``== 1``, divisible by 16) only remove work.
"""
import inspect
import itertools
import os.path as osp
import re
import subprocess
import tempfile
from typing import Dict, Iterator, List, NamedTuple, Tuple

from . import BLOCK, BLOCK_GRAD, BLOCK_J, BLOCK_NC, NUM_WARPS

DTYPES = ('fp32', 'bf16', 'fp16', 'fp64')
#: (name, compute capability) of the targets checked; newer ones are added when the
#: bundled ptxas supports them (:func:`available_targets`).
TARGETS = (('sm_80', 80), ('sm_90', 90))
NEWER_TARGETS = (('sm_100', 100), ('sm_120', 120))

# Per-SM limits of the resource model (CUDA occupancy calculator): registers, warps,
# blocks, shared memory usable by blocks, and the shared memory the driver reserves per
# block. sm_120 (consumer Blackwell) has 48 warps and 100 KiB.
_SM_LIMITS = {80: (65536, 64, 32, 164 * 1024, 1024),
              90: (65536, 64, 32, 228 * 1024, 1024),
              100: (65536, 64, 32, 228 * 1024, 1024),
              120: (65536, 48, 32, 100 * 1024, 1024)}
_REG_ALLOC_UNIT = 256  # registers are allocated per warp in units of 256


class Spec(NamedTuple):
    """One specialisation the dispatcher can launch."""
    kernel: str       # 'forward_kernel' | 'input_grad_kernel' | 'position_grad_kernel'
    is_max: bool
    dtype: str        # element type of the map (and of out / grad tensors)
    channels_last: bool
    int64: bool
    block_j: int = 0  # position_grad_kernel's column tile (0 elsewhere)

    def label(self) -> str:
        parts = [self.kernel.replace('_kernel', ''), 'max' if self.is_max else 'avg',
                 self.dtype, 'nhwc' if self.channels_last else 'nchw',
                 'i64' if self.int64 else 'i32']
        if self.block_j:
            parts.append(f'j{self.block_j}')
        return '/'.join(parts)


class Resources(NamedTuple):
    registers: int
    spill_bytes: int   # LOCAL (spill) memory per thread
    stack_bytes: int
    shared_bytes: int  # static + Triton's dynamic shared memory
    num_warps: int


def specialisations() -> Iterator[Spec]:
    """Every specialisation the dispatcher can launch with the current launch config."""
    flags = list(itertools.product((True, False), DTYPES, (False, True), (False, True)))
    for is_max, dtype, cl, int64 in flags:
        yield Spec('forward_kernel', is_max, dtype, cl, int64)
        yield Spec('input_grad_kernel', is_max, dtype, cl, int64)
    # The positional gradient addresses through strides only (no layout constexpr); its
    # column tile is min(BLOCK_J, max(16, next power of two >= W_out)).
    tiles = sorted({min(BLOCK_J, t) for t in (16, 32, 64, BLOCK_J)})
    for is_max, dtype, int64, block_j in itertools.product((True, False), DTYPES,
                                                           (False, True), tiles):
        yield Spec('position_grad_kernel', is_max, dtype, False, int64, block_j)


_INDEX_TABLES = {'r0_ptr', 'r1_ptr', 'c0_ptr', 'c1_ptr', 'hlo_ptr', 'hhi_ptr', 'wlo_ptr',
                 'whi_ptr'}
_ACC_POINTERS = {'fr_ptr', 'fc_ptr', 'ph_ptr', 'pw_ptr'}  # accumulation dtype


def _signature(fn, spec: Spec) -> Tuple[Dict[str, str], Dict[tuple, object]]:
    params = list(inspect.signature(fn.fn).parameters)
    constexprs = dict(IS_MAX=spec.is_max, INT64=spec.int64)
    if spec.kernel == 'position_grad_kernel':
        constexprs.update(BLOCK_NC=BLOCK_NC, BLOCK_J=spec.block_j)
    else:
        constexprs.update(CHANNELS_LAST=spec.channels_last,
                          BLOCK=BLOCK if spec.kernel == 'forward_kernel' else BLOCK_GRAD)
    acc = 'fp64' if spec.dtype == 'fp64' else 'fp32'
    sig = {}
    for name in params:
        if name in constexprs:
            sig[name] = 'constexpr'
        elif name in _INDEX_TABLES:
            sig[name] = '*i64'
        elif name == 'arg_ptr':
            sig[name] = '*u8'
        elif name in _ACC_POINTERS:
            sig[name] = '*' + acc
        elif name.endswith('_ptr'):
            sig[name] = '*' + spec.dtype
        else:
            sig[name] = 'i64' if spec.int64 else 'i32'
    return sig, {(params.index(k), ): v for k, v in constexprs.items()}


def _tool(name: str) -> str:
    import triton
    path = osp.join(osp.dirname(triton.__file__), 'backends', 'nvidia', 'bin', name)
    if not osp.exists(path):
        raise RuntimeError(f'{name} not found in the triton wheel ({path})')
    return path


def compile_spec(spec: Spec, capability: int) -> Tuple[bytes, int]:
    """The cubin of ``spec`` for compute capability ``capability`` (e.g. 90), and the
    dynamic shared memory Triton launches it with.

    Raises whatever Triton raises on a compile error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import kernels
    fn = getattr(kernels, spec.kernel)
    sig, constexprs = _signature(fn, spec)
    compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                              target=GPUTarget('cuda', capability, 32),
                              options=dict(num_warps=NUM_WARPS))
    return compiled.asm['cubin'], int(getattr(compiled.metadata, 'shared', 0))


def resources(cubin: bytes, dynamic_shared: int = 0) -> Resources:
    """Registers, spills and shared memory of a one-kernel cubin (``cuobjdump``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'kernel.cubin')
        with open(path, 'wb') as f:
            f.write(cubin)
        out = subprocess.run([_tool('cuobjdump'), '--dump-resource-usage', path],
                             capture_output=True, text=True, check=True).stdout
    m = re.search(r'REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)', out)
    if m is None:
        raise RuntimeError(f'cannot parse cuobjdump output:\n{out}')
    regs, stack, shared, local = (int(v) for v in m.groups())
    return Resources(regs, local, stack, max(shared, dynamic_shared), NUM_WARPS)


def occupancy(res: Resources, capability: int) -> float:
    """Theoretical occupancy (resident warps / maximum warps per SM) of a kernel with
    ``res`` on ``capability``, by the CUDA occupancy calculator's rules."""
    regs_sm, warps_sm, blocks_sm, shared_sm, shared_reserved = _SM_LIMITS[capability]
    regs_per_warp = -(-res.registers * 32 // _REG_ALLOC_UNIT) * _REG_ALLOC_UNIT
    by_regs = (regs_sm // regs_per_warp) // res.num_warps if regs_per_warp else blocks_sm
    by_warps = warps_sm // res.num_warps
    by_shared = shared_sm // (res.shared_bytes + shared_reserved)
    blocks = min(by_regs, by_warps, by_shared, blocks_sm)
    return blocks * res.num_warps / warps_sm


def available_targets(include_newer: bool = True) -> List[Tuple[str, int]]:
    """sm_80 and sm_90, and the newer targets the bundled ptxas compiles for."""
    targets = list(TARGETS)
    if include_newer:
        for name, cc in NEWER_TARGETS:
            try:
                compile_spec(Spec('forward_kernel', True, 'fp32', False, False), cc)
            except Exception:  # noqa: BLE001 - not supported by this ptxas/triton
                continue
            targets.append((name, cc))
    return targets


def report(spec: Spec, capability: int) -> Tuple[Resources, float]:
    """Compile ``spec`` for ``capability``; its resources and theoretical occupancy."""
    cubin, dynamic_shared = compile_spec(spec, capability)
    res = resources(cubin, dynamic_shared)
    return res, occupancy(res, capability)
