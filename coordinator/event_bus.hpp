// Delivers orchestrator events to observers in the order they happened, never while the
// orchestrator holds its state lock. Producers queue events while they hold that lock (so the
// queue order is the order of the state changes) and call flush() after releasing it.
//
//   {
//     std::lock_guard lk(state_mu);
//     bus.queue(ClientLeft{id, why});
//   }
//   bus.flush();   // delivers everything queued so far, one callback at a time
#pragma once

#include <mutex>
#include <variant>
#include <vector>

#include "coordinator/events.hpp"

namespace federa {

using OrchestratorEvent =
    std::variant<ClientJoined, ClientLeft, ClientRefused, RoundStarted, UpdateEvent, RoundFailed,
                 RoundReport, StatisticsComputed, Status>;

class EventBus {
 public:
  void add(OrchestratorObserver* observer);
  void queue(OrchestratorEvent event);
  // Delivers every queued event; concurrent callers take turns, so order holds across threads.
  void flush();

 private:
  void deliver(const OrchestratorEvent& event);

  std::mutex queue_mu_;  // guards queue_ and observers_
  std::vector<OrchestratorEvent> queue_;
  std::vector<OrchestratorObserver*> observers_;
  std::mutex delivery_mu_;  // one delivery at a time
};

// Flushes `bus` when it goes out of scope: declare it before the lock_guard of a function that
// queues events, so the flush runs after the lock is released.
class FlushOnExit {
 public:
  explicit FlushOnExit(EventBus& bus) : bus_(bus) {}
  ~FlushOnExit() { bus_.flush(); }
  FlushOnExit(const FlushOnExit&) = delete;
  FlushOnExit& operator=(const FlushOnExit&) = delete;

 private:
  EventBus& bus_;
};

}  // namespace federa
