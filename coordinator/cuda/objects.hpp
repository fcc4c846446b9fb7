// The CUDA backend's objects (weighted_sum.cpp, update_set.cpp) and the upload steps they share
// (uploads.cpp). Internal to coordinator/cuda/.
//
//   ReferenceCache ref;                               // the round's starting model, once a round
//   Result<const float*> r = ref.get(ctx, options.reference);
//   NormScratch scratch;
//   Result<double> norm = upload_measured(ctx, dev_x, x, *r, scratch);  // x now on the device
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cuda/context.hpp"

namespace federa::cuda {

Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::shared_ptr<Context> ctx, std::size_t n);
Result<std::unique_ptr<UpdateSet>> make_update_set(std::shared_ptr<Context> ctx, std::size_t n);
Result<std::unique_ptr<U32Sum>> make_u32_sum(std::shared_ptr<Context> ctx, std::size_t n);

// One device copy of AddOptions::reference, uploaded when a different host span is passed (once
// per round: the contract says its contents do not change until the next reset()/clear()).
class ReferenceCache {
 public:
  // nullptr for an empty reference; else the device copy.
  Result<const float*> get(Context& ctx, std::span<const float> reference);
  void forget() { of_ = nullptr; }

 private:
  DeviceArray<float> dev_;
  const float* of_ = nullptr;  // the host address dev_ was copied from
  std::size_t size_ = 0;
};

// Device room for the per-block partial sums of a norm and their total.
struct NormScratch {
  DeviceArray<double> partials;  // norm_partials(n) + 1: the last slot holds the total
};

// Copies x to dev (pipelined over the lanes) while each chunk's partial sums of squares (of
// x - ref when ref is not null) are computed on the device; then adds them in a fixed order and
// returns the L2 norm (NaN or Inf for a non-finite update). On return the host span is free and
// dev holds x; nothing else was written.
Result<double> upload_measured(Context& ctx, float* dev, std::span<const float> x, const float* ref,
                               NormScratch& scratch);

}  // namespace federa::cuda
