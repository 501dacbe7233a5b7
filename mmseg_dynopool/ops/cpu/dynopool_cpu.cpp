// Fused CPU kernels of DynOPool (thesis Eq. 4.2): bilinear samples at the 2x2 query points
// of every output cell, aggregated by max or mean, and the backward pass (input gradient
// + gradient w.r.t. every query row/column position) in one sweep per (n, c) plane.
//
// The tables (lower/upper neighbour and fraction of every query row and column) come from
// mmseg_dynopool/ops/geometry.py; the operators wrapping it are in ops/library.py.
// ops/reference.py is the specification these kernels are tested against.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace {

struct Tables {
  const int64_t* r0;
  const int64_t* r1;
  const int64_t* c0;
  const int64_t* c1;
};

// Interpolates query row r along H into z (W values). Always the full lerp, even for a
// zero fraction, so that infinities give what the reference gives (0 * inf = NaN).
template <typename scalar_t>
inline const scalar_t* query_row(const scalar_t* x, int64_t W, int64_t r0, int64_t r1,
                                 scalar_t f, scalar_t* z) {
  const scalar_t* x0 = x + r0 * W;
  const scalar_t* x1 = x + r1 * W;
  for (int64_t w = 0; w < W; ++w) z[w] = x0[w] + f * (x1[w] - x0[w]);
  return z;
}

// Samples of one interpolated query row z at the 2 Wo query columns, deinterleaved: the
// even columns (first column of each cell) to s[0, Wo), the odd ones to s[Wo, 2 Wo).
template <typename scalar_t>
inline void query_columns(const scalar_t* z, const Tables& t, const scalar_t* fc,
                          int64_t Wo, scalar_t* s) {
  for (int64_t c = 0; c < 2 * Wo; ++c) {
    const scalar_t z0 = z[t.c0[c]];
    s[(c & 1) * Wo + (c >> 1)] = z0 + fc[c] * (z[t.c1[c]] - z0);
  }
}

// Max over the four samples v0..v3 of each cell and the index of the first maximum; a NaN
// propagates, as in max_pool2d. Branch-free: on random data a branchy arg-max
// mispredicts about every other comparison (it cost 3/4 of the forward).
template <typename scalar_t>
inline void max4_scalar(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2,
                        const scalar_t* v3, int64_t j, int64_t n, scalar_t* out,
                        uint8_t* arg) {
  for (; j < n; ++j) {
    const scalar_t* v[4] = {v0, v1, v2, v3};
    scalar_t best = v0[j];
    uint8_t k = 0;
    for (uint8_t q = 1; q < 4; ++q) {
      const scalar_t u = v[q][j];
      const bool take = ((u > best) | (u != u)) & (best == best);
      best = take ? u : best;
      k = take ? q : k;
    }
    out[j] = best;
    arg[j] = k;
  }
}

template <typename scalar_t>
inline void max4(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2,
                 const scalar_t* v3, int64_t n, scalar_t* out, uint8_t* arg) {
  max4_scalar(v0, v1, v2, v3, 0, n, out, arg);
}

#if defined(__SSE2__)
template <>
inline void max4<float>(const float* v0, const float* v1, const float* v2, const float* v3,
                        int64_t n, float* out, uint8_t* arg) {
  int64_t j = 0;
  const __m128i idx[4] = {_mm_setzero_si128(), _mm_set1_epi32(1), _mm_set1_epi32(2),
                          _mm_set1_epi32(3)};
  const float* v[4] = {v0, v1, v2, v3};
  for (; j + 4 <= n; j += 4) {
    __m128 best = _mm_loadu_ps(v0 + j);
    __m128i k = _mm_setzero_si128();
    for (int q = 1; q < 4; ++q) {
      const __m128 u = _mm_loadu_ps(v[q] + j);
      // take = (u > best || isnan(u)) && !isnan(best)
      const __m128 take = _mm_and_ps(_mm_or_ps(_mm_cmpgt_ps(u, best), _mm_cmpunord_ps(u, u)),
                                     _mm_cmpord_ps(best, best));
      best = _mm_or_ps(_mm_and_ps(take, u), _mm_andnot_ps(take, best));
      const __m128i t = _mm_castps_si128(take);
      k = _mm_or_si128(_mm_and_si128(t, idx[q]), _mm_andnot_si128(t, k));
    }
    _mm_storeu_ps(out + j, best);
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(k, k), _mm_setzero_si128());
    const int32_t packed = _mm_cvtsi128_si32(bytes);
    std::memcpy(arg + j, &packed, 4);
  }
  max4_scalar(v0, v1, v2, v3, j, n, out, arg);  // the tail
}
#endif

// Forward of one plane. scratch: 2 W + 4 Wo values.
//
// Per output row: interpolate its two query rows along H (contiguous, vectorised), sample
// them at the 2 Wo query columns, then reduce each 2x2 group over contiguous arrays.
template <typename scalar_t, bool kMax>
void forward_plane(const scalar_t* x, int64_t W, const Tables& t, const scalar_t* fr,
                   const scalar_t* fc, int64_t Ho, int64_t Wo, scalar_t* out,
                   uint8_t* arg, scalar_t* scratch) {
  scalar_t* za = scratch;
  scalar_t* zb = scratch + W;
  scalar_t* sa = scratch + 2 * W;  // row 2i: even columns, then odd columns
  scalar_t* sb = sa + 2 * Wo;      // row 2i + 1
  for (int64_t i = 0; i < Ho; ++i) {
    const int64_t ra = 2 * i, rb = 2 * i + 1;
    query_columns(query_row(x, W, t.r0[ra], t.r1[ra], fr[ra], za), t, fc, Wo, sa);
    query_columns(query_row(x, W, t.r0[rb], t.r1[rb], fr[rb], zb), t, fc, Wo, sb);
    scalar_t* o = out + i * Wo;
    if (kMax) {
      max4<scalar_t>(sa, sa + Wo, sb, sb + Wo, Wo, o, arg + i * Wo);
    } else {
      const scalar_t* v1 = sa + Wo;
      const scalar_t* v3 = sb + Wo;
      // Summed in avg_pool2d's order (row-major over the 2x2 window).
      for (int64_t j = 0; j < Wo; ++j) o[j] = (sa[j] + v1[j] + sb[j] + v3[j]) / scalar_t(4);
    }
  }
}

// Gradient of one query point (row r, column c) with weight go: input gradient scattered
// to its four neighbours, derivatives of the bilinear value w.r.t. its row and column
// position accumulated in gh[r], gw[c]:
//   d/dpos_h = (1 - fc)(x10 - x00) + fc (x11 - x01),
//   d/dpos_w = (1 - fr)(x01 - x00) + fr (x11 - x10).
template <typename scalar_t>
inline void backward_point(const scalar_t* x, int64_t W, const Tables& t,
                           const scalar_t* fr, const scalar_t* fc, int64_t r, int64_t c,
                           scalar_t go, scalar_t* gx, double* gh, double* gw) {
  const scalar_t f = fr[r], h = fc[c];
  const int64_t i00 = t.r0[r] * W + t.c0[c], i01 = t.r0[r] * W + t.c1[c];
  const int64_t i10 = t.r1[r] * W + t.c0[c], i11 = t.r1[r] * W + t.c1[c];
  if (gx) {
    gx[i00] += go * (1 - f) * (1 - h);
    gx[i01] += go * (1 - f) * h;
    gx[i10] += go * f * (1 - h);
    gx[i11] += go * f * h;
  }
  if (gh) {
    const scalar_t x00 = x[i00], x01 = x[i01], x10 = x[i10], x11 = x[i11];
    gh[r] += static_cast<double>(go * ((1 - h) * (x10 - x00) + h * (x11 - x01)));
    gw[c] += static_cast<double>(go * ((1 - f) * (x01 - x00) + f * (x11 - x10)));
  }
}

template <typename scalar_t, bool kMax>
void backward_plane(const scalar_t* x, const scalar_t* g, const uint8_t* arg, int64_t H,
                    int64_t W, const Tables& t, const scalar_t* fr, const scalar_t* fc,
                    int64_t Ho, int64_t Wo, scalar_t* gx, double* gh, double* gw) {
  // Zero this plane's input gradient here, while it is about to be written anyway
  // (one pass over memory instead of a separate zeros_like).
  if (gx) std::memset(gx, 0, sizeof(scalar_t) * H * W);
  for (int64_t i = 0; i < Ho; ++i) {
    for (int64_t j = 0; j < Wo; ++j) {
      const scalar_t go = g[i * Wo + j];
      if (go == scalar_t(0)) continue;
      if (kMax) {
        const int k = arg[i * Wo + j];
        backward_point(x, W, t, fr, fc, 2 * i + (k >> 1), 2 * j + (k & 1), go, gx, gh, gw);
      } else {
        const scalar_t q = go / scalar_t(4);
        for (int k = 0; k < 4; ++k)
          backward_point(x, W, t, fr, fc, 2 * i + (k >> 1), 2 * j + (k & 1), q, gx, gh, gw);
      }
    }
  }
}

// Planes per parallel chunk: about at::internal::GRAIN_SIZE (32768) elements of work, so
// that small maps run on one thread instead of paying for a parallel region (costly when
// the machine is oversubscribed and a worker thread is descheduled).
inline int64_t plane_grain(int64_t plane_work) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(plane_work, 1));
}

void check_inputs(const at::Tensor& x, const at::Tensor& r0, const at::Tensor& r1,
                  const at::Tensor& fr, const at::Tensor& c0, const at::Tensor& c1,
                  const at::Tensor& fc) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.device().is_cpu(),
              "dynopool: x must be a contiguous 4-D CPU tensor");
  for (const auto* t : {&r0, &r1, &c0, &c1})
    TORCH_CHECK(t->scalar_type() == at::kLong && t->is_contiguous() && t->dim() == 1,
                "dynopool: index tables must be contiguous int64 vectors");
  TORCH_CHECK(fr.scalar_type() == x.scalar_type() && fc.scalar_type() == x.scalar_type() &&
                  fr.is_contiguous() && fc.is_contiguous(),
              "dynopool: fraction tables must be contiguous with x's dtype");
  TORCH_CHECK(r0.numel() % 2 == 0 && c0.numel() % 2 == 0 && r1.numel() == r0.numel() &&
                  c1.numel() == c0.numel() && fr.numel() == r0.numel() &&
                  fc.numel() == c0.numel(),
              "dynopool: inconsistent table sizes");
}

}  // namespace

// Returns {out, arg}; arg (uint8, index 2a + b of the selected query point) is empty for
// 'avg'.
std::vector<at::Tensor> query_forward(const at::Tensor& x, const at::Tensor& r0,
                                      const at::Tensor& r1, const at::Tensor& fr,
                                      const at::Tensor& c0, const at::Tensor& c1,
                                      const at::Tensor& fc, bool is_max) {
  check_inputs(x, r0, r1, fr, c0, c1, fc);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = r0.numel() / 2, Wo = c0.numel() / 2;
  auto out = at::empty({N, C, Ho, Wo}, x.options());
  auto arg = at::empty({is_max ? N : 0, C, Ho, Wo}, x.options().dtype(at::kByte));
  const Tables t{r0.data_ptr<int64_t>(), r1.data_ptr<int64_t>(), c0.data_ptr<int64_t>(),
                 c1.data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynopool_query_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* frp = fr.data_ptr<scalar_t>();
    const scalar_t* fcp = fc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    uint8_t* ap = is_max ? arg.data_ptr<uint8_t>() : nullptr;
    at::parallel_for(0, N * C, plane_grain(H * W + 4 * Ho * Wo), [&](int64_t begin,
                                                                       int64_t end) {
      std::vector<scalar_t> scratch(2 * W + 4 * Wo);
      for (int64_t p = begin; p < end; ++p) {
        if (is_max)
          forward_plane<scalar_t, true>(xp + p * H * W, W, t, frp, fcp, Ho, Wo,
                                        op + p * Ho * Wo, ap + p * Ho * Wo, scratch.data());
        else
          forward_plane<scalar_t, false>(xp + p * H * W, W, t, frp, fcp, Ho, Wo,
                                         op + p * Ho * Wo, nullptr, scratch.data());
      }
    });
  });
  return {out, arg};
}

// Returns {grad_x (undefined unless need_x), grad_pos_h, grad_pos_w (float64, empty
// unless need_pos)}.
std::vector<at::Tensor> query_backward(const at::Tensor& grad, const at::Tensor& x,
                                       const at::Tensor& arg, const at::Tensor& r0,
                                       const at::Tensor& r1, const at::Tensor& fr,
                                       const at::Tensor& c0, const at::Tensor& c1,
                                       const at::Tensor& fc, bool is_max, bool need_x,
                                       bool need_pos) {
  check_inputs(x, r0, r1, fr, c0, c1, fc);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = r0.numel() / 2, Wo = c0.numel() / 2;
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({N, C, Ho, Wo}), "dynopool: bad grad shape");
  TORCH_CHECK(!is_max || (arg.scalar_type() == at::kByte && arg.is_contiguous() &&
                          arg.numel() == N * C * Ho * Wo),
              "dynopool: bad arg tensor");
  auto g = grad.contiguous();
  auto gx = need_x ? at::empty_like(x) : at::Tensor();
  // Per-plane partial sums of the positional gradient (no locks), reduced below in plane
  // order: the result does not depend on the number of threads.
  const int64_t P = N * C;
  auto gh = at::zeros({need_pos ? P : 0, 2 * Ho}, x.options().dtype(at::kDouble));
  auto gw = at::zeros({need_pos ? P : 0, 2 * Wo}, x.options().dtype(at::kDouble));
  const Tables t{r0.data_ptr<int64_t>(), r1.data_ptr<int64_t>(), c0.data_ptr<int64_t>(),
                 c1.data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynopool_query_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* frp = fr.data_ptr<scalar_t>();
    const scalar_t* fcp = fc.data_ptr<scalar_t>();
    const uint8_t* ap = is_max ? arg.data_ptr<uint8_t>() : nullptr;
    scalar_t* gxp = need_x ? gx.data_ptr<scalar_t>() : nullptr;
    double* ghp = need_pos ? gh.data_ptr<double>() : nullptr;
    double* gwp = need_pos ? gw.data_ptr<double>() : nullptr;
    at::parallel_for(0, P, plane_grain(H * W + 4 * Ho * Wo), [&](int64_t begin,
                                                                   int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        scalar_t* gxs = need_x ? gxp + p * H * W : nullptr;
        double* ghs = need_pos ? ghp + p * 2 * Ho : nullptr;
        double* gws = need_pos ? gwp + p * 2 * Wo : nullptr;
        if (is_max)
          backward_plane<scalar_t, true>(xp + p * H * W, gp + p * Ho * Wo,
                                         ap + p * Ho * Wo, H, W, t, frp, fcp, Ho, Wo,
                                         gxs, ghs, gws);
        else
          backward_plane<scalar_t, false>(xp + p * H * W, gp + p * Ho * Wo, nullptr, H,
                                          W, t, frp, fcp, Ho, Wo, gxs, ghs, gws);
      }
    });
  });
  if (!need_pos) return {gx, at::Tensor(), at::Tensor()};
  auto sum_h = at::zeros({2 * Ho}, gh.options());
  auto sum_w = at::zeros({2 * Wo}, gw.options());
  double* sh = sum_h.data_ptr<double>();
  double* sw = sum_w.data_ptr<double>();
  const double* ph = gh.data_ptr<double>();
  const double* pw = gw.data_ptr<double>();
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t r = 0; r < 2 * Ho; ++r) sh[r] += ph[p * 2 * Ho + r];
    for (int64_t c = 0; c < 2 * Wo; ++c) sw[c] += pw[p * 2 * Wo + c];
  }
  return {gx, sum_h, sum_w};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("query_forward", &query_forward,
        "DynOPool forward (CPU): samples at the query grid, 2x2 max or mean");
  m.def("query_backward", &query_backward,
        "DynOPool backward (CPU): input gradient and query-position gradients");
}
