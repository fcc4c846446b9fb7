#include "coordinator/aggregation_backend.hpp"

#include <algorithm>
#include <cstring>
#include <thread>

#include "coordinator/cpu_backend.hpp"

// The one place that knows whether this build has CUDA; every caller goes through make_backend.
#ifdef FEDERA_HAVE_CUDA
#include "coordinator/cuda/cuda_backend.hpp"
#endif

namespace federa {

bool cuda_backend_available() {
#ifdef FEDERA_HAVE_CUDA
  return cuda_device_available(nullptr);
#else
  return false;
#endif
}

Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device,
                                                         unsigned threads) {
  if (device == "cpu") return std::unique_ptr<AggregationBackend>(std::make_unique<CpuBackend>(threads));
  if (device == "cuda" || device == "auto") {
#ifdef FEDERA_HAVE_CUDA
    std::string why;
    if (cuda_device_available(&why)) {
      // Staging copies into pinned memory run on a pool of the requested size.
      auto pool = std::make_shared<ThreadPool>(
          threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads);
      return make_cuda_backend([pool](void* dst, const void* src, std::size_t bytes) {
        pool->parallel_for(bytes, [&](std::size_t b, std::size_t e) {
          std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
        });
      });
    }
    if (device == "cuda") return make_error("--device cuda: no usable CUDA device (" + why + ")");
#else
    if (device == "cuda")
      return make_error("--device cuda: this build has no CUDA backend (configure with "
                        "-DFEDERA_CUDA=ON on a machine with nvcc)");
#endif
    return std::unique_ptr<AggregationBackend>(std::make_unique<CpuBackend>(threads));
  }
  return make_error("unknown --device '" + std::string(device) + "' (use auto, cpu or cuda)");
}

}  // namespace federa
