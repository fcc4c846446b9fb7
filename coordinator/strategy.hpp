// The Strategy seam: how a round's accepted updates become the next global model.
//
//   auto backend = make_backend("auto", threads);          // coordinator/aggregation_backend.hpp
//   auto strategy = make_strategy(options, *backend);      // coordinator/strategies.hpp
//   strategy->begin_round(global, round);
//   for (each accepted update) strategy->add_update({client, n, weights});
//   Result<RoundStats> s = strategy->finish_round(global);  // global now holds the new model
//
// Streaming strategies (FedAvg family) fold each update into an O(model) accumulator and keep
// nothing; strategies that need every update (median, trimmed mean, Krum) keep them and say so
// through needs_all_updates().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/train_config.hpp"
#include "common/update_facts.hpp"

namespace federa {

struct ClientUpdate {
  ClientUpdate() = default;
  ClientUpdate(std::string id, std::uint64_t n, std::span<const float> w, UpdateFacts facts = {})
      : client_id(std::move(id)), num_examples(n), weights(w), known(facts) {}

  std::string client_id;
  std::uint64_t num_examples = 0;
  std::span<const float> weights;  // the client's new local model (not a delta)
  // What the receive path measured while the update arrived (ChunkAssembler::facts(), with the
  // round's global model as reference): lets the backend fold it in with one pass. Empty = the
  // backend validates first.
  UpdateFacts known;
};

// Extra per-round figures a strategy reports (e.g. "dp_epsilon", "clip_norm", "rejected").
using RoundStats = std::map<std::string, double>;

// Everything a strategy must carry across a coordinator restart (--resume).
struct StrategyState {
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::string> values;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Client-side knobs this strategy needs in the task (FedProx sets proximal_mu).
  virtual void configure_fit(TrainConfig& config) const {}
  // True when every update must be held at once (median, trimmed mean, Krum).
  virtual bool needs_all_updates() const = 0;
  // Prepares a round from the global model. Fails when the backend cannot hold the round (out
  // of device memory, a restored optimiser state of another size); add_update then refuses too.
  virtual Status begin_round(std::span<const float> global, std::uint64_t round) = 0;
  // Validates (finite values, norm bound when set) and folds in or keeps the update. A rejected
  // update returns an Error naming the reason and leaves the round as it was.
  virtual Status add_update(const ClientUpdate& update) = 0;
  // Writes the next global model into `global`. Fails (and leaves `global` alone) when the round
  // has no usable updates.
  virtual Result<RoundStats> finish_round(std::span<float> global) = 0;
  // Secure aggregation hands the strategy only the cohort's weighted mean (as one update whose
  // num_examples is the cohort's total weight), never an individual update. Strategies whose
  // rule is a function of that mean (the FedAvg family) take it as one update; strategies that
  // need each update (median, trimmed mean, Krum) or clip each one (central DP) cannot run
  // under secure aggregation and say so here, so the coordinator refuses the configuration.
  virtual bool supports_secure_aggregation() const { return !needs_all_updates(); }
  // True when the strategy bounds or clips each update's change from the round's global model
  // (--max-update-norm, central DP): the receive path should then measure |x - global| too,
  // passing the global model to ChunkAssembler::begin as its reference.
  virtual bool measures_change() const { return false; }
  virtual Status add_cohort_mean(const ClientUpdate& mean, std::size_t clients) {
    return add_update(mean);
  }
  // What --resume needs to continue the strategy (optimiser moments, DP accounting); fails when
  // the backend cannot hand its state back.
  virtual Result<StrategyState> save_state() const { return StrategyState{}; }
  virtual Status load_state(const StrategyState& state) { return {}; }
};

}  // namespace federa
