"""The Triton kernels compiled ahead of time for real GPU targets, without a GPU.

Every specialisation the dispatcher can launch (kernel x max/avg x float32/bfloat16/
float16/float64 x NCHW/channels_last x 32/64-bit indexing, x the positional gradient's
column tiles) is compiled for sm_80 and sm_90 with the ptxas bundled in the triton wheel:
a compile error or a register spill fails the test, and so does a theoretical occupancy
below 50 % on sm_90 (the kernels are gather-bound: resident warps hide the latency).
~1 min on 2 CPU cores with a cold Triton cache, seconds with a warm one.
"""
import pytest

pytest.importorskip('triton')

from mmseg_dynopool.ops.triton import aot  # noqa: E402

KERNELS = ('forward_kernel', 'input_grad_kernel', 'position_grad_kernel')


def test_specialisations_cover_the_dispatcher_flags():
    specs = list(aot.specialisations())
    for kernel in KERNELS:
        mine = [s for s in specs if s.kernel == kernel]
        assert {s.dtype for s in mine} == set(aot.DTYPES)
        assert {s.is_max for s in mine} == {True, False}
        assert {s.int64 for s in mine} == {True, False}
        if kernel != 'position_grad_kernel':
            assert {s.channels_last for s in mine} == {True, False}
    assert len(set(specs)) == len(specs)


@pytest.mark.parametrize('capability', [80, 90], ids=['sm_80', 'sm_90'])
@pytest.mark.parametrize('kernel', KERNELS)
def test_every_specialisation_compiles_without_spills(kernel, capability):
    problems = []
    for spec in aot.specialisations():
        if spec.kernel != kernel:
            continue
        res, occ = aot.report(spec, capability)  # raises on a compile error
        if res.spill_bytes or res.stack_bytes:
            problems.append(f'{spec.label()}: {res.spill_bytes} B spilled, '
                            f'{res.stack_bytes} B stack')
        if capability == 90 and occ < 0.5:
            problems.append(f'{spec.label()}: occupancy {occ:.0%} with '
                            f'{res.registers} registers')
    assert not problems, '\n'.join(problems)


def test_occupancy_model():
    """The occupancy calculator's rules on known cases (sm_90: 64 warps, 64K registers)."""
    res = aot.Resources(registers=128, spill_bytes=0, stack_bytes=0, shared_bytes=0,
                        num_warps=4)
    assert aot.occupancy(res, 90) == 0.25  # 16 warps fit the register file
    assert aot.occupancy(res._replace(registers=40), 90) == 0.75  # 12 blocks of 4 warps
    assert aot.occupancy(res._replace(registers=32), 90) == 1.0
    # Shared memory bound: 100 KiB per block leaves 2 blocks on sm_90.
    assert aot.occupancy(res._replace(registers=32, shared_bytes=100 * 1024), 90) == 0.125
