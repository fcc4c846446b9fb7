#include "coordinator/cuda/kernels.cuh"

namespace federa::cuda {

namespace {

constexpr int kThreads = 256;

// Enough blocks to fill the GPU several times over; the kernels stride over the rest.
unsigned blocks_for(std::size_t n) {
  std::size_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535 * 4) b = 65535 * 4;
  return static_cast<unsigned>(b == 0 ? 1 : b);
}

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

static __global__ void axpy_norm_kernel(float* __restrict__ acc, const float* __restrict__ x,
                                        const float* __restrict__ ref, float w, std::size_t n,
                                        double* norm_sq) {
  double s = 0.0;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    float v = ref ? x[i] - ref[i] : x[i];
    if (acc) acc[i] += w * v;
    double d = ref ? static_cast<double>(x[i]) - ref[i] : static_cast<double>(v);
    s += d * d;
  }
  if (norm_sq) {
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(norm_sq, s);
  }
}

static __global__ void scale_delta_kernel(float* __restrict__ row, const float* __restrict__ ref,
                                          float s, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    row[i] = s * (ref ? row[i] - ref[i] : row[i]);
}

static __global__ void scale_copy_kernel(float* __restrict__ out, const float* __restrict__ in,
                                         float scale, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    out[i] = scale * in[i];
}

static __global__ void add_u32_kernel(std::uint32_t* __restrict__ acc,
                                      const std::uint32_t* __restrict__ x, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    acc[i] += x[i];
}

// Each thread owns four consecutive coordinates (one 16-byte load per row) and keeps their sums
// in registers while it walks the rows: every row is read once, the output written once.
static __global__ void weighted_rows4_kernel(float4* __restrict__ out, const float* __restrict__ rows,
                                             std::size_t n, const std::uint32_t* __restrict__ index,
                                             const float* __restrict__ weights, std::size_t m,
                                             float inv_total) {
  const std::size_t n4 = n / 4;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += stride) {
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
    for (std::size_t j = 0; j < m; ++j) {
      const float4 v = reinterpret_cast<const float4*>(rows + index[j] * n)[i];
      const float w = weights[j];
      s.x += w * v.x;
      s.y += w * v.y;
      s.z += w * v.z;
      s.w += w * v.w;
    }
    out[i] = make_float4(s.x * inv_total, s.y * inv_total, s.z * inv_total, s.w * inv_total);
  }
}

static __global__ void weighted_rows_kernel(float* __restrict__ out, const float* __restrict__ rows,
                                            std::size_t n, const std::uint32_t* __restrict__ index,
                                            const float* __restrict__ weights, std::size_t m,
                                            float inv_total) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    float s = 0.f;
    for (std::size_t j = 0; j < m; ++j) s += weights[j] * rows[index[j] * n + i];
    out[i] = s * inv_total;
  }
}

static __global__ void finalize_kernel(float* __restrict__ out, const float* __restrict__ acc,
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

cudaError_t finalize_step(float* out, const float* acc, const float* xt, bool changes, float scale,
                          const step::Params& p, float* m, float* v, std::size_t n,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  finalize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, acc, xt, changes, scale, p, m, v, n);
  return cudaGetLastError();
}

cudaError_t axpy_norm(float* acc, const float* x, const float* ref, float w, std::size_t n,
                      double* norm_sq, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  axpy_norm_kernel<<<blocks_for(n), kThreads, 0, stream>>>(acc, x, ref, w, n, norm_sq);
  return cudaGetLastError();
}

cudaError_t scale_delta(float* row, const float* ref, float s, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scale_delta_kernel<<<blocks_for(n), kThreads, 0, stream>>>(row, ref, s, n);
  return cudaGetLastError();
}

cudaError_t scale_copy(float* out, const float* in, float scale, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scale_copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, scale, n);
  return cudaGetLastError();
}

cudaError_t add_u32(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  add_u32_kernel<<<blocks_for(n), kThreads, 0, stream>>>(acc, x, n);
  return cudaGetLastError();
}

cudaError_t weighted_rows(float* out, const float* rows, std::size_t n, const std::uint32_t* index,
                          const float* weights, std::size_t m, float inv_total, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // float4 loads need every row to start 16-byte aligned: rows are n floats apart.
  if (n % 4 == 0 && reinterpret_cast<std::uintptr_t>(rows) % 16 == 0 &&
      reinterpret_cast<std::uintptr_t>(out) % 16 == 0) {
    weighted_rows4_kernel<<<blocks_for(n / 4), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(out), rows, n, index, weights, m, inv_total);
  } else {
    weighted_rows_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, rows, n, index, weights, m,
                                                                 inv_total);
  }
  return cudaGetLastError();
}

}  // namespace federa::cuda
