// The CUDA aggregation backend's entry points, for the registry in
// coordinator/aggregation_backend.cpp (which includes this under FEDERA_HAVE_CUDA) and for tests.
//
//   std::string why;
//   if (cuda_device_available(&why)) backend = make_cuda_backend(parallel_memcpy);
//   // an Error when the device is unusable: context creation failed, or the probe launch did
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "coordinator/aggregation_backend.hpp"

namespace federa {

// True when the CUDA runtime finds at least one device; otherwise `why` (when given) says why.
bool cuda_device_available(std::string* why);

// Copies `bytes` from src to dst, possibly on several threads. The backend uses it to move
// pageable updates into (and results out of) its pinned staging buffers, where one thread's
// memcpy (~10 GB/s) would otherwise be slower than PCIe. Passed in (rather than linked) so this
// folder does not depend on the CPU backend's thread pool.
using HostCopy = std::function<void(void* dst, const void* src, std::size_t bytes)>;

struct CudaBackendOptions {
  // Test hook: make the probe launch fail (an invalid launch), as on a GPU this build has no
  // kernel image for. The registry must then fall back to the CPU for --device auto.
  bool simulate_probe_failure = false;
};

// Uses device 0. An empty `copy` means std::memcpy. Errors: not_found (no device), unavailable
// (device busy or missing driver), resource_exhausted (out of memory), failed_precondition (the
// probe launch failed: the message names the device's architecture and the build's).
Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(
    HostCopy copy, const CudaBackendOptions& options = {});

}  // namespace federa
