// What the orchestrator tells the world: one observer interface for everything that happens in
// a federation. The metrics writer, the console printer, the simulator and the admin API all
// consume these events instead of parsing logs or reaching into the orchestrator.
//
//   class Printer : public OrchestratorObserver {
//     void on_round_committed(const RoundReport& r) override { std::puts(r.metrics_line.c_str()); }
//   };
//   Printer p;
//   orchestrator.add_observer(&p);        // before run(); the observer must outlive it
//
// Delivery: events arrive in the order they happened, one at a time (never two callbacks at
// once), on whichever orchestrator or I/O thread produced them, and never while the
// orchestrator holds its state lock: an observer may call the orchestrator's const getters.
// Callbacks must be quick and must not block on the orchestrator's own progress (queue work
// elsewhere instead).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/task_kind.hpp"

namespace federa {

// The fate of one selected client's answer in one round attempt.
enum class UpdateOutcome {
  accepted,  // validated and aggregated (or, under secure aggregation, included in the sum)
  rejected,  // arrived but failed a check (layout, size, finite values, norm, protocol)
  dropped,   // never arrived: disconnected, reported an error, or missed the deadline
};
std::string_view outcome_name(UpdateOutcome outcome);

struct ClientOutcome {
  std::string client;
  UpdateOutcome outcome = UpdateOutcome::dropped;
  std::string reason;                     // empty when accepted
  std::uint64_t num_examples = 0;         // as announced with the update
  std::map<std::string, double> metrics;  // the client's own figures (train_loss, ...)
};

// One selected client's answer to an evaluate task (federated evaluation).
struct ClientEvaluation {
  std::string client;
  UpdateOutcome outcome = UpdateOutcome::dropped;  // accepted: it answered; rejected: a bad answer
  std::string reason;                              // empty when accepted
  // The client asked to keep its own values out of logs and files: in a report the fields below
  // are empty (its values count in the federation's means only).
  bool keep_private = false;
  std::uint64_t num_examples = 0;  // 0: no held-out data
  std::optional<double> loss{}, accuracy{};
  std::map<std::string, double> metrics{};
};

// The federation's figures for one evaluation. Means are weighted by num_examples over the
// clients that answered with held-out examples (`clients` of them), and reported only when
// `clients` reaches --min-evaluate-clients (and, when one private client is all there is, not at
// all: the mean would be its value). Min and max range over the clients that did not ask for
// privacy.
struct FederatedEvaluation {
  std::uint64_t round = 0;
  std::size_t selected = 0;
  std::size_t clients = 0;
  std::optional<double> loss, accuracy, loss_min, loss_max, accuracy_min, accuracy_max;
  std::map<std::string, double> metrics;     // weighted means of the clients' other figures
  std::vector<ClientEvaluation> per_client;  // sorted by client; private ones without values
};

struct ClientJoined {
  std::string client;
  std::string address;  // peer address as the transport knows it ("" in process)
  std::uint64_t num_train_examples = 0;
  std::string software;  // as the client announced it
};

struct ClientLeft {
  std::string client;
  std::string reason;
};

struct ClientRefused {
  std::string client;  // the authenticated name (certificate CN); may be empty
  std::string address;
  Error reason;
};

struct RoundStarted {
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;  // 1 for the first try, 2 for the first retry, ...
  TaskKind kind = TaskKind::fit;
  std::vector<std::string> selected;  // sorted; every task has been queued to them
  std::size_t connected = 0;          // ready clients when the cohort was drawn
  bool secure = false;                // SecAgg+ round
  std::chrono::system_clock::time_point deadline;
};

struct UpdateEvent {
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;
  ClientOutcome outcome;
};

// A round attempt that did not commit; `will_retry` says whether the round is tried again.
struct RoundFailed {
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;
  Error reason;
  bool will_retry = false;
  std::size_t selected = 0, accepted = 0, rejected = 0, dropped = 0;
};

// The table statistics were computed (before round 1, or again on an operator's request): the
// global means and standard deviations every task carries from round `before_round` on.
struct StatisticsComputed {
  std::uint64_t before_round = 1;
  std::size_t sites = 0;  // sites whose figures are in the sums
  std::uint64_t rows = 0;
  bool secure = false;     // summed with SecAgg+
  bool requested = false;  // run again on request (Orchestrator::request_statistics)
};

// Everything one committed round's metrics line holds, structured.
struct RoundReport {
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;
  std::size_t selected = 0, accepted = 0, rejected = 0, dropped = 0;
  std::optional<double> loss{};      // centralised evaluation loss, else the weighted train loss
  std::optional<double> accuracy{};  // centralised evaluation accuracy
  std::optional<double> rmse{}, mae{}, r2{};  // centralised evaluation of a regression model
  std::optional<double> train_loss{};         // weighted by num_examples over accepted updates
  double duration_ms = 0;
  std::string strategy{};
  std::map<std::string, double> stats{};  // the strategy's own figures (dp_epsilon, ...)
  std::vector<ClientOutcome> clients{};   // per selected client, sorted by name
  std::string metrics_line{};             // the JSON line committed with the round
  // Federated evaluation of this round's model, when one ran (fed_* fields of the line).
  std::optional<FederatedEvaluation> evaluation{};
};

// The JSON line of --metrics-out for `report`, with `extra` fields appended (a simulator's
// simulated-clock figures, say). Keys that are not plain identifiers are left out; the report's
// own fields win over an extra of the same name.
std::string format_metrics_line(const RoundReport& report,
                                const std::map<std::string, double>& extra = {});

class OrchestratorObserver {
 public:
  virtual ~OrchestratorObserver() = default;
  virtual void on_client_joined(const ClientJoined&) {}
  virtual void on_client_left(const ClientLeft&) {}
  virtual void on_client_refused(const ClientRefused&) {}
  virtual void on_round_started(const RoundStarted&) {}
  virtual void on_update(const UpdateEvent&) {}
  virtual void on_round_failed(const RoundFailed&) {}
  virtual void on_round_committed(const RoundReport&) {}
  virtual void on_statistics(const StatisticsComputed&) {}
  // The job ended: all rounds committed (ok), failed beyond retries, or was stopped (cancelled).
  virtual void on_job_finished(const Status&) {}
};

}  // namespace federa
