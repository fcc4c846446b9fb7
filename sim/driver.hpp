// Rank 0's dispatcher: an event loop that blocks for the next delivery from the orchestrator
// (sim/transport.hpp) and hands it to the virtual client it is for, or acts on the orchestrator's
// events. The orchestrator answers asynchronously (UploadReady may come later, from its
// aggregation worker), so the loop never assumes an answer inside a call.
//
//   Driver driver(options, group, clients, orchestrator, progress, metrics);
//   orchestrator.add_observer(&driver.events());
//   if (Status s = driver.connect_all(); !s) ...      // Hello -> Welcome for every client
//   Status done = driver.run(wall_s);                  // runs the orchestrator until it returns
//
// A round, as the dispatcher sees it: the task messages arrive and each selected client's
// session asks to run its task; clients that drop out or miss the deadline on the simulated clock
// (sim/latency.hpp) answer with an error at once. RoundStarted (sent after every task message was
// queued) is the barrier: the batch trains over threads and ranks (sim/training.hpp), then the
// results go back to the sessions one at a time in client order, each plain update uploaded
// before the next one starts, so the strategy sums them in the same order whatever the thread
// or rank count (the orchestrator's aggregation queue is FIFO). An evaluation (RoundStarted of
// kind evaluate) is the same barrier: its batch evaluates on rank 0's threads and the results go
// back in client order; dropouts and the simulated clock do not apply to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "coordinator/orchestrator.hpp"
#include "coordinator/state_store.hpp"
#include "sim/latency.hpp"
#include "sim/progress.hpp"
#include "sim/simulation.hpp"
#include "sim/training.hpp"
#include "sim/transport.hpp"

namespace federa {

// What rank 0 remembers of each round for --baseline.
struct RoundRecord {
  TrainConfig config;
  std::vector<std::size_t> trained;
};

class Driver final : public ClientHost {
 public:
  Driver(const SimOptions& options, RankGroup& group, const ClientData& clients,
         Orchestrator& orchestrator, Progress& progress, MetricsLog& metrics);

  OrchestratorObserver& events() { return events_; }
  // Connects every virtual client (Hello -> Welcome) before the orchestrator starts.
  Status connect_all();
  // Runs the orchestrator on its own thread and serves it until it returns.
  Status run(double& wall_s);

  const std::map<std::uint64_t, RoundRecord>& records() const { return records_; }
  const std::vector<std::string>& metrics_lines() const { return lines_; }
  std::uint64_t rounds_completed() const { return rounds_completed_; }
  std::uint64_t client_updates() const { return client_updates_; }

  // ClientHost
  void to_coordinator(std::size_t client, const wire::Envelope& envelope) override;
  void session_ended(std::size_t client, const SessionEnd& end) override;
  void task_requested(std::size_t client, Task task) override;
  std::shared_ptr<const Model> share_model(std::shared_ptr<const Model> model) override;

 private:
  struct Request {
    std::size_t client = 0;
    Task task;
  };

  Status serve();
  Status step(Delivery d);
  Status deliver(const MessageDelivery& m);
  void close_link(std::size_t client, const std::string& why);
  // Hands back the failures of clients that do not train (after the delivery that asked).
  void settle_failures();
  Status on_round_started(const RoundStarted& e);
  // An evaluation's batch: every client evaluates on its held-out rows (no dropouts, no clock).
  Status evaluate_batch(const std::vector<Request>& batch);
  AttemptFigures figures_for(const RoundStarted& e) const;
  Result<std::vector<TrainOutcome>> train(std::uint64_t round, const std::vector<Request>& batch);
  Status hand_back(std::vector<Request>& batch, std::vector<TrainOutcome>& outcomes, bool secure);
  // Serves deliveries until `client`'s announced update was uploaded (or refused).
  Status wait_for_upload(std::size_t client);
  Status on_round_committed(const RoundReport& report);

  const SimOptions& o_;
  RankGroup& group_;
  const ClientData& cd_;
  Orchestrator& orch_;
  Progress& progress_;
  MetricsLog& metrics_;
  ClockOptions clock_;
  Inbox inbox_;
  EventForwarder events_{inbox_};
  std::vector<std::unique_ptr<VirtualClient>> clients_;
  std::vector<std::shared_ptr<SimLink>> links_;
  std::vector<bool> closed_;
  std::unordered_map<std::string, std::size_t> index_;

  std::vector<Request> batch_;  // task requests of the attempt being broadcast
  std::vector<std::pair<std::size_t, TaskResult>> failures_;
  std::shared_ptr<const Model> round_model_;  // one copy of the global model for the batch
  std::map<std::pair<std::uint64_t, std::uint32_t>, AttemptFigures> figures_;
  double clock_s_ = 0;
  bool in_round_ = false;
  bool finished_ = false;
  Status job_;

  std::map<std::uint64_t, RoundRecord> records_;
  std::vector<std::string> lines_;
  std::uint64_t rounds_completed_ = 0, client_updates_ = 0;
};

}  // namespace federa
