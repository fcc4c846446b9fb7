// ThreadPool: the CPU backend's persistent workers (coordinator/cpu_backend.hpp).
#include <algorithm>
#include <atomic>

#include "coordinator/cpu_backend.hpp"

namespace federa {

ThreadPool::ThreadPool(unsigned threads) {
  if (threads == 0) threads = 1;
  workers_.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// About 20-50 us of spinning before a thread goes to sleep.
constexpr int kSpin = 4000;

}  // namespace

void ThreadPool::worker(unsigned index) {
  std::uint64_t seen = 0;
  for (;;) {
    bool ready = false;
    for (int i = 0; i < kSpin && !ready; ++i) {
      ready = generation_.load(std::memory_order_acquire) != seen ||
              stop_.load(std::memory_order_relaxed);
      if (!ready) cpu_relax();
    }
    if (!ready) {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    (*job_.load(std::memory_order_acquire))(index, size());
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(unsigned, unsigned)>& fn) {
  if (workers_.empty()) {
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> turn(run_mutex_);
  job_.store(&fn, std::memory_order_release);
  pending_.store(static_cast<unsigned>(workers_.size()), std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  start_cv_.notify_all();
  fn(0, size());
  for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return pending_.load() == 0; });
  }
}

std::size_t ThreadPool::chunk_for(std::size_t n) const {
  // ~8 chunks per thread, each between 64 KB and 1 MB of floats.
  std::size_t c = n / (8 * static_cast<std::size_t>(size()));
  c = std::clamp<std::size_t>(c, std::size_t{1} << 14, std::size_t{1} << 18);
  return (c + 15) / 16 * 16;
}

void ThreadPool::dynamic_for(
    std::size_t n, std::size_t chunk,
    const std::function<void(unsigned, std::size_t, std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  chunk = std::max<std::size_t>(16, (chunk + 15) / 16 * 16);
  const std::size_t chunks = (n + chunk - 1) / chunk;
  if (workers_.empty() || chunks == 1) {
    for (std::size_t c = 0; c < chunks; ++c) fn(0, c, c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
  std::atomic<std::size_t> next{0};
  run([&](unsigned t, unsigned) {
    for (;;) {
      const std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      fn(t, c, c * chunk, std::min(n, (c + 1) * chunk));
    }
  });
}

void ThreadPool::parallel_for(std::size_t n,
                              const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  if (n < kSerialBelow || workers_.empty()) {
    fn(0, n);
    return;
  }
  dynamic_for(n, chunk_for(n),
              [&](unsigned, std::size_t, std::size_t b, std::size_t e) { fn(b, e); });
}

}  // namespace federa
