// The built-in strategies and their command-line options.
//
//   po::options_description desc("federa-coordinator");
//   add_strategy_options(desc);                       // --strategy, --server-lr, --dp-... flags
//   auto vm = parse_options(argc, argv, desc);
//   Result<StrategyOptions> opts = strategy_options_from(*vm);
//   auto backend = make_backend(device, threads);     // coordinator/aggregation_backend.hpp
//   auto strategy = make_strategy(*opts, **backend);  // the backend must outlive the strategy
//
// Strategies (docs/references.md): fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad
// stream every update into one O(model) accumulator; median, trimmed-mean, krum, multi-krum keep
// every update of the round (needs_all_updates() is true). Central DP (clipping of each update's
// change, Gaussian noise, RDP accounting) wraps any of the streaming ones.
//
// RoundStats keys: "accepted", "rejected", "total_weight"; with DP also "dp_epsilon" (for
// dp_delta, all rounds so far), "dp_delta", "dp_clip_norm" (the norm used this round),
// "dp_next_clip_norm", "dp_noise_std" (of the averaged update), "dp_clipped_fraction";
// trimmed-mean adds "trimmed" (values dropped at each end); Krum adds "krum_selected" (how many
// updates were averaged) and "krum_first" (arrival index of the best-scored update).
//
// Errors from add_update name the client and the reason ("update from 'c7' rejected: update has
// non-finite values (NaN or Inf)"); the caller logs them and the round goes on without it.
// State for --resume (save_state/load_state): FedOpt moments / FedAvgM momentum, the DP clip
// norm and the RDP accountant's position, all exact (hex floats).
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategy.hpp"

namespace federa {

struct StrategyOptions {
  std::string strategy = "fedavg";
  // Server optimiser. Unset values take the strategy's default: fedavgm lr 1.0 momentum 0.9;
  // fedadam lr 0.1 tau 1e-9; fedyogi lr 0.01 tau 1e-3; fedadagrad lr 0.1 tau 1e-9 (Flower's).
  std::optional<double> server_lr;
  std::optional<double> server_momentum;
  double beta1 = 0.9;
  double beta2 = 0.99;
  std::optional<double> tau;
  double mu = 0.01;            // FedProx proximal term sent to clients
  double trim_beta = 0.1;      // trimmed mean drops floor(beta K) from each end, beta < 0.5
  unsigned krum_f = 1;         // assumed Byzantine clients; Krum needs K > 2f + 2
  unsigned krum_m = 0;         // Multi-Krum averages the m best; 0 = K - f
  double max_update_norm = 0;  // reject updates with a larger L2 norm; 0 = no bound

  // Central DP (DP-FedAvg). On when dp_noise_multiplier > 0 or dp_clip_norm > 0.
  double dp_noise_multiplier = 0.0;  // z: noise std = z x clip norm, on the sum
  double dp_clip_norm = 0.0;         // S for fixed clipping; initial S for adaptive (0 -> 0.1)
  bool dp_adaptive_clip = false;     // Andrew et al. 2021
  double dp_target_quantile = 0.5;
  double dp_clip_lr = 0.2;
  double dp_clip_count_stddev = 0.0;  // noise on the clipped count; 0 = cohort size / 20
  double dp_delta = 1e-5;
  double dp_sampling_rate =
      1.0;                    // q = cohort / population, for the accountant; 1 = no amplification
  std::uint64_t dp_seed = 0;  // 0 = fresh OS randomness each round (deployments); else repeatable

  bool dp_enabled() const {
    return dp_noise_multiplier > 0.0 || dp_clip_norm > 0.0 || dp_adaptive_clip;
  }
};

// The strategy names make_strategy accepts.
inline constexpr const char* kStrategyNames =
    "fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed-mean, krum, "
    "multi-krum";

void add_strategy_options(boost::program_options::options_description& desc);

// Reads the flags added above; checks ranges (e.g. trim-beta < 0.5, DP needs a noise multiplier
// with adaptive clipping) and returns an Error naming the flag.
Result<StrategyOptions> strategy_options_from(const boost::program_options::variables_map& vm);

// The backend must outlive the strategy. Errors name the unknown strategy or the bad combination
// (DP with a robust strategy).
Result<std::unique_ptr<Strategy>> make_strategy(const StrategyOptions& options,
                                                AggregationBackend& backend);

}  // namespace federa
