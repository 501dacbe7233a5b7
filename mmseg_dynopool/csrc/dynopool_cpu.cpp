// Fused CPU kernels for DynOPool's max aggregation (thesis Eq. 4.2): bilinear samples at
// the 2x2 query points of every output cell, max over the four, and the backward pass
// (input gradient + gradient w.r.t. every query row/column position) in one sweep.
// The Python fallback in ops/functional.py computes the same thing with native ops.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <vector>

namespace {

template <typename scalar_t>
void forward_plane(const scalar_t* x, int64_t H, int64_t W, const int64_t* r0,
                   const int64_t* r1, const scalar_t* fr, const int64_t* c0,
                   const int64_t* c1, const scalar_t* fc, int64_t Ho, int64_t Wo,
                   scalar_t* out, uint8_t* arg, scalar_t* rows) {
  // rows: scratch of 2 * W, the two query rows of one output row, interpolated along H.
  for (int64_t i = 0; i < Ho; ++i) {
    for (int64_t a = 0; a < 2; ++a) {
      const int64_t r = 2 * i + a;
      const scalar_t f = fr[r];
      const scalar_t* x0 = x + r0[r] * W;
      const scalar_t* x1 = x + r1[r] * W;
      scalar_t* z = rows + a * W;
      for (int64_t w = 0; w < W; ++w) z[w] = x0[w] + f * (x1[w] - x0[w]);
    }
    for (int64_t j = 0; j < Wo; ++j) {
      scalar_t v[4];
      for (int64_t a = 0; a < 2; ++a) {
        const scalar_t* z = rows + a * W;
        for (int64_t b = 0; b < 2; ++b) {
          const int64_t c = 2 * j + b;
          v[2 * a + b] = z[c0[c]] + fc[c] * (z[c1[c]] - z[c0[c]]);
        }
      }
      // First maximum wins; a NaN propagates like in max_pool2d.
      scalar_t best = v[0];
      uint8_t best_k = 0;
      for (uint8_t k = 1; k < 4; ++k) {
        if (!std::isnan(best) && (v[k] > best || std::isnan(v[k]))) {
          best = v[k];
          best_k = k;
        }
      }
      out[i * Wo + j] = best;
      arg[i * Wo + j] = best_k;
    }
  }
}

template <typename scalar_t>
void backward_plane(const scalar_t* x, const scalar_t* g, const uint8_t* arg, int64_t H,
                    int64_t W, const int64_t* r0, const int64_t* r1, const scalar_t* fr,
                    const int64_t* c0, const int64_t* c1, const scalar_t* fc,
                    int64_t Ho, int64_t Wo, scalar_t* gx, double* gpos_h,
                    double* gpos_w, bool need_x, bool need_pos) {
  for (int64_t i = 0; i < Ho; ++i) {
    for (int64_t j = 0; j < Wo; ++j) {
      const scalar_t go = g[i * Wo + j];
      if (go == scalar_t(0)) continue;
      const int k = arg[i * Wo + j];
      const int64_t r = 2 * i + (k >> 1);
      const int64_t c = 2 * j + (k & 1);
      const scalar_t f = fr[r], h = fc[c];
      const int64_t i00 = r0[r] * W + c0[c], i01 = r0[r] * W + c1[c];
      const int64_t i10 = r1[r] * W + c0[c], i11 = r1[r] * W + c1[c];
      if (need_x) {
        gx[i00] += go * (1 - f) * (1 - h);
        gx[i01] += go * (1 - f) * h;
        gx[i10] += go * f * (1 - h);
        gx[i11] += go * f * h;
      }
      if (need_pos) {
        const scalar_t x00 = x[i00], x01 = x[i01], x10 = x[i10], x11 = x[i11];
        gpos_h[r] += static_cast<double>(go * ((1 - h) * (x10 - x00) + h * (x11 - x01)));
        gpos_w[c] += static_cast<double>(go * ((1 - f) * (x01 - x00) + f * (x11 - x10)));
      }
    }
  }
}

void check_tables(const at::Tensor& r0, const at::Tensor& r1, const at::Tensor& fr,
                  const at::Tensor& c0, const at::Tensor& c1, const at::Tensor& fc,
                  const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.device().is_cpu(),
              "dynopool: x must be a contiguous 4-D CPU tensor");
  for (const auto* t : {&r0, &r1, &c0, &c1})
    TORCH_CHECK(t->scalar_type() == at::kLong && t->is_contiguous(), "dynopool: bad index table");
  TORCH_CHECK(fr.scalar_type() == x.scalar_type() && fc.scalar_type() == x.scalar_type(),
              "dynopool: fraction tables must have x's dtype");
  TORCH_CHECK(r0.numel() % 2 == 0 && c0.numel() % 2 == 0, "dynopool: odd query count");
}

}  // namespace

std::vector<at::Tensor> max_query_forward(const at::Tensor& x, const at::Tensor& r0,
                                          const at::Tensor& r1, const at::Tensor& fr,
                                          const at::Tensor& c0, const at::Tensor& c1,
                                          const at::Tensor& fc) {
  check_tables(r0, r1, fr, c0, c1, fc, x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = r0.numel() / 2, Wo = c0.numel() / 2;
  auto out = at::empty({N, C, Ho, Wo}, x.options());
  auto arg = at::empty({N, C, Ho, Wo}, x.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynopool_max_query_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    uint8_t* ap = arg.data_ptr<uint8_t>();
    at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> rows(2 * W);
      for (int64_t p = begin; p < end; ++p)
        forward_plane<scalar_t>(xp + p * H * W, H, W, r0.data_ptr<int64_t>(),
                                r1.data_ptr<int64_t>(), fr.data_ptr<scalar_t>(),
                                c0.data_ptr<int64_t>(), c1.data_ptr<int64_t>(),
                                fc.data_ptr<scalar_t>(), Ho, Wo, op + p * Ho * Wo,
                                ap + p * Ho * Wo, rows.data());
    });
  });
  return {out, arg};
}

std::vector<at::Tensor> max_query_backward(const at::Tensor& grad, const at::Tensor& x,
                                           const at::Tensor& arg, const at::Tensor& r0,
                                           const at::Tensor& r1, const at::Tensor& fr,
                                           const at::Tensor& c0, const at::Tensor& c1,
                                           const at::Tensor& fc, bool need_x,
                                           bool need_pos) {
  check_tables(r0, r1, fr, c0, c1, fc, x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = r0.numel() / 2, Wo = c0.numel() / 2;
  auto g = grad.contiguous();
  auto gx = need_x ? at::zeros_like(x) : at::Tensor();
  // Per-plane partial sums of the positional gradient, reduced afterwards (no locks).
  auto gh = at::zeros({need_pos ? N * C : 0, 2 * Ho}, x.options().dtype(at::kDouble));
  auto gw = at::zeros({need_pos ? N * C : 0, 2 * Wo}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynopool_max_query_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const uint8_t* ap = arg.data_ptr<uint8_t>();
    scalar_t* gxp = need_x ? gx.data_ptr<scalar_t>() : nullptr;
    double* ghp = need_pos ? gh.data_ptr<double>() : nullptr;
    double* gwp = need_pos ? gw.data_ptr<double>() : nullptr;
    at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p)
        backward_plane<scalar_t>(
            xp + p * H * W, gp + p * Ho * Wo, ap + p * Ho * Wo, H, W,
            r0.data_ptr<int64_t>(), r1.data_ptr<int64_t>(), fr.data_ptr<scalar_t>(),
            c0.data_ptr<int64_t>(), c1.data_ptr<int64_t>(), fc.data_ptr<scalar_t>(), Ho,
            Wo, need_x ? gxp + p * H * W : nullptr,
            need_pos ? ghp + p * 2 * Ho : nullptr, need_pos ? gwp + p * 2 * Wo : nullptr,
            need_x, need_pos);
    });
  });
  return {gx, gh.sum(0), gw.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("max_query_forward", &max_query_forward, "DynOPool max aggregation forward (CPU)");
  m.def("max_query_backward", &max_query_backward, "DynOPool max aggregation backward (CPU)");
}
