// The CPU aggregation backend: a small persistent thread pool and vectorisable loops.
//
//   CpuBackend cpu(2);                                  // 2 threads, the caller included
//   auto sum = cpu.make_weighted_sum(p).value();
//   sum->add(x, 3.0f).value();                          // validates x (one pass), acc += 3 x
//   sum->add(x, 3.0f, {.known = facts}).value();        // facts measured on receipt: one pass
//   cpu.pool().run([&](unsigned t, unsigned nt) { ... });  // the same threads, for benchmarks
//
// Accumulation is in float, on purpose: the pass is memory-bound, and a float accumulator is half
// the bytes of a double one (a 4M-parameter accumulator, 16 MB, stays in a 32 MB L3 while updates
// stream through). FedAvg's weights are positive, so the sum has no cancellation; its relative
// rounding error grows at most like K * 2^-24 (6e-6 for K = 100), far below the noise of SGD.
// Norms and distances are summed in double.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "coordinator/aggregation_backend.hpp"

namespace federa {

// A fixed set of threads that run one function together and wait for each other. Work is
// handed out by index, so there is no queue and no per-call allocation beyond std::function.
class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads);  // total threads, the calling thread included; >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Below this many elements, waking the workers costs more than the loop itself.
  static constexpr std::size_t kSerialBelow = std::size_t{1} << 15;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }
  // Calls fn(t, size()) for t in [0, size()) concurrently (t = 0 on the caller) and returns when
  // all are done. Callers on different threads take turns (objects of one backend, e.g. a
  // strategy's sum and secure aggregation's U32Sum, share the pool); fn must not call run().
  void run(const std::function<void(unsigned, unsigned)>& fn);
  // Hands [0, n) out in chunks of `chunk` elements (rounded up to 16, a cache line of floats) to
  // whichever thread is free next, calling fn(thread, chunk_index, begin, end) once per chunk.
  // On a shared machine a descheduled thread then holds up one chunk, not a fixed half of the
  // work. Per-chunk results indexed by chunk_index keep reductions deterministic.
  void dynamic_for(std::size_t n, std::size_t chunk,
                   const std::function<void(unsigned, std::size_t, std::size_t, std::size_t)>& fn);
  // dynamic_for with a chunk size picked for n; calls fn(begin, end), each index exactly once.
  void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn);
  // The chunk size parallel_for uses for n elements.
  std::size_t chunk_for(std::size_t n) const;

 private:
  void worker(unsigned index);

  // Workers spin briefly on `generation_` before sleeping on the condition variable: an update
  // takes well under a millisecond, and a futex wake-up per update would be a visible share.
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one run() at a time
  std::mutex mutex_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::atomic<const std::function<void(unsigned, unsigned)>*> job_{nullptr};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<unsigned> pending_{0};
  std::atomic<bool> stop_{false};
};

class CpuBackend final : public AggregationBackend {
 public:
  explicit CpuBackend(unsigned threads);  // 0 = std::thread::hardware_concurrency()
  std::string name() const override { return "cpu"; }
  std::string description() const override;
  Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::size_t size) override;
  Result<std::unique_ptr<UpdateSet>> make_update_set(std::size_t size) override;
  Result<std::unique_ptr<U32Sum>> make_u32_sum(std::size_t size) override;
  Result<HostBuffer> make_host_buffer(std::size_t size) override;
  Result<BandwidthReport> measure_bandwidth() override;
  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
};

}  // namespace federa
