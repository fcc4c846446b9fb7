// Host launchers for the aggregation kernels (kernels.cu, robust.cu). Kernels themselves are
// static to their .cu files; only these launchers are visible. Every launcher is asynchronous on
// `stream` and returns the launch error (cudaGetLastError), never blocking.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "coordinator/aggregation_backend.inl"

namespace federa::cuda {

// One fused pass over x (device): with acc, acc += w * (x - ref); with norm_sq,
// *norm_sq += sum (x - ref)^2 (double, atomically). ref may be null (then x itself).
cudaError_t axpy_norm(float* acc, const float* x, const float* ref, float w, std::size_t n,
                      double* norm_sq, cudaStream_t stream);

// row = s * (row - ref), in place; ref may be null.
cudaError_t scale_delta(float* row, const float* ref, float s, std::size_t n, cudaStream_t stream);

// out = scale * in.
cudaError_t scale_copy(float* out, const float* in, float scale, std::size_t n, cudaStream_t stream);

// out[i] = step(xt[i], scale * acc[i] + (changes ? xt[i] : 0)), updating m[i], v[i] (the server
// optimiser state; unused, may be null, for kReplace). xt may be null when !changes and kReplace.
cudaError_t finalize_step(float* out, const float* acc, const float* xt, bool changes, float scale,
                          const step::Params& p, float* m, float* v, std::size_t n,
                          cudaStream_t stream);

// acc += x mod 2^32.
cudaError_t add_u32(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, cudaStream_t stream);

// out[i] = inv_total * sum_j weights[j] * rows[index[j] * n + i]; index/weights on the device.
cudaError_t weighted_rows(float* out, const float* rows, std::size_t n, const std::uint32_t* index,
                          const float* weights, std::size_t m, float inv_total, cudaStream_t stream);

// Per coordinate over k rows of n (row-major, contiguous): median (trim ignored) or the mean of
// the values left after dropping `trim` from each end. k <= kMaxRobustRows.
constexpr std::size_t kMaxRobustRows = 256;
cudaError_t robust_reduce(float* out, const float* rows, std::size_t k, std::size_t n,
                          std::size_t trim, bool median, cudaStream_t stream);

}  // namespace federa::cuda

namespace federa::cuda {

// Squared L2 distances for a list of row pairs (pair_i[p], pair_j[p]) over k rows of n:
// out[p] += sum_c (rows[i][c] - rows[j][c])^2, differences taken directly (no Gram-matrix
// cancellation when updates are close to each other, which is the normal case), summed in double.
// At most kMaxPairsPerLaunch pairs per call and k <= 8192.
constexpr std::size_t kMaxPairsPerLaunch = 2048;
cudaError_t pair_sq_distances(double* out, const float* rows, std::size_t k, std::size_t n,
                              const std::uint32_t* pair_i, const std::uint32_t* pair_j,
                              std::size_t pairs, cudaStream_t stream);

}  // namespace federa::cuda
