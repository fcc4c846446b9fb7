#include "coordinator/aggregation_worker.hpp"

namespace federa {

AggregationWorker::AggregationWorker() : thread_([this] { loop(); }) {}

AggregationWorker::~AggregationWorker() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AggregationWorker::post(std::function<void()> job) {
  {
    std::lock_guard lk(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void AggregationWorker::drain() {
  std::unique_lock lk(mu_);
  idle_.wait(lk, [&] { return jobs_.empty() && !busy_; });
}

void AggregationWorker::loop() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and everything queued has run
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    lk.unlock();
    job();
    job = nullptr;  // whatever the job captured is released on this thread, before idle
    lk.lock();
    busy_ = false;
    if (jobs_.empty()) idle_.notify_all();
  }
}

}  // namespace federa
