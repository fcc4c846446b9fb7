// Kernels for strategies that keep every update: per-coordinate median / trimmed mean, and the
// pairwise distances of (multi-)Krum (launchers declared in kernels.cuh).
#include "coordinator/cuda/kernels.cuh"

namespace federa::cuda {

namespace {

// Shared memory a block may use without opting in to more (every GPU since sm_35).
constexpr std::size_t kSharedBytes = 48 * 1024;

// One thread per coordinate: gather its k values (coalesced across the warp: neighbouring
// threads read neighbouring addresses of the same row) and insertion-sort them in a column of
// shared memory of its own, column t at col[j * blockDim.x + t]: a warp's 32 threads always hit
// 32 different banks, whatever positions their sorts are at. Then take the middle or the trimmed
// mean in ascending order, as the CPU backend does (same values, same bits). Insertion sort is
// O(k^2) but branch-light and k is the cohort size (tens).
__global__ void robust_kernel(float* __restrict__ out, const float* const* __restrict__ rows,
                              unsigned k, std::size_t n, unsigned trim, bool median) {
  extern __shared__ float col[];
  const unsigned t = threadIdx.x, nt = blockDim.x;
  float* v = col + t;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * nt;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(nt) + t; i < n; i += stride) {
    for (unsigned j = 0; j < k; ++j) {
      const float x = rows[j][i];
      unsigned p = j;
      while (p > 0 && v[(p - 1) * nt] > x) {
        v[p * nt] = v[(p - 1) * nt];
        --p;
      }
      v[p * nt] = x;
    }
    if (median) {
      out[i] = k % 2 ? v[(k / 2) * nt]
                     : static_cast<float>(
                           (static_cast<double>(v[(k / 2 - 1) * nt]) + v[(k / 2) * nt]) * 0.5);
    } else {
      double s = 0.0;
      for (unsigned j = trim; j < k - trim; ++j) s += v[j * nt];
      out[i] = static_cast<float>(s / static_cast<double>(k - 2 * trim));
    }
  }
}

}  // namespace

cudaError_t robust_reduce(float* out, const float* const* rows, std::size_t k, std::size_t n,
                          std::size_t trim, bool median, cudaStream_t stream) {
  if (n == 0 || k == 0) return cudaSuccess;
  if (k > kMaxRobustRows || (!median && 2 * trim >= k)) return cudaErrorInvalidValue;
  // As many threads as the shared memory holds columns for, a whole number of warps (>= 1 warp
  // since k <= kMaxRobustRows), at most 256.
  std::size_t threads = kSharedBytes / (k * sizeof(float)) / 32 * 32;
  if (threads > 256) threads = 256;
  std::size_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 4) blocks = 65535 * 4;
  robust_kernel<<<static_cast<unsigned>(blocks), static_cast<unsigned>(threads),
                  k * threads * sizeof(float), stream>>>(out, rows, static_cast<unsigned>(k), n,
                                                         static_cast<unsigned>(trim), median);
  return cudaGetLastError();
}

static_assert(kSharedBytes / (kMaxRobustRows * sizeof(float)) >= 32, "one warp of columns fits");

namespace {

constexpr int kPairThreads = 256;
constexpr int kPairsPerThread = 8;
constexpr std::size_t kSharedFloats = kSharedBytes / sizeof(float);
constexpr std::size_t kMaxTile = 256;

// Each block walks tiles of `tile` coordinates (block b takes tiles b, b + gridDim.x, ...): the k
// rows of a tile are loaded into shared memory, row r at sh[r * stride], and each thread adds the
// squared distances of its (up to 8) pairs over the tile. The row stride is odd, so rows r and
// r' (r != r' mod 32) sit in different banks at the same column: a warp reading 32 pairs' rows at
// one column has no bank conflicts (pairs sharing a row read one address, a broadcast). The
// block's per-pair totals go to its own slots of `partials`: no atomics.
__global__ void pair_kernel(double* __restrict__ partials, const float* const* __restrict__ rows,
                            std::size_t k, std::size_t n, std::size_t tile, std::size_t stride,
                            const std::uint32_t* __restrict__ pi,
                            const std::uint32_t* __restrict__ pj, std::size_t pairs) {
  extern __shared__ float sh[];  // k x stride
  double part[kPairsPerThread] = {};
  for (std::size_t base = blockIdx.x * tile; base < n; base += gridDim.x * tile) {
    const std::size_t len = n - base < tile ? n - base : tile;
    for (std::size_t q = threadIdx.x; q < k * tile; q += blockDim.x) {
      const std::size_t r = q / tile, c = q % tile;
      sh[r * stride + c] = c < len ? rows[r][base + c] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < kPairsPerThread; ++t) {
      const std::size_t p = threadIdx.x + static_cast<std::size_t>(t) * blockDim.x;
      if (p < pairs) {
        const float* a = sh + pi[p] * stride;
        const float* b = sh + pj[p] * stride;
        float s = 0.0f;  // a tile is short: float partial, double across tiles
        for (std::size_t c = 0; c < len; ++c) {
          const float d = a[c] - b[c];
          s += d * d;
        }
        part[t] += s;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int t = 0; t < kPairsPerThread; ++t) {
    const std::size_t p = threadIdx.x + static_cast<std::size_t>(t) * blockDim.x;
    if (p < pairs) partials[blockIdx.x * pairs + p] = part[t];
  }
}

__global__ void pair_reduce_kernel(double* __restrict__ out, const double* __restrict__ partials,
                                   unsigned blocks, std::size_t pairs) {
  const std::size_t p = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (p >= pairs) return;
  double s = 0.0;
  for (unsigned b = 0; b < blocks; ++b) s += partials[b * pairs + p];
  out[p] = s;
}

}  // namespace

cudaError_t pair_sq_distances(double* partials, unsigned* blocks_used, const float* const* rows,
                              std::size_t k, std::size_t n, const std::uint32_t* pair_i,
                              const std::uint32_t* pair_j, std::size_t pairs, cudaStream_t stream) {
  *blocks_used = 0;
  if (pairs == 0 || n == 0) return cudaSuccess;
  if (pairs > static_cast<std::size_t>(kPairThreads) * kPairsPerThread || k > kMaxDistanceRows)
    return cudaErrorInvalidValue;  // the caller splits larger pair lists
  std::size_t tile = kSharedFloats / k - 1;
  if (tile > kMaxTile) tile = kMaxTile;
  const std::size_t stride = tile % 2 ? tile : tile + 1;
  std::size_t blocks = (n + tile - 1) / tile;
  if (blocks > kMaxDistanceBlocks) blocks = kMaxDistanceBlocks;
  pair_kernel<<<static_cast<unsigned>(blocks), kPairThreads, k * stride * sizeof(float), stream>>>(
      partials, rows, k, n, tile, stride, pair_i, pair_j, pairs);
  *blocks_used = static_cast<unsigned>(blocks);
  return cudaGetLastError();
}

cudaError_t pair_sq_distances_reduce(double* out, const double* partials, unsigned blocks,
                                     std::size_t pairs, cudaStream_t stream) {
  if (pairs == 0 || blocks == 0) return cudaSuccess;
  const unsigned threads = 256;
  pair_reduce_kernel<<<static_cast<unsigned>((pairs + threads - 1) / threads), threads, 0,
                       stream>>>(out, partials, blocks, pairs);
  return cudaGetLastError();
}

static_assert(kMaxPairsPerLaunch == static_cast<std::size_t>(kPairThreads) * kPairsPerThread);
static_assert(kSharedFloats / kMaxDistanceRows >= 2, "a tile of at least one column fits");

}  // namespace federa::cuda
