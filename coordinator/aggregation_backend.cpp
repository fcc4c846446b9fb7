// The backend registry: the one place that knows whether this build has CUDA, and what "auto"
// does when a GPU is there but cannot be used.
#include "coordinator/aggregation_backend.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "coordinator/cpu_backend.hpp"

#ifdef FEDERA_HAVE_CUDA
#include "coordinator/cuda/cuda_backend.hpp"
#endif

namespace federa {

namespace {

std::unique_ptr<AggregationBackend> cpu_backend(unsigned threads) {
  return std::make_unique<CpuBackend>(threads);
}

#ifdef FEDERA_HAVE_CUDA
Result<std::unique_ptr<AggregationBackend>> real_gpu(unsigned threads) {
  std::string why;
  if (!cuda_device_available(&why)) return make_error(ErrorCode::not_found, why);
  // Staging copies of pageable updates into pinned memory run on a pool of the requested size.
  auto pool = std::make_shared<ThreadPool>(
      threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads);
  return make_cuda_backend([pool](void* dst, const void* src, std::size_t bytes) {
    pool->parallel_for(bytes, [&](std::size_t b, std::size_t e) {
      std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
    });
  });
}
#endif

}  // namespace

bool cuda_backend_available() {
#ifdef FEDERA_HAVE_CUDA
  return cuda_device_available(nullptr);
#else
  return false;
#endif
}

Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device, unsigned threads,
                                                         const GpuFactory& gpu, Error* fallback) {
  if (device == "cpu") return cpu_backend(threads);
  if (device != "cuda" && device != "auto")
    return make_error(ErrorCode::invalid_argument,
                      "unknown --device '" + std::string(device) + "' (use auto, cpu or cuda)");
  if (!gpu) {
    if (device == "cuda")
      return make_error(ErrorCode::failed_precondition,
                        "--device cuda: this build has no CUDA backend (configure with "
                        "-DFEDERA_CUDA=ON on a machine with nvcc)");
    if (fallback) *fallback = make_error(ErrorCode::not_found, "this build has no CUDA backend");
    return cpu_backend(threads);
  }
  Result<std::unique_ptr<AggregationBackend>> g = gpu(threads);
  if (g) return g;
  if (device == "cuda")
    return make_error(g.error().code,
                      "--device cuda: no usable CUDA device (" + g.error().message + ")");
  if (fallback) *fallback = g.error();
  return cpu_backend(threads);
}

Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device,
                                                         unsigned threads) {
#ifdef FEDERA_HAVE_CUDA
  const GpuFactory gpu = real_gpu;
#else
  const GpuFactory gpu;
#endif
  Error why;
  auto b = make_backend(device, threads, gpu, &why);
  if (b && device == "auto" && (*b)->name() == "cpu") {
    // No device at all is the ordinary case on a CPU host; a device that is there but unusable
    // is worth a warning: the operator expected the GPU.
    if (why.code == ErrorCode::not_found)
      spdlog::info("--device auto: using the CPU ({})", why.message);
    else
      spdlog::warn("--device auto: a CUDA device is present but unusable, using the CPU: {}",
                   why.message);
  }
  return b;
}

}  // namespace federa
