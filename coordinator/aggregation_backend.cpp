#include "coordinator/aggregation_backend.hpp"

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
    if (cuda_device_available(&why)) return make_cuda_backend(threads);
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
