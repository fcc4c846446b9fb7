// Federated evaluation: clients evaluate the global model on their own held-out data, and the
// coordinator combines their answers (weighted by examples) into the federation's figures. This
// header holds what the orchestrator's evaluation phase (coordinator/orchestrator_evaluate.cpp)
// needs apart from its own state: the options, the combination, --keep-best's rule and the
// --client-metrics-out writer.
//
//   FederatedEvaluation f = combine_evaluations(round, selected, answers, /*min_clients=*/2);
//   f.loss   // sum(n_i * loss_i) / sum(n_i) over answers with n_i > 0, when 2 or more
//   auto rule = parse_keep_best("fed_accuracy");        // higher is better ("loss": lower)
//   if (rule->better(0.91, best)) ...
//   ClientMetricsWriter per_client;  per_client.open(path, committed_round);
//   orchestrator.add_observer(&per_client);            // JSON lines, private clients left out
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "coordinator/events.hpp"
#include "coordinator/state_store.hpp"

namespace federa {

struct EvaluationOptions {
  // Evaluate after every Nth round and after the last one; 0 = never. Only clients that announced
  // they evaluate (Hello.evaluates: a built-in client with --test-fraction > 0, an external
  // trainer) are asked; with none connected there is no federated evaluation.
  std::uint64_t every = 1;
  double fraction = 1.0;        // share of the evaluating clients asked (at least min_clients)
  std::size_t min_clients = 1;  // answers with held-out data needed for the federation's figures
  std::chrono::milliseconds timeout{0};  // how long an evaluation waits; 0 = the round timeout
  bool only = false;      // --evaluate-only: evaluate the starting model once, train nothing
  std::string keep_best;  // "" or a metrics-line key (see parse_keep_best)
};

// An evaluation in progress, as the orchestrator tracks it under its state lock: every selected
// client's answer (dropped, "no answer", until it comes) and who is still to answer.
struct EvaluationRound {
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;
  std::map<std::string, ClientEvaluation> answers;
  std::set<std::string> pending;
};

// `answers`: every selected client's ClientEvaluation, private values included (they count in
// the means; min and max skip them). The result's per_client is sorted and scrubbed of private
// values.
FederatedEvaluation combine_evaluations(std::uint64_t round, std::size_t selected,
                                        std::vector<ClientEvaluation> answers,
                                        std::size_t min_clients);

// --keep-best METRIC: a key of the metrics line ("fed_accuracy", "fed_loss", "accuracy", a
// strategy's figure), optionally "min:KEY" or "max:KEY"; without a prefix a key containing
// "loss" is minimised and any other maximised.
struct KeepBestRule {
  std::string key;
  bool lower_is_better = false;
  bool better(double candidate, std::optional<double> best) const {
    return !best || (lower_is_better ? candidate < *best : candidate > *best);
  }
};
Result<KeepBestRule> parse_keep_best(const std::string& text);
// The value of `key` in a metrics line, if it is a number there.
std::optional<double> metrics_line_value(const std::string& line, const std::string& key);

// One selected client and round per line of --client-metrics-out:
//   {"round":3,"client":"site-a","outcome":"accepted","num_examples":200,"loss":0.41,
//    "accuracy":0.87,...its other metrics}
// (rejected and dropped clients with a "reason"); clients that asked for privacy are left out.
class ClientMetricsWriter : public OrchestratorObserver {
 public:
  // As MetricsLog::open: on --resume, lines of rounds after the committed one are dropped. An
  // empty path writes nothing.
  Status open(const std::filesystem::path& path, std::uint64_t committed_round);
  void on_round_committed(const RoundReport& report) override;
  static std::vector<std::string> lines_for(const FederatedEvaluation& evaluation);

 private:
  MetricsLog log_;
  std::mutex mu_;
};

}  // namespace federa
