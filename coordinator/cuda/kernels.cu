// Element-wise and reduction kernels of the CUDA backend (launchers declared in kernels.cuh).
#include "coordinator/cuda/kernels.cuh"

namespace federa::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kNormPerThread = static_cast<int>(kNormBlock / kThreads);
static_assert(kNormBlock % kThreads == 0, "a norm block is a whole number of elements per thread");

// Enough blocks to fill the GPU several times over; the kernels stride over the rest.
unsigned blocks_for(std::size_t n) {
  std::size_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535 * 4) b = 65535 * 4;
  return static_cast<unsigned>(b == 0 ? 1 : b);
}

// Sum over the block in a fixed order (warp shuffles, then warp 0 over the warps' sums); the
// result is valid in thread 0. Requires blockDim.x == kThreads.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__global__ void probe_kernel(int* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *out = kProbeValue;
}

// One block per kNormBlock elements; each thread sums kNormPerThread of them (coalesced across
// the block), then the block's sum is written to its own slot: no atomics, the same bits each run.
__global__ void sum_sq_partials_kernel(const float* __restrict__ x, const float* __restrict__ ref,
                                       std::size_t n, double* __restrict__ partials) {
  const std::size_t base = static_cast<std::size_t>(blockIdx.x) * kNormBlock + threadIdx.x;
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < kNormPerThread; ++k) {
    const std::size_t i = base + static_cast<std::size_t>(k) * kThreads;
    if (i < n) {
      const double v = ref ? static_cast<double>(x[i]) - ref[i] : static_cast<double>(x[i]);
      s += v * v;
    }
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* __restrict__ partials, std::size_t count,
                                    double* __restrict__ out) {
  double s = 0.0;
  for (std::size_t i = threadIdx.x; i < count; i += kThreads) s += partials[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

__global__ void axpy_kernel(float* __restrict__ acc, const float* __restrict__ x,
                            const float* __restrict__ ref, float w, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    acc[i] += w * (ref ? x[i] - ref[i] : x[i]);
}

__global__ void scale_delta_kernel(float* __restrict__ row, const float* __restrict__ ref, float s,
                                   std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    row[i] = s * (ref ? row[i] - ref[i] : row[i]);
}

__global__ void scale_copy_kernel(float* __restrict__ out, const float* __restrict__ in,
                                  float scale, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    out[i] = scale * in[i];
}

__global__ void add_u32_kernel(std::uint32_t* __restrict__ acc, const std::uint32_t* __restrict__ x,
                               std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    acc[i] += x[i];
}

// Each thread owns four consecutive coordinates (one 16-byte load per row) and keeps their sums
// in registers while it walks the rows: every row is read once, the output written once. The
// coordinates past the last multiple of four are done one by one by the first threads.
__global__ void weighted_rows_kernel(float* __restrict__ out, const float* const* __restrict__ rows,
                                     std::size_t n, const float* __restrict__ weights,
                                     std::size_t m, float inv_total) {
  const std::size_t n4 = n / 4;
  const std::size_t first = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = first; i < n4; i += stride) {
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (std::size_t j = 0; j < m; ++j) {
      const float4 v = reinterpret_cast<const float4*>(rows[j])[i];
      const float w = weights[j];
      s.x += w * v.x;
      s.y += w * v.y;
      s.z += w * v.z;
      s.w += w * v.w;
    }
    reinterpret_cast<float4*>(out)[i] =
        make_float4(s.x * inv_total, s.y * inv_total, s.z * inv_total, s.w * inv_total);
  }
  for (std::size_t i = n4 * 4 + first; i < n; i += stride) {
    float s = 0.f;
    for (std::size_t j = 0; j < m; ++j) s += weights[j] * rows[j][i];
    out[i] = s * inv_total;
  }
}

__global__ void finalize_kernel(float* __restrict__ out, const float* __restrict__ acc,
                                const float* __restrict__ xt, bool changes, float scale,
                                step::Params p, float* __restrict__ m, float* __restrict__ v,
                                std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    const float x0 = xt ? xt[i] : 0.0f;
    const float avg = acc[i] * scale + (changes ? x0 : 0.0f);
    if (p.kind == step::kReplace) {
      out[i] = avg;
    } else {
      float mi = m[i], vi = v[i];
      out[i] = step::apply(p, x0, avg, mi, vi);
      m[i] = mi;
      v[i] = vi;
    }
  }
}

}  // namespace

cudaError_t probe(int* out, unsigned blocks, cudaStream_t stream) {
  probe_kernel<<<blocks, 32, 0, stream>>>(out);
  return cudaGetLastError();
}

cudaError_t sum_sq_partials(const float* x, const float* ref, std::size_t n, double* partials,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  sum_sq_partials_kernel<<<static_cast<unsigned>(norm_partials(n)), kThreads, 0, stream>>>(
      x, ref, n, partials);
  return cudaGetLastError();
}

cudaError_t sum_partials(const double* partials, std::size_t count, double* out,
                         cudaStream_t stream) {
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(partials, count, out);
  return cudaGetLastError();
}

cudaError_t finalize_step(float* out, const float* acc, const float* xt, bool changes, float scale,
                          const step::Params& p, float* m, float* v, std::size_t n,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  finalize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, acc, xt, changes, scale, p, m, v, n);
  return cudaGetLastError();
}

cudaError_t axpy(float* acc, const float* x, const float* ref, float w, std::size_t n,
                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  axpy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(acc, x, ref, w, n);
  return cudaGetLastError();
}

cudaError_t scale_delta(float* row, const float* ref, float s, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scale_delta_kernel<<<blocks_for(n), kThreads, 0, stream>>>(row, ref, s, n);
  return cudaGetLastError();
}

cudaError_t scale_copy(float* out, const float* in, float scale, std::size_t n,
                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scale_copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, scale, n);
  return cudaGetLastError();
}

cudaError_t add_u32(std::uint32_t* acc, const std::uint32_t* x, std::size_t n,
                    cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  add_u32_kernel<<<blocks_for(n), kThreads, 0, stream>>>(acc, x, n);
  return cudaGetLastError();
}

cudaError_t weighted_rows(float* out, const float* const* rows, std::size_t n, const float* weights,
                          std::size_t m, float inv_total, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (reinterpret_cast<std::uintptr_t>(out) % 16 != 0) return cudaErrorMisalignedAddress;
  weighted_rows_kernel<<<blocks_for(n / 4 + 1), kThreads, 0, stream>>>(out, rows, n, weights, m,
                                                                       inv_total);
  return cudaGetLastError();
}

}  // namespace federa::cuda
