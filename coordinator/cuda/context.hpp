// What every object of one CUDA backend shares: the streams, the pinned staging buffers, the
// pinned result slot, and the pipelined host<->device copies built on them; plus the process's
// registry of pinned host buffers. Internal to coordinator/cuda/.
//
//   std::lock_guard lock(ctx.mutex());
//   ctx.upload(dev_x, host_x, n * 4, 4, [&](std::size_t first, std::size_t count, cudaStream_t s) {
//     return check(cuda::sum_sq_partials(dev_x + first, nullptr, count, parts + first / kNormBlock,
//     s));
//   });                                                 // chunk c's kernel overlaps chunk c+1's
//   copy cuda::sum_partials(parts, count, dev_sum, ctx.main()); Result<double> s =
//   ctx.read_double(dev_sum);        // one event wait, no blocking memcpy
//
// Ordering: every operation runs on main(); upload()/download() fan chunks out over kLanes
// streams that first wait for what main() has queued, and main() waits for them again at the
// end, so callers can treat main() as the single, in-order queue of the backend.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.hpp"
#include "coordinator/cuda/cuda_backend.hpp"

// Turns a failed CUDA runtime call into an Error naming the call, file and line; usable in any
// function returning Status or Result<T>.
#define CUDA_CHECK(expr)                                                             \
  do {                                                                               \
    cudaError_t cuda_check_err_ = (expr);                                            \
    if (cuda_check_err_ != cudaSuccess)                                              \
      return ::federa::cuda::cuda_error(cuda_check_err_, #expr, __FILE__, __LINE__); \
  } while (0)

namespace federa::cuda {

// resource_exhausted for allocation failures, unavailable for a busy or missing device, internal
// otherwise.
Error cuda_error(cudaError_t e, const char* expr, const char* file, int line);

// Device memory that grows on demand (contents not kept) and frees itself.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  Status reserve(std::size_t n) {
    if (n <= n_ && p_) return {};
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
    CUDA_CHECK(cudaMalloc(&p_, (n == 0 ? 1 : n) * sizeof(T)));
    n_ = n;
    return {};
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// Address ranges of the pinned host buffers the CUDA backends of this process handed out
// (make_host_buffer). One per process, never destroyed: the buffers' deleters may run after any
// backend, or static, is gone.
class PinnedRegistry {
 public:
  void add(const void* p, std::size_t bytes);
  void remove(const void* p);
  bool contains(const void* p, std::size_t bytes) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::uintptr_t, std::size_t> ranges_;  // start -> bytes
};
PinnedRegistry& pinned_registry();

class Context {
 public:
  static constexpr int kLanes = 4;
  // Pageable sources go through kLanes pinned staging buffers of this size; pinned ones are
  // copied directly in chunks of kPinnedChunkBytes. Both are whole numbers of norm blocks.
  static constexpr std::size_t kStagingBytes = std::size_t{2} << 20;
  static constexpr std::size_t kPinnedChunkBytes = std::size_t{4} << 20;

  explicit Context(HostCopy copy);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Status init();

  // Objects of one backend share all of this: each public operation holds the mutex for its
  // duration (recursive: operations may call one another).
  std::recursive_mutex& mutex() { return mutex_; }
  cudaStream_t main() const { return stream_[0]; }
  // True when [p, p + bytes) is page-locked: one of this backend's buffers, or other memory the
  // driver knows as pinned.
  bool is_pinned(const void* p, std::size_t bytes) const;

  // Host src -> device dst in chunks over the lanes; after each chunk's copy,
  // on_chunk(first_element, elements, stream) enqueues that chunk's kernels on the same stream.
  // When it returns, a pageable source has been read completely; a pinned one may still be read
  // by DMA until main() is synchronised (sync(), read_double()).
  using ChunkFn = std::function<Status(std::size_t first, std::size_t count, cudaStream_t stream)>;
  Status upload(void* dst, const void* src, std::size_t bytes, std::size_t elem,
                const ChunkFn& on_chunk);
  // Device src -> host dst after main()'s queued work; returns when dst holds the data. Pinned
  // destinations are copied directly, pageable ones through the staging buffers, chunks
  // pipelined so the host copy of one overlaps the device copy of the next.
  Status download(void* dst, const void* src, std::size_t bytes);
  // A few bytes (<= kSlotBytes) the queued work leaves at `dev`, read through a pinned slot and
  // one event: no blocking memcpy on the legacy stream.
  static constexpr std::size_t kSlotBytes = 64;
  Status read_small(void* dst, const void* dev, std::size_t bytes);
  Result<double> read_double(const double* dev);
  Status sync();
  // After an error: waits until no stream touches any buffer (a caller's pinned span, staging)
  // and clears the error state, so the caller may return and reuse its memory.
  void drain();

  // Runs op under the mutex; drains when it fails.
  template <typename R, typename F>
  R guarded(F&& op) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    R r = op();
    if (!r) drain();
    return r;
  }

  // Events for timing kernels (benchmarks).
  cudaEvent_t timer(int i) const { return timer_[i]; }

 private:
  Status fan_out();                                                   // lanes wait for main()
  Status join(int lanes_used);                                        // main() waits for the lanes
  Status copy_chunk_out(const void* src, std::size_t len, int lane);  // device -> staging_[lane]

  HostCopy copy_;
  std::recursive_mutex mutex_;
  cudaStream_t stream_[kLanes] = {};
  cudaEvent_t staged_[kLanes] = {};  // the last device copy touching staging_[lane]
  cudaEvent_t joined_[kLanes] = {};
  cudaEvent_t start_ = nullptr;
  cudaEvent_t slot_event_ = nullptr;
  cudaEvent_t timer_[2] = {};
  void* staging_[kLanes] = {};
  void* slot_ = nullptr;  // pinned, kSlotBytes
};

}  // namespace federa::cuda
