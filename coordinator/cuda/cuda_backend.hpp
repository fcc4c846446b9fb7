// The CUDA aggregation backend's entry points, for the registry in
// coordinator/aggregation_backend.cpp (the only file that includes this, under FEDERA_HAVE_CUDA).
//
//   std::string why;
//   if (cuda_device_available(&why)) backend = make_cuda_backend(threads);
#pragma once

#include <memory>
#include <string>

#include "coordinator/aggregation_backend.hpp"

namespace federa {

// True when the CUDA runtime finds at least one device; otherwise `why` (when given) says why.
bool cuda_device_available(std::string* why);

// Uses device 0. `threads` sizes the host-side staging work (copies into pinned buffers).
Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(unsigned threads);

}  // namespace federa
