// The coordinator's bounded set of upload buffers: at most `slots` updates are reassembled at
// once, whatever the number of clients, so memory is O(model x slots). Float buffers come from
// the aggregation backend (page-locked for CUDA, so the copy to the GPU needs no staging);
// secure rounds' masked uploads (uint32 words) take their slot from the same budget.
//
//   UploadPool pool(8, model_size, backend);
//   if (auto b = pool.acquire()) { ... b->floats(n) ... ; pool.release(std::move(b)); }
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "coordinator/aggregation_backend.hpp"

namespace federa {

class UploadBuffer {
 public:
  // The float view, allocated on first use (from the backend when there is one).
  Result<std::span<float>> floats(std::size_t n, AggregationBackend* backend);
  // The uint32 view for masked uploads, allocated on first use.
  std::span<std::uint32_t> words(std::size_t n);

 private:
  AggregationBackend::HostBuffer floats_{nullptr, [](float*) {}};
  std::size_t float_count_ = 0;
  std::vector<std::uint32_t> words_;
};

class UploadPool {
 public:
  UploadPool(std::size_t slots, AggregationBackend* backend)
      : slots_(slots ? slots : 1), backend_(backend) {}
  // A free buffer, or nullptr when every slot is in use. Thread-safe.
  std::unique_ptr<UploadBuffer> acquire();
  void release(std::unique_ptr<UploadBuffer> buffer);
  AggregationBackend* backend() const { return backend_; }
  std::size_t in_use() const;

 private:
  const std::size_t slots_;
  AggregationBackend* backend_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<UploadBuffer>> free_;
  std::size_t made_ = 0;
};

}  // namespace federa
