#include "coordinator/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

namespace federa {

bool cuda_device_available(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  return true;
}

Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(unsigned) {
  return make_error("the CUDA aggregation backend is not implemented yet");
}

}  // namespace federa
