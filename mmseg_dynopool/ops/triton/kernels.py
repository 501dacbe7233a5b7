"""Triton kernels of DynOPool's sampling (thesis Eq. 4.2), forward and backward.

Notation (``ops/geometry.py``): query row ``r`` (``0 <= r < 2 H_out``) has neighbours
``R0[r]``, ``R1[r]`` and fraction ``FR[r]``; query column ``c`` likewise ``C0``, ``C1``,
``FC``. Output cell ``(i, j)`` holds the four query points ``(2i + a, 2j + b)``,
``a, b in {0, 1}``, numbered ``k = 2a + b``. A sample is the bilinear value

    v = lerp(lerp(x[R0, C0], x[R1, C0], FR), lerp(x[R0, C1], x[R1, C1], FR), FC),

interpolated along H first, as the C++ kernel and the reference do.

* :func:`forward_kernel` - one lane per output element: the four samples, their max (first
  maximum wins, NaN propagates, as ``max_pool2d``; the index ``k`` is stored for the
  backward) or their mean.
* :func:`input_grad_kernel` - one lane per *input* element, gathering from the output cells
  whose query points have it as a neighbour (``cell_lo``/``cell_hi`` tables): no atomics,
  each input gradient is written once.
* :func:`position_grad_kernel` - one program per output row ``i`` and tile of
  ``(n, c) x j``: the derivatives of the selected (max) or all four (avg) samples w.r.t.
  their row and column positions, reduced inside the program and written to per-program
  partial sums (summed by the caller): no atomics either.

Loads are converted to the fraction tables' dtype (float32, or float64 for float64 maps),
so float16/bfloat16 inputs accumulate in float32. Layouts: the lanes enumerate the
output (input) in memory order, ``NCHW`` or ``NHWC`` (``CHANNELS_LAST``); every tensor is
addressed through its strides. ``INT64`` switches the flat index arithmetic to 64 bits for
tensors of 2**31 elements or more.

The kernels call no device functions of their own. The one standard-library helper they
use, ``tl.sum``, is itself an ``@triton.jit`` function, which Triton's interpreter can run
only if ``TRITON_INTERPRET=1`` was set when *triton* was imported; the kernels therefore
call it through the module-level alias :data:`_sum`, which the interpreted copy of this
module (``get_kernels(interpret=True)``) rebinds to an interpreter-side equivalent.
"""
import triton
import triton.language as tl

_sum = tl.sum


@triton.jit
def forward_kernel(x_ptr, out_ptr, arg_ptr, r0_ptr, r1_ptr, fr_ptr, c0_ptr, c1_ptr, fc_ptr,
                   total, C, Ho, Wo,
                   sxn, sxc, sxh, sxw,
                   son, soc, soh, sow,
                   IS_MAX: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                   INT64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if INT64:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    if CHANNELS_LAST:
        c = offs % C
        t = offs // C
        j = t % Wo
        t = t // Wo
        i = t % Ho
        n = t // Ho
    else:
        j = offs % Wo
        t = offs // Wo
        i = t % Ho
        t = t // Ho
        c = t % C
        n = t // C
    base = x_ptr + n * sxn + c * sxc
    # Row tables of the two query rows, column tables of the two query columns.
    ra = 2 * i
    rb = ra + 1
    ca = 2 * j
    cb = ca + 1
    ha0 = tl.load(r0_ptr + ra, mask=mask, other=0)
    ha1 = tl.load(r1_ptr + ra, mask=mask, other=0)
    fa = tl.load(fr_ptr + ra, mask=mask, other=0)
    hb0 = tl.load(r0_ptr + rb, mask=mask, other=0)
    hb1 = tl.load(r1_ptr + rb, mask=mask, other=0)
    fb = tl.load(fr_ptr + rb, mask=mask, other=0)
    wa0 = tl.load(c0_ptr + ca, mask=mask, other=0)
    wa1 = tl.load(c1_ptr + ca, mask=mask, other=0)
    ga = tl.load(fc_ptr + ca, mask=mask, other=0)
    wb0 = tl.load(c0_ptr + cb, mask=mask, other=0)
    wb1 = tl.load(c1_ptr + cb, mask=mask, other=0)
    gb = tl.load(fc_ptr + cb, mask=mask, other=0)
    # Row-interpolated values at the three or four distinct columns.
    xa0 = tl.load(base + ha0 * sxh + wa0 * sxw, mask=mask, other=0).to(fa.dtype)
    ya0 = tl.load(base + ha1 * sxh + wa0 * sxw, mask=mask, other=0).to(fa.dtype)
    xa1 = tl.load(base + ha0 * sxh + wa1 * sxw, mask=mask, other=0).to(fa.dtype)
    ya1 = tl.load(base + ha1 * sxh + wa1 * sxw, mask=mask, other=0).to(fa.dtype)
    xb0 = tl.load(base + ha0 * sxh + wb0 * sxw, mask=mask, other=0).to(fa.dtype)
    yb0 = tl.load(base + ha1 * sxh + wb0 * sxw, mask=mask, other=0).to(fa.dtype)
    xb1 = tl.load(base + ha0 * sxh + wb1 * sxw, mask=mask, other=0).to(fa.dtype)
    yb1 = tl.load(base + ha1 * sxh + wb1 * sxw, mask=mask, other=0).to(fa.dtype)
    za0 = xa0 + fa * (ya0 - xa0)
    za1 = xa1 + fa * (ya1 - xa1)
    zb0 = xb0 + fa * (yb0 - xb0)
    zb1 = xb1 + fa * (yb1 - xb1)
    v0 = za0 + ga * (za1 - za0)  # k = 0: row a, column a
    v1 = zb0 + gb * (zb1 - zb0)  # k = 1: row a, column b
    xa0 = tl.load(base + hb0 * sxh + wa0 * sxw, mask=mask, other=0).to(fa.dtype)
    ya0 = tl.load(base + hb1 * sxh + wa0 * sxw, mask=mask, other=0).to(fa.dtype)
    xa1 = tl.load(base + hb0 * sxh + wa1 * sxw, mask=mask, other=0).to(fa.dtype)
    ya1 = tl.load(base + hb1 * sxh + wa1 * sxw, mask=mask, other=0).to(fa.dtype)
    xb0 = tl.load(base + hb0 * sxh + wb0 * sxw, mask=mask, other=0).to(fa.dtype)
    yb0 = tl.load(base + hb1 * sxh + wb0 * sxw, mask=mask, other=0).to(fa.dtype)
    xb1 = tl.load(base + hb0 * sxh + wb1 * sxw, mask=mask, other=0).to(fa.dtype)
    yb1 = tl.load(base + hb1 * sxh + wb1 * sxw, mask=mask, other=0).to(fa.dtype)
    za0 = xa0 + fb * (ya0 - xa0)
    za1 = xa1 + fb * (ya1 - xa1)
    zb0 = xb0 + fb * (yb0 - xb0)
    zb1 = xb1 + fb * (yb1 - xb1)
    v2 = za0 + ga * (za1 - za0)  # k = 2: row b, column a
    v3 = zb0 + gb * (zb1 - zb0)  # k = 3: row b, column b
    o_off = n * son + c * soc + i * soh + j * sow
    if IS_MAX:
        best = v0
        k = tl.full([BLOCK], 0, tl.int8)
        take = ((v1 > best) | (v1 != v1)) & (best == best)
        best = tl.where(take, v1, best)
        k = tl.where(take, 1, k).to(tl.int8)
        take = ((v2 > best) | (v2 != v2)) & (best == best)
        best = tl.where(take, v2, best)
        k = tl.where(take, 2, k).to(tl.int8)
        take = ((v3 > best) | (v3 != v3)) & (best == best)
        best = tl.where(take, v3, best)
        k = tl.where(take, 3, k).to(tl.int8)
        tl.store(out_ptr + o_off, best.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(arg_ptr + o_off, k, mask=mask)
    else:
        mean = (((v0 + v1) + v2) + v3) * 0.25
        tl.store(out_ptr + o_off, mean.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def input_grad_kernel(g_ptr, arg_ptr, gx_ptr, r0_ptr, r1_ptr, fr_ptr, c0_ptr, c1_ptr,
                      fc_ptr, hlo_ptr, hhi_ptr, wlo_ptr, whi_ptr,
                      total, C, H, W, span_h, span_w,
                      sgn, sgc, sgh, sgw,
                      sxn, sxc, sxh, sxw,
                      IS_MAX: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                      INT64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if INT64:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    if CHANNELS_LAST:
        c = offs % C
        t = offs // C
        w = t % W
        t = t // W
        h = t % H
        n = t // H
    else:
        w = offs % W
        t = offs // W
        h = t % H
        t = t // H
        c = t % C
        n = t // C
    i_lo = tl.load(hlo_ptr + h, mask=mask, other=0)
    i_hi = tl.load(hhi_ptr + h, mask=mask, other=0)
    j_lo = tl.load(wlo_ptr + w, mask=mask, other=0)
    j_hi = tl.load(whi_ptr + w, mask=mask, other=0)
    g_base = n * sgn + c * sgc
    acc_ty = fr_ptr.dtype.element_ty
    acc = tl.full([BLOCK], 0, acc_ty)
    for di in range(0, span_h):
        i = i_lo + di
        ok_i = mask & (i < i_hi)
        for dj in range(0, span_w):
            j = j_lo + dj
            ok = ok_i & (j < j_hi)
            g_off = g_base + i * sgh + j * sgw
            go = tl.load(g_ptr + g_off, mask=ok, other=0).to(acc_ty)
            if IS_MAX:
                k = tl.load(arg_ptr + g_off, mask=ok, other=0).to(tl.int32)
                r = 2 * i + k // 2
                q = 2 * j + k % 2
                f = tl.load(fr_ptr + r, mask=ok, other=0)
                wr = tl.where(tl.load(r0_ptr + r, mask=ok, other=-1) == h, 1.0 - f, 0) \
                    + tl.where(tl.load(r1_ptr + r, mask=ok, other=-1) == h, f, 0)
                f = tl.load(fc_ptr + q, mask=ok, other=0)
                wc = tl.where(tl.load(c0_ptr + q, mask=ok, other=-1) == w, 1.0 - f, 0) \
                    + tl.where(tl.load(c1_ptr + q, mask=ok, other=-1) == w, f, 0)
                acc += go * (wr * wc)
            else:
                ra = 2 * i
                f = tl.load(fr_ptr + ra, mask=ok, other=0)
                wr = tl.where(tl.load(r0_ptr + ra, mask=ok, other=-1) == h, 1.0 - f, 0) \
                    + tl.where(tl.load(r1_ptr + ra, mask=ok, other=-1) == h, f, 0)
                f = tl.load(fr_ptr + ra + 1, mask=ok, other=0)
                wr += tl.where(tl.load(r0_ptr + ra + 1, mask=ok, other=-1) == h, 1.0 - f, 0) \
                    + tl.where(tl.load(r1_ptr + ra + 1, mask=ok, other=-1) == h, f, 0)
                ca = 2 * j
                f = tl.load(fc_ptr + ca, mask=ok, other=0)
                wc = tl.where(tl.load(c0_ptr + ca, mask=ok, other=-1) == w, 1.0 - f, 0) \
                    + tl.where(tl.load(c1_ptr + ca, mask=ok, other=-1) == w, f, 0)
                f = tl.load(fc_ptr + ca + 1, mask=ok, other=0)
                wc += tl.where(tl.load(c0_ptr + ca + 1, mask=ok, other=-1) == w, 1.0 - f, 0) \
                    + tl.where(tl.load(c1_ptr + ca + 1, mask=ok, other=-1) == w, f, 0)
                acc += (go * 0.25) * (wr * wc)
    x_off = n * sxn + c * sxc + h * sxh + w * sxw
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def position_grad_kernel(x_ptr, g_ptr, arg_ptr, ph_ptr, pw_ptr,
                         r0_ptr, r1_ptr, fr_ptr, c0_ptr, c1_ptr, fc_ptr,
                         NC, C, Wo, n_j_blocks, sph, spw_p, spw_i,
                         sxn, sxc, sxh, sxw,
                         sgn, sgc, sgh, sgw,
                         IS_MAX: tl.constexpr, INT64: tl.constexpr,
                         BLOCK_NC: tl.constexpr, BLOCK_J: tl.constexpr):
    # Program (i, jb, pb): output row i, columns jb * BLOCK_J + [0, BLOCK_J), planes
    # (n, c) pb * BLOCK_NC + [0, BLOCK_NC). It writes ph[pb * n_j_blocks + jb, 2i + a]
    # (its tile's sum for query row 2i + a) and pw[pb, i, 2j + b] (its sum over planes
    # for query column 2j + b); the caller sums ph over dim 0 and pw over dims 0 and 1.
    i = tl.program_id(0)
    jb = tl.program_id(1)
    pb = tl.program_id(2)
    p = pb * BLOCK_NC + tl.arange(0, BLOCK_NC)
    if INT64:
        p = p.to(tl.int64)
    j = jb * BLOCK_J + tl.arange(0, BLOCK_J)
    n = p // C
    c = p % C
    ok = (p < NC)[:, None] & (j < Wo)[None, :]
    g_off = (n * sgn + c * sgc)[:, None] + i * sgh + (j * sgw)[None, :]
    x_base = x_ptr + (n * sxn + c * sxc)[:, None]
    acc_ty = fr_ptr.dtype.element_ty
    go = tl.load(g_ptr + g_off, mask=ok, other=0).to(acc_ty)
    jj = j[None, :] + tl.full([BLOCK_NC, BLOCK_J], 0, tl.int32)
    if IS_MAX:
        k = tl.load(arg_ptr + g_off, mask=ok, other=0).to(tl.int32)
        a = k // 2
        b = k % 2
        r = 2 * i + a
        q = 2 * jj + b
        h0 = tl.load(r0_ptr + r, mask=ok, other=0)
        h1 = tl.load(r1_ptr + r, mask=ok, other=0)
        f = tl.load(fr_ptr + r, mask=ok, other=0)
        w0 = tl.load(c0_ptr + q, mask=ok, other=0)
        w1 = tl.load(c1_ptr + q, mask=ok, other=0)
        e = tl.load(fc_ptr + q, mask=ok, other=0)
        x00 = tl.load(x_base + h0 * sxh + w0 * sxw, mask=ok, other=0).to(acc_ty)
        x01 = tl.load(x_base + h0 * sxh + w1 * sxw, mask=ok, other=0).to(acc_ty)
        x10 = tl.load(x_base + h1 * sxh + w0 * sxw, mask=ok, other=0).to(acc_ty)
        x11 = tl.load(x_base + h1 * sxh + w1 * sxw, mask=ok, other=0).to(acc_ty)
        d_h = tl.where(ok, go * ((1.0 - e) * (x10 - x00) + e * (x11 - x01)), 0.0)
        d_w = tl.where(ok, go * ((1.0 - f) * (x01 - x00) + f * (x11 - x10)), 0.0)
        h_a0 = _sum(_sum(tl.where(a == 0, d_h, 0.0), axis=1), axis=0)
        h_a1 = _sum(_sum(tl.where(a == 1, d_h, 0.0), axis=1), axis=0)
        w_b0 = _sum(tl.where(b == 0, d_w, 0.0), axis=0)
        w_b1 = _sum(tl.where(b == 1, d_w, 0.0), axis=0)
    else:
        go = go * 0.25
        ra = 2 * i
        w_b0 = tl.full([BLOCK_J], 0, acc_ty)
        w_b1 = tl.full([BLOCK_J], 0, acc_ty)
        h_a0 = _sum(w_b0, axis=0)
        h_a1 = _sum(w_b1, axis=0)
        for kk in tl.static_range(4):
            r = ra + kk // 2
            q = 2 * jj + kk % 2
            h0 = tl.load(r0_ptr + r)
            h1 = tl.load(r1_ptr + r)
            f = tl.load(fr_ptr + r)
            w0 = tl.load(c0_ptr + q, mask=ok, other=0)
            w1 = tl.load(c1_ptr + q, mask=ok, other=0)
            e = tl.load(fc_ptr + q, mask=ok, other=0)
            x00 = tl.load(x_base + h0 * sxh + w0 * sxw, mask=ok, other=0).to(acc_ty)
            x01 = tl.load(x_base + h0 * sxh + w1 * sxw, mask=ok, other=0).to(acc_ty)
            x10 = tl.load(x_base + h1 * sxh + w0 * sxw, mask=ok, other=0).to(acc_ty)
            x11 = tl.load(x_base + h1 * sxh + w1 * sxw, mask=ok, other=0).to(acc_ty)
            d_h = tl.where(ok, go * ((1.0 - e) * (x10 - x00) + e * (x11 - x01)), 0.0)
            d_w = tl.where(ok, go * ((1.0 - f) * (x01 - x00) + f * (x11 - x10)), 0.0)
            if kk // 2 == 0:
                h_a0 += _sum(_sum(d_h, axis=1), axis=0)
            else:
                h_a1 += _sum(_sum(d_h, axis=1), axis=0)
            if kk % 2 == 0:
                w_b0 += _sum(d_w, axis=0)
            else:
                w_b1 += _sum(d_w, axis=0)
    ph = ph_ptr + (pb * n_j_blocks + jb) * sph + 2 * i
    tl.store(ph, h_a0)
    tl.store(ph + 1, h_a1)
    pw = pw_ptr + pb * spw_p + i * spw_i + 2 * j
    tl.store(pw, w_b0, mask=j < Wo)
    tl.store(pw + 1, w_b1, mask=j < Wo)
