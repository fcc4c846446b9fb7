#include "coordinator/upload_pool.hpp"

namespace federa {

Result<std::span<float>> UploadBuffer::floats(std::size_t n, AggregationBackend* backend) {
  if (float_count_ != n) {
    if (backend) {
      auto b = backend->make_host_buffer(n);
      if (!b)
        return make_error(ErrorCode::resource_exhausted, "upload buffer: " + b.error().message);
      floats_ = std::move(*b);
    } else {
      floats_ = AggregationBackend::HostBuffer(new float[n], [](float* p) { delete[] p; });
    }
    float_count_ = n;
  }
  return std::span<float>(floats_.get(), n);
}

std::span<std::uint32_t> UploadBuffer::words(std::size_t n) {
  if (words_.size() != n) words_.assign(n, 0);
  return words_;
}

std::unique_ptr<UploadBuffer> UploadPool::acquire() {
  std::lock_guard lk(mu_);
  if (!free_.empty()) {
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  if (made_ >= slots_) return nullptr;
  ++made_;
  return std::make_unique<UploadBuffer>();
}

void UploadPool::release(std::unique_ptr<UploadBuffer> buffer) {
  if (!buffer) return;
  std::lock_guard lk(mu_);
  free_.push_back(std::move(buffer));
}

std::size_t UploadPool::in_use() const {
  std::lock_guard lk(mu_);
  return made_ - free_.size();
}

}  // namespace federa
