// The one thread that runs a federation's aggregation: every Strategy call (begin_round,
// add_update, finish_round, state) and every O(model) pass over a received update happens here,
// in the order the work was handed over. I/O threads post a completed update and return at once;
// nothing O(model) ever runs under the orchestrator's state lock.
//
//   AggregationWorker worker;
//   worker.post([&, upload] { auto s = strategy->add_update(...); record(s); });   // async, FIFO
//   Result<RoundStats> r = worker.call([&] { return strategy->finish_round(global); });  // waits
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

namespace federa {

class AggregationWorker {
 public:
  AggregationWorker();
  ~AggregationWorker();  // runs what is queued, then joins
  AggregationWorker(const AggregationWorker&) = delete;
  AggregationWorker& operator=(const AggregationWorker&) = delete;

  // Queues `job`; jobs run one at a time in the order posted.
  void post(std::function<void()> job);

  // Runs `fn` on the worker after everything posted before it and returns its result.
  template <typename F>
  auto call(F&& fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    // Shared with the job: the task may still be returning on the worker after get() wakes us.
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    auto result = task->get_future();
    post([task] { (*task)(); });
    return result.get();
  }

  // Waits until every job posted so far has run.
  void drain();
  // True on the worker thread itself (call() from there would deadlock).
  bool on_worker_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool busy_ = false;
  bool stopping_ = false;
  std::condition_variable idle_;
  std::thread thread_;
};

}  // namespace federa
