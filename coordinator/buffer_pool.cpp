#include "coordinator/buffer_pool.hpp"

namespace federa {

BufferPool::~BufferPool() {
  for (auto& [size, p] : idle_) ::operator delete(p);
}

void* BufferPool::take(std::size_t bytes) {
  const std::size_t size = block_size(bytes);
  {
    std::lock_guard lk(mu_);
    if (auto it = idle_.find(size); it != idle_.end()) {
      void* p = it->second;
      idle_.erase(it);
      idle_bytes_ -= size;
      return p;
    }
  }
  return ::operator new(size);
}

void BufferPool::give(void* p, std::size_t bytes) {
  if (!p) return;
  const std::size_t size = block_size(bytes);
  {
    std::lock_guard lk(mu_);
    if (idle_bytes_ + size <= max_idle_) {
      idle_.emplace(size, p);
      idle_bytes_ += size;
      return;
    }
  }
  ::operator delete(p);
}

std::size_t BufferPool::idle_bytes() const {
  std::lock_guard lk(mu_);
  return idle_bytes_;
}

}  // namespace federa
