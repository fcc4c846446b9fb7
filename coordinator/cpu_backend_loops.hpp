// The CPU backend's inner loops and internal factories, shared by cpu_backend.cpp (weighted and
// u32 sums) and cpu_backend_update_set.cpp (kept updates). Internal to the CPU backend.
//
//   double norm = cpu::parallel_norm(pool, x, ref);     // fixed order: the same bits every run
//   pool.parallel_for(n, [&](auto b, auto e) { cpu::axpy(acc + b, x + b, w, e - b); });
//
// Plain loops that GCC/Clang vectorise (-fopenmp-simd lets `#pragma omp simd` loops vectorise
// without -ffast-math; no OpenMP runtime is linked). Squares are summed in double so that no
// finite float can overflow them: a non-finite sum therefore means a non-finite input.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "common/update_facts.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cpu_backend.hpp"

namespace federa::cpu {

inline void axpy(float* __restrict acc, const float* __restrict x, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * x[i];
}

// acc = w * x: the first update of a round initialises the accumulator, which saves the pass
// that zeroing it would cost.
inline void scal(float* __restrict acc, const float* __restrict x, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] = w * x[i];
}

inline void scal_delta(float* __restrict acc, const float* __restrict x,
                       const float* __restrict ref, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] = w * (x[i] - ref[i]);
}

inline void axpy_delta(float* __restrict acc, const float* __restrict x,
                       const float* __restrict ref, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * (x[i] - ref[i]);
}

// Squared distance of two short (one block) float vectors: float differences in 16 lanes, which
// is exact to ~1e-6 relative over a block; blocks are summed in double by the caller.
inline double sum_sq_diff(const float* a, const float* b, std::size_t n) {
  constexpr std::size_t kF = 16;
  float lanes[kF] = {};
  std::size_t i = 0;
  for (; i + kF <= n; i += kF)
    for (std::size_t j = 0; j < kF; ++j) {
      float d = a[i + j] - b[i + j];
      lanes[j] += d * d;
    }
  double s = 0.0;
  for (; i < n; ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    s += d * d;
  }
  for (float l : lanes) s += l;
  return s;
}

// The L2 norm of x (or x - ref; ref may be empty), in parallel, in SquareSums' fixed order
// (common/update_facts.hpp): block sums kept per block and added in block order, so the norm is
// the same whatever the thread count, and the same as ChunkAssembler measures on receipt.
inline double parallel_norm(ThreadPool& pool, std::span<const float> x,
                            std::span<const float> ref) {
  constexpr std::size_t kBlock = SquareSums::kBlock;
  const std::size_t n = x.size();
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  const std::size_t chunk = n < ThreadPool::kSerialBelow
                                ? std::max(n, kBlock)
                                : (pool.chunk_for(n) + kBlock - 1) / kBlock * kBlock;
  pool.dynamic_for(n, chunk, [&](unsigned, std::size_t, std::size_t b, std::size_t e) {
    for (std::size_t q = b; q < e; q += kBlock) {
      const std::size_t len = std::min(kBlock, e - q);
      partial[q / kBlock] = ref.empty()
                                ? SquareSums::block(x.data() + q, len)
                                : SquareSums::block_delta(x.data() + q, ref.data() + q, len);
    }
  });
  double s = 0.0;
  for (double p : partial) s += p;
  return std::sqrt(s);
}

std::unique_ptr<UpdateSet> make_update_set(ThreadPool& pool, std::size_t n);

}  // namespace federa::cpu
