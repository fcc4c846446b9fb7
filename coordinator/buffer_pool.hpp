// Large message buffers reused across sessions. A session reads each message into a growing
// buffer and gives it back once the message is handled (an idle session must not hold a
// chunk-sized buffer: 1,000 members x 1 MiB). Given back to malloc, a buffer that size is
// unmapped, and the next one faults its pages in afresh: perf showed the coordinator spending
// ~8% of its time there while receiving uploads. The pool keeps such buffers, up to a total, for
// the next message of any session.
//
//   auto pool = std::make_shared<BufferPool>(32u << 20);
//   beast::basic_flat_buffer<PooledAllocator<char>> buffer{PooledAllocator<char>(pool)};
#pragma once

#include <bit>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <new>

namespace federa {

class BufferPool {
 public:
  // Blocks from kSmallest bytes up are pooled, in power-of-two sizes; smaller ones are malloc's.
  static constexpr std::size_t kSmallest = 64u << 10;

  explicit BufferPool(std::size_t max_idle_bytes) : max_idle_(max_idle_bytes) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  static std::size_t block_size(std::size_t bytes) { return std::bit_ceil(bytes); }
  // A block of block_size(bytes); throws std::bad_alloc like operator new.
  void* take(std::size_t bytes);
  // Back to the pool while it holds under max_idle_bytes, else freed. `bytes` as given to take.
  void give(void* p, std::size_t bytes);
  std::size_t idle_bytes() const;

 private:
  const std::size_t max_idle_;
  mutable std::mutex mu_;
  std::multimap<std::size_t, void*> idle_;
  std::size_t idle_bytes_ = 0;
};

// An allocator drawing large blocks from a BufferPool (for beast::basic_flat_buffer).
template <typename T>
class PooledAllocator {
 public:
  using value_type = T;  // NOLINT(readability-identifier-naming): the allocator requirements
  explicit PooledAllocator(std::shared_ptr<BufferPool> pool) : pool_(std::move(pool)) {}
  template <typename U>
  PooledAllocator(const PooledAllocator<U>& other) : pool_(other.pool()) {}

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < BufferPool::kSmallest) return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(pool_->take(bytes));
  }
  void deallocate(T* p, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < BufferPool::kSmallest)
      ::operator delete(p);
    else
      pool_->give(p, bytes);
  }
  const std::shared_ptr<BufferPool>& pool() const { return pool_; }
  template <typename U>
  bool operator==(const PooledAllocator<U>& o) const {
    return pool_ == o.pool();
  }

 private:
  std::shared_ptr<BufferPool> pool_;
};

}  // namespace federa
