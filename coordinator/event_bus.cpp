#include "coordinator/event_bus.hpp"

#include <type_traits>

namespace federa {

void EventBus::add(OrchestratorObserver* observer) {
  std::lock_guard lk(queue_mu_);
  observers_.push_back(observer);
}

void EventBus::queue(OrchestratorEvent event) {
  std::lock_guard lk(queue_mu_);
  if (observers_.empty()) return;
  queue_.push_back(std::move(event));
}

void EventBus::flush() {
  std::lock_guard delivering(delivery_mu_);
  for (;;) {
    std::vector<OrchestratorEvent> batch;
    {
      std::lock_guard lk(queue_mu_);
      batch.swap(queue_);
    }
    if (batch.empty()) return;
    for (const auto& e : batch) deliver(e);
  }
}

void EventBus::deliver(const OrchestratorEvent& event) {
  std::vector<OrchestratorObserver*> observers;
  {
    std::lock_guard lk(queue_mu_);
    observers = observers_;
  }
  for (OrchestratorObserver* o : observers) {
    std::visit(
        [o](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, ClientJoined>)
            o->on_client_joined(e);
          else if constexpr (std::is_same_v<T, ClientLeft>)
            o->on_client_left(e);
          else if constexpr (std::is_same_v<T, ClientRefused>)
            o->on_client_refused(e);
          else if constexpr (std::is_same_v<T, RoundStarted>)
            o->on_round_started(e);
          else if constexpr (std::is_same_v<T, UpdateEvent>)
            o->on_update(e);
          else if constexpr (std::is_same_v<T, RoundFailed>)
            o->on_round_failed(e);
          else if constexpr (std::is_same_v<T, RoundReport>)
            o->on_round_committed(e);
          else if constexpr (std::is_same_v<T, StatisticsComputed>)
            o->on_statistics(e);
          else
            o->on_job_finished(e);
        },
        event);
  }
}

}  // namespace federa
