// The CUDA aggregation backend: device discovery, the probe launch, pinned host buffers and the
// bandwidth reference. The objects live in weighted_sum.cpp and update_set.cpp, the shared
// streams and copies in context.cpp, the kernels in kernels.cu and robust.cu. Compiled by the host
// C++ compiler (C++20, like the rest of the coordinator); only the .cu files go through nvcc.
#include "coordinator/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "coordinator/cuda/context.hpp"
#include "coordinator/cuda/kernels.cuh"
#include "coordinator/cuda/objects.hpp"

#ifndef FEDERA_CUDA_ARCHITECTURES
#define FEDERA_CUDA_ARCHITECTURES "unknown"
#endif

namespace federa {

namespace {

using cuda::Context;
using cuda::DeviceArray;

class CudaBackend final : public AggregationBackend {
 public:
  CudaBackend(std::shared_ptr<Context> ctx, std::string device_name)
      : ctx_(std::move(ctx)), device_name_(std::move(device_name)) {}
  std::string name() const override { return "cuda"; }
  std::string description() const override { return "cuda: " + device_name_; }

  Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::size_t size) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    return cuda::make_weighted_sum(ctx_, size);
  }
  Result<std::unique_ptr<UpdateSet>> make_update_set(std::size_t size) override {
    return cuda::make_update_set(ctx_, size);
  }
  Result<std::unique_ptr<U32Sum>> make_u32_sum(std::size_t size) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    return cuda::make_u32_sum(ctx_, size);
  }

  // Page-locked and registered, so add()/push() recognise spans inside it without asking the
  // driver and copy straight from it.
  Result<HostBuffer> make_host_buffer(std::size_t size) override {
    void* p = nullptr;
    const std::size_t bytes = std::max<std::size_t>(size, 1) * sizeof(float);
    CUDA_CHECK(cudaMallocHost(&p, bytes));
    cuda::pinned_registry().add(p, bytes);
    return HostBuffer(static_cast<float*>(p), [](float* q) {
      cuda::pinned_registry().remove(q);
      cudaFreeHost(q);
    });
  }

  Result<BandwidthReport> measure_bandwidth() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    Result<BandwidthReport> r = measure();
    if (!r) ctx_->drain();
    return r;
  }

 private:
  // Device-to-device copy of 1 GiB (counted as read + write, like CUDA's bandwidthTest) and a
  // pinned host-to-device copy of 256 MiB; best of five after a warm-up, timed with events.
  Result<BandwidthReport> measure() {
    const std::size_t d2d = std::size_t{1} << 30, h2d = std::size_t{256} << 20;
    DeviceArray<char> a, b;
    if (Status st = a.reserve(d2d); !st) return st.error();
    if (Status st = b.reserve(d2d); !st) return st.error();
    Result<HostBuffer> host = make_host_buffer(h2d / sizeof(float));
    if (!host) return host.error();
    std::memset(host->get(), 1, h2d);
    cudaStream_t s = ctx_->main();
    cudaEvent_t e0 = ctx_->timer(0), e1 = ctx_->timer(1);
    auto best_ms = [&](auto&& op) -> Result<float> {
      float best = 1e30f;
      for (int rep = 0; rep < 6; ++rep) {
        CUDA_CHECK(cudaEventRecord(e0, s));
        CUDA_CHECK(op());
        CUDA_CHECK(cudaEventRecord(e1, s));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep > 0) best = std::min(best, ms);
      }
      return best;
    };
    auto t_d2d = best_ms(
        [&] { return cudaMemcpyAsync(b.get(), a.get(), d2d, cudaMemcpyDeviceToDevice, s); });
    if (!t_d2d) return t_d2d.error();
    auto t_h2d = best_ms(
        [&] { return cudaMemcpyAsync(a.get(), host->get(), h2d, cudaMemcpyHostToDevice, s); });
    if (!t_h2d) return t_h2d.error();
    BandwidthReport r;
    r.memory_gbps = 2.0 * static_cast<double>(d2d) / (t_d2d.value() / 1e3) / 1e9;
    r.host_to_device_gbps = static_cast<double>(h2d) / (t_h2d.value() / 1e3) / 1e9;
    r.method = "cudaMemcpy device-to-device 1 GiB (2 x bytes) and pinned host-to-device 256 MiB";
    return r;
  }

  std::shared_ptr<Context> ctx_;
  std::string device_name_;
};

// One launch of a trivial kernel, read back through the pinned slot: a device the runtime lists
// can still be unusable (no kernel image for its architecture, exclusive mode taken by another
// process, a broken driver), and that must show here, not as every update rejected later.
Status probe(Context& ctx, const cudaDeviceProp& prop, unsigned blocks) {
  DeviceArray<int> out;
  if (Status st = out.reserve(1); !st) return st;
  int value = 0;
  cudaError_t e = cudaMemsetAsync(out.get(), 0, sizeof(int), ctx.main());
  if (e == cudaSuccess) e = cuda::probe(out.get(), blocks, ctx.main());
  Status read = e == cudaSuccess ? ctx.read_small(&value, out.get(), sizeof value) : Status{};
  if (e == cudaSuccess && read && value == cuda::kProbeValue) return {};
  const std::string why =
      e != cudaSuccess ? std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"
      : !read          ? read.message()
                       : "the probe kernel wrote " + std::to_string(value);
  ctx.drain();
  const std::string sm = std::to_string(prop.major) + std::to_string(prop.minor);
  return make_error(ErrorCode::failed_precondition,
                    std::string("CUDA device 0 (") + prop.name + ", compute capability " +
                        std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                        ") cannot run this build's kernels: " + why +
                        ". This build has code for CUDA architectures " FEDERA_CUDA_ARCHITECTURES
                        "; for this GPU configure with -DCMAKE_CUDA_ARCHITECTURES=" +
                        sm);
}

}  // namespace

bool cuda_device_available(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the error so later calls start clean
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  return true;
}

Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(HostCopy copy,
                                                              const CudaBackendOptions& options) {
  std::string why;
  if (!cuda_device_available(&why))
    return make_error(ErrorCode::not_found, "no CUDA device (" + why + ")");
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  auto ctx = std::make_shared<Context>(std::move(copy));
  // Creating the context is where a device in exclusive mode held by another process fails.
  if (Status st = ctx->init(); !st)
    return make_error(
        st.code(), std::string("CUDA device 0 (") + prop.name + ") is unusable: " + st.message());
  if (Status st = probe(*ctx, prop, options.simulate_probe_failure ? 0u : 1u); !st)
    return st.error();
  return std::unique_ptr<AggregationBackend>(std::make_unique<CudaBackend>(ctx, prop.name));
}

}  // namespace federa
