// The CUDA aggregation backend's entry points, for the registry in
// coordinator/aggregation_backend.cpp (the only file that includes this, under FEDERA_HAVE_CUDA).
//
//   std::string why;
//   if (cuda_device_available(&why)) backend = make_cuda_backend(parallel_memcpy);
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
// pageable updates into its pinned staging buffers, where one thread's memcpy (~10 GB/s) would
// otherwise be slower than PCIe. Passed in (rather than linked) so this folder does not depend on
// the CPU backend's thread pool.
using HostCopy = std::function<void(void* dst, const void* src, std::size_t bytes)>;

// Uses device 0. An empty `copy` means std::memcpy.
Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(HostCopy copy);

}  // namespace federa
