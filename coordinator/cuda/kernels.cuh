// Host launchers for the aggregation kernels (kernels.cu, robust.cu), used by the CUDA backend's
// objects (weighted_sum.cpp, update_set.cpp, cuda_backend.cpp):
//
//   cuda::sum_sq_partials(x, ref, n, partials, stream);   // per-block partial sums, no atomics
//   cuda::sum_partials(partials, cuda::norm_partials(n), out, stream);  // fixed order -> *out
//
// Kernels themselves are static to their .cu files. Every launcher is asynchronous on `stream`
// and returns the launch error (cudaGetLastError), never blocking. No kernel uses atomics for a
// floating-point sum: every reduction has a fixed order, so results are the same bits on every
// run on a given GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "coordinator/aggregation_backend.inl"

namespace federa::cuda {

// The launch make_cuda_backend tries before it trusts the device: a grid of `blocks` blocks writes
// kProbeValue to *out. 0 blocks is an invalid launch (a test hook for an unusable device).
constexpr int kProbeValue = 0x5EDE7A;
cudaError_t probe(int* out, unsigned blocks, cudaStream_t stream);

// Elements summed by one partial of sum_sq_partials: partial p covers [p * kNormBlock, ...).
// Chunked callers start every chunk at a multiple of it.
constexpr std::size_t kNormBlock = 2048;
constexpr std::size_t norm_partials(std::size_t n) { return (n + kNormBlock - 1) / kNormBlock; }

// partials[p] = sum over block p of (x - ref)^2 (x^2 when ref is null), in double.
cudaError_t sum_sq_partials(const float* x, const float* ref, std::size_t n, double* partials,
                            cudaStream_t stream);
// *out = sum of partials[0, count), in a fixed order (one block).
cudaError_t sum_partials(const double* partials, std::size_t count, double* out,
                         cudaStream_t stream);

// acc += w * (x - ref); ref may be null (then x itself).
cudaError_t axpy(float* acc, const float* x, const float* ref, float w, std::size_t n,
                 cudaStream_t stream);

// row = s * (row - ref), in place; ref may be null.
cudaError_t scale_delta(float* row, const float* ref, float s, std::size_t n, cudaStream_t stream);

// out = scale * in.
cudaError_t scale_copy(float* out, const float* in, float scale, std::size_t n,
                       cudaStream_t stream);

// out[i] = step(xt[i], scale * acc[i] + (changes ? xt[i] : 0)), updating m[i], v[i] (the server
// optimiser state; unused, may be null, for kReplace). xt may be null when !changes and kReplace.
cudaError_t finalize_step(float* out, const float* acc, const float* xt, bool changes, float scale,
                          const step::Params& p, float* m, float* v, std::size_t n,
                          cudaStream_t stream);

// acc += x mod 2^32.
cudaError_t add_u32(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, cudaStream_t stream);

// out[i] = inv_total * sum_j weights[j] * rows[j][i], j < m; rows (m device pointers, each
// 16-byte aligned) and weights on the device. One pass: every row read once, out written once.
cudaError_t weighted_rows(float* out, const float* const* rows, std::size_t n, const float* weights,
                          std::size_t m, float inv_total, cudaStream_t stream);

// Per coordinate over k rows (device pointers): median (trim ignored) or the mean of the values
// left after dropping `trim` from each end. The k values of a coordinate are sorted in a shared-
// memory column of their own (no per-thread local array). k <= kMaxRobustRows.
constexpr std::size_t kMaxRobustRows = 256;
cudaError_t robust_reduce(float* out, const float* const* rows, std::size_t k, std::size_t n,
                          std::size_t trim, bool median, cudaStream_t stream);

// Squared L2 distances for a list of row pairs (pair_i[p], pair_j[p]) over k rows of n:
// differences taken directly (no Gram-matrix cancellation when updates are close, the normal
// case), a float sum per tile and double across tiles. Each block writes its own partial per pair
// to partials[block * pairs + p]; pair_sq_distances_reduce adds them in block order into out[p].
// At most kMaxPairsPerLaunch pairs per call and k <= kMaxDistanceRows.
constexpr std::size_t kMaxPairsPerLaunch = 2048;
constexpr std::size_t kMaxDistanceRows = 4096;
constexpr std::size_t kMaxDistanceBlocks = 1024;  // partials hold kMaxDistanceBlocks x pairs
cudaError_t pair_sq_distances(double* partials, unsigned* blocks_used, const float* const* rows,
                              std::size_t k, std::size_t n, const std::uint32_t* pair_i,
                              const std::uint32_t* pair_j, std::size_t pairs, cudaStream_t stream);
cudaError_t pair_sq_distances_reduce(double* out, const double* partials, unsigned blocks,
                                     std::size_t pairs, cudaStream_t stream);

}  // namespace federa::cuda
