// Upload steps shared by the CUDA backend's objects (objects.hpp).
#include <cmath>

#include "coordinator/cuda/kernels.cuh"
#include "coordinator/cuda/objects.hpp"

namespace federa::cuda {

Result<const float*> ReferenceCache::get(Context& ctx, std::span<const float> reference) {
  if (reference.empty()) return static_cast<const float*>(nullptr);
  if (of_ == reference.data() && size_ == reference.size())
    return static_cast<const float*>(dev_.get());
  of_ = nullptr;
  if (Status st = dev_.reserve(reference.size()); !st) return st.error();
  if (Status st = ctx.upload(dev_.get(), reference.data(), reference.size() * sizeof(float),
                             sizeof(float), {});
      !st)
    return st.error();
  if (Status st = ctx.sync(); !st) return st.error();
  of_ = reference.data();
  size_ = reference.size();
  return static_cast<const float*>(dev_.get());
}

Result<double> upload_measured(Context& ctx, float* dev, std::span<const float> x, const float* ref,
                               NormScratch& scratch) {
  const std::size_t parts = norm_partials(x.size());
  if (Status st = scratch.partials.reserve(parts + 1); !st) return st.error();
  double* partials = scratch.partials.get();
  Status up = ctx.upload(dev, x.data(), x.size() * sizeof(float), sizeof(float),
                         [&](std::size_t first, std::size_t count, cudaStream_t s) -> Status {
                           // Chunks start at multiples of kNormBlock (context.cpp asserts it).
                           CUDA_CHECK(sum_sq_partials(dev + first, ref ? ref + first : nullptr,
                                                      count, partials + first / kNormBlock, s));
                           return {};
                         });
  if (!up) return up.error();
  CUDA_CHECK(sum_partials(partials, parts, partials + parts, ctx.main()));
  Result<double> sum = ctx.read_double(partials + parts);  // waits for the copies too
  if (!sum) return sum.error();
  return std::sqrt(sum.value());
}

}  // namespace federa::cuda
