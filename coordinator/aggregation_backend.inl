// The per-coordinate server-optimiser update (docs/references.md), shared by the CPU
// backend and the CUDA kernels so both compute the same thing. Plain C++17, no std::span, so
// nvcc can include it; FEDERA_HD marks it host+device under nvcc.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define FEDERA_HD __host__ __device__ __forceinline__
#else
#define FEDERA_HD inline
#endif

namespace federa::step {

enum Kind : int { kReplace = 0, kMomentum = 1, kAdam = 2, kYogi = 3, kAdagrad = 4 };

struct Params {
  int kind = kReplace;
  double lr = 1.0;
  double momentum = 0.0;  // FedAvgM beta
  double beta1 = 0.9, beta2 = 0.99, tau = 1e-9;
};

// New global value of one coordinate from the round's start xt and the round's average avg;
// m and v are that coordinate's optimiser state (v is FedAvgM's momentum buffer).
FEDERA_HD float apply(const Params& p, float xt, float avg, float& m, float& v) {
  if (p.kind == kReplace) return avg;
  if (p.kind == kMomentum) {
    float d = xt - avg;  // pseudo-gradient
    v = static_cast<float>(p.momentum) * v + d;
    return xt - static_cast<float>(p.lr) * v;
  }
  const double d = static_cast<double>(avg) - xt;
  const double mm = p.beta1 * m + (1.0 - p.beta1) * d;
  const double d2 = d * d;
  double vv = v;
  if (p.kind == kAdagrad)
    vv = vv + d2;
  else if (p.kind == kAdam)
    vv = p.beta2 * vv + (1.0 - p.beta2) * d2;
  else  // Yogi
    vv = vv - (1.0 - p.beta2) * d2 * (vv - d2 > 0.0 ? 1.0 : (vv - d2 < 0.0 ? -1.0 : 0.0));
  m = static_cast<float>(mm);
  v = static_cast<float>(vv);
  return static_cast<float>(xt + p.lr * mm / (sqrt(vv) + p.tau));
}

}  // namespace federa::step
