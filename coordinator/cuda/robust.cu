#include "coordinator/cuda/kernels.cuh"

namespace federa::cuda {

namespace {

constexpr int kThreads = 128;

// One thread per coordinate: gather its k values (coalesced across the warp: neighbouring
// threads read neighbouring addresses of the same row), insertion-sort them in local memory,
// then take the middle or the trimmed mean. Insertion sort is O(k^2) but branch-light and k is
// the cohort size (tens), so this is bandwidth-bound for the sizes robust strategies are used at.
static __global__ void robust_kernel(float* __restrict__ out, const float* __restrict__ rows,
                                     std::size_t k, std::size_t n, std::size_t trim, bool median) {
  float v[kMaxRobustRows];
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    for (std::size_t j = 0; j < k; ++j) {
      float x = rows[j * n + i];
      std::size_t p = j;
      while (p > 0 && v[p - 1] > x) {
        v[p] = v[p - 1];
        --p;
      }
      v[p] = x;
    }
    if (median) {
      out[i] = k % 2 ? v[k / 2]
                     : static_cast<float>((static_cast<double>(v[k / 2 - 1]) + v[k / 2]) * 0.5);
    } else {
      double s = 0.0;
      for (std::size_t j = trim; j < k - trim; ++j) s += v[j];
      out[i] = static_cast<float>(s / static_cast<double>(k - 2 * trim));
    }
  }
}

}  // namespace

cudaError_t robust_reduce(float* out, const float* rows, std::size_t k, std::size_t n,
                          std::size_t trim, bool median, cudaStream_t stream) {
  if (n == 0 || k == 0) return cudaSuccess;
  if (k > kMaxRobustRows || (!median && 2 * trim >= k)) return cudaErrorInvalidValue;
  std::size_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65535 * 4) blocks = 65535 * 4;
  robust_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, rows, k, n, trim, median);
  return cudaGetLastError();
}

}  // namespace federa::cuda

namespace federa::cuda {

namespace {

constexpr int kPairThreads = 256;
constexpr int kPairsPerThread = 8;
constexpr std::size_t kTileFloats = 8192;  // 32 KB of shared memory per block

static __global__ void pair_kernel(double* __restrict__ out, const float* __restrict__ rows,
                                   std::size_t k, std::size_t n, std::size_t tile,
                                   const std::uint32_t* __restrict__ pi,
                                   const std::uint32_t* __restrict__ pj, std::size_t pairs) {
  extern __shared__ float sh[];  // k x tile
  double part[kPairsPerThread] = {};
  for (std::size_t base = blockIdx.x * tile; base < n; base += gridDim.x * tile) {
    const std::size_t len = n - base < tile ? n - base : tile;
    for (std::size_t q = threadIdx.x; q < k * tile; q += blockDim.x) {
      std::size_t r = q / tile, c = q % tile;
      sh[q] = c < len ? rows[r * n + base + c] : 0.0f;
    }
    __syncthreads();
    for (int t = 0; t < kPairsPerThread; ++t) {
      std::size_t p = threadIdx.x + static_cast<std::size_t>(t) * blockDim.x;
      if (p >= pairs) break;
      const float* a = sh + pi[p] * tile;
      const float* b = sh + pj[p] * tile;
      float s = 0.0f;  // a tile is short: float partial, double across tiles
      for (std::size_t c = 0; c < len; ++c) {
        float d = a[c] - b[c];
        s += d * d;
      }
      part[t] += s;
    }
    __syncthreads();
  }
  for (int t = 0; t < kPairsPerThread; ++t) {
    std::size_t p = threadIdx.x + static_cast<std::size_t>(t) * blockDim.x;
    if (p < pairs) atomicAdd(out + p, part[t]);
  }
}

}  // namespace

cudaError_t pair_sq_distances(double* out, const float* rows, std::size_t k, std::size_t n,
                              const std::uint32_t* pair_i, const std::uint32_t* pair_j,
                              std::size_t pairs, cudaStream_t stream) {
  if (pairs == 0 || n == 0) return cudaSuccess;
  if (pairs > static_cast<std::size_t>(kPairThreads) * kPairsPerThread || k > kTileFloats)
    return cudaErrorInvalidValue;  // the caller splits larger pair lists
  std::size_t tile = kTileFloats / k;
  if (tile > 256) tile = 256;
  std::size_t blocks = (n + tile - 1) / tile;
  if (blocks > 1024) blocks = 1024;
  pair_kernel<<<static_cast<unsigned>(blocks), kPairThreads, k * tile * sizeof(float), stream>>>(
      out, rows, k, n, tile, pair_i, pair_j, pairs);
  return cudaGetLastError();
}

static_assert(kMaxPairsPerLaunch == static_cast<std::size_t>(kPairThreads) * kPairsPerThread);

}  // namespace federa::cuda
