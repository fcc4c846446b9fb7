#include "coordinator/strategies.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "coordinator/dp.hpp"

namespace federa {

namespace po = boost::program_options;

namespace {

std::string hex(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

Result<double> parse_double(const std::string& text, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') return make_error(what + ": not a number: '" + text + "'");
  return v;
}

std::string reject_message(const ClientUpdate& u, const std::string& why) {
  return "update from '" + u.client_id + "' rejected: " + why;
}

// The checks every strategy makes before an update reaches the backend; a rejection is counted.
template <typename Count>
Status precheck(const ClientUpdate& u, bool began, const Status& setup, std::size_t n,
                Count& rejected) {
  if (!began) return make_error("add_update called before begin_round");
  if (!setup) return make_error("aggregation backend: " + setup.message());
  if (u.weights.size() != n) {
    ++rejected;
    return make_error(reject_message(u, "update has " + std::to_string(u.weights.size()) +
                                            " values, the model has " + std::to_string(n)));
  }
  if (u.num_examples == 0) {
    ++rejected;
    return make_error(reject_message(u, "num_examples is 0"));
  }
  return {};
}

// Copies a saved tensor into `dst`, or clears `dst` when the state has none.
void load_tensor(const StrategyState& s, const std::string& key, std::vector<float>& dst) {
  auto it = s.tensors.find(key);
  if (it == s.tensors.end())
    dst.clear();
  else
    dst = it->second;
}

// ---------------------------------------------------------------------------------------------
// FedAvg family: one O(model) accumulator, nothing kept per client.

class StreamingStrategy final : public Strategy {
 public:
  StreamingStrategy(std::string name, ServerStep step, const StrategyOptions& o,
                    AggregationBackend& backend)
      : name_(std::move(name)), step_(step), o_(o), backend_(backend), dp_(o.dp_enabled()) {
    clip_norm_ = o.dp_clip_norm > 0.0 ? o.dp_clip_norm : 0.1;
  }

  std::string name() const override { return dp_ ? "dp-" + name_ : name_; }
  void configure_fit(TrainConfig& config) const override {
    if (name_ == "fedprox") config.proximal_mu = static_cast<float>(o_.mu);
  }
  bool needs_all_updates() const override { return false; }
  // Clipping and norm bounds act on each client's update, which secure aggregation hides.
  bool supports_secure_aggregation() const override { return !dp_ && o_.max_update_norm <= 0.0; }
  bool measures_change() const override { return dp_ || o_.max_update_norm > 0.0; }

  Status begin_round(std::span<const float> global, std::uint64_t round) override {
    round_ = round;
    accepted_ = rejected_ = unclipped_ = 0;
    total_weight_ = 0.0;
    setup_ = Status{};
    n_ = global.size();
    if (!sum_ || sum_->size() != n_) {
      auto s = backend_.make_weighted_sum(n_);
      if (!s) {
        sum_.reset();
        setup_ = Status(s.error());
        return setup_;
      }
      sum_ = std::move(s.value());
    } else if (Status st = sum_->reset(); !st) {
      setup_ = st;
      return setup_;
    }
    if (pending_state_) {  // loaded before the model size was known
      setup_ = sum_->set_optimizer_state(pending_m_, pending_v_);
      pending_state_ = false;
      pending_m_.clear();
      pending_v_.clear();
      if (!setup_) return setup_;
    }
    // The round's starting point is needed for server optimisers, for DP (which clips changes)
    // and for --max-update-norm (which bounds changes); plain FedAvg keeps no copy.
    delta_mode_ = measures_change();
    if (delta_mode_ || step_.kind != step::kReplace)
      x_t_.assign(global.begin(), global.end());
    else
      x_t_.clear();
    began_ = true;
    return {};
  }

  Status add_update(const ClientUpdate& u) override {
    if (Status st = precheck(u, began_, setup_, n_, rejected_); !st) return st;
    AddOptions ao;
    ao.max_norm = o_.max_update_norm;
    if (delta_mode_) ao.reference = x_t_;
    if (dp_) ao.clip_norm = clip_norm_;
    ao.known = u.known;
    // DP-FedAvg weighs clients equally: with bounded weights the sensitivity stays S.
    const float w = dp_ ? 1.0f : static_cast<float>(u.num_examples);
    Result<AddReport> r = sum_->add(u.weights, w, ao);
    if (!r) {
      ++rejected_;
      return make_error(reject_message(u, r.error().message));
    }
    ++accepted_;
    total_weight_ += w;
    if (r->norm <= clip_norm_) ++unclipped_;
    return {};
  }

  Result<RoundStats> finish_round(std::span<float> global) override {
    if (!began_) return make_error("finish_round called before begin_round");
    if (!setup_) return make_error("aggregation backend: " + setup_.message());
    if (global.size() != n_) return make_error("finish_round: the model changed size in the round");
    if (accepted_ == 0)
      return make_error("no usable updates this round (" + std::to_string(rejected_) +
                        " rejected)");
    RoundStats stats;
    stats["accepted"] = static_cast<double>(accepted_);
    stats["rejected"] = static_cast<double>(rejected_);
    stats["total_weight"] = total_weight_;
    float scale = static_cast<float>(1.0 / total_weight_);
    if (dp_) {
      if (Status st = add_dp_noise(stats); !st) return st.error();
      scale = static_cast<float>(1.0 / static_cast<double>(accepted_));
    }
    // One pass on the backend: divide, add back the start (when the sum is of changes), step.
    if (Status st = sum_->finalize(x_t_, delta_mode_, scale, step_, global); !st) return st.error();
    began_ = false;
    return stats;
  }

  Result<StrategyState> save_state() const override {
    StrategyState s;
    s.values["strategy"] = name();
    std::vector<float> m = pending_m_, v = pending_v_;
    if (sum_ && !pending_state_) {
      if (Status st = sum_->optimizer_state(m, v); !st)
        return make_error(st.code(), "cannot read the server optimiser's moments: " + st.message());
    }
    if (!m.empty()) s.tensors["server_m"] = std::move(m);
    if (!v.empty()) s.tensors["server_v"] = std::move(v);
    if (dp_) {
      s.values["dp_clip_norm"] = hex(clip_norm_);
      s.values["dp_accountant"] = accountant_.serialize();
    }
    return s;
  }

  Status load_state(const StrategyState& s) override {
    if (auto it = s.values.find("strategy"); it != s.values.end() && it->second != name())
      return make_error("saved strategy state is for '" + it->second + "', this run uses '" +
                        name() + "'");
    std::vector<float> m, v;
    load_tensor(s, "server_m", m);
    load_tensor(s, "server_v", v);
    if (!m.empty() && !v.empty() && m.size() != v.size())
      return make_error("saved strategy state: optimiser moments differ in size");
    RdpAccountant acc;
    double clip = clip_norm_;
    if (dp_) {
      if (auto it = s.values.find("dp_accountant"); it != s.values.end())
        if (Status st = acc.deserialize(it->second); !st) return st;
      if (auto it = s.values.find("dp_clip_norm"); it != s.values.end()) {
        auto c = parse_double(it->second, "saved dp_clip_norm");
        if (!c) return c.error();
        clip = c.value();
      }
    }
    pending_m_ = std::move(m);
    pending_v_ = std::move(v);
    pending_state_ = true;
    accountant_ = acc;
    clip_norm_ = clip;
    return {};
  }

 private:
  // DP-FedAvg (McMahan et al. 2018): the sum of clipped changes gets N(0, (z S)^2) per coordinate
  // (added to the accumulator as one more, unweighted, "update"), and finalize divides by the
  // number of accepted updates. Adaptive clipping after Andrew et al. 2021.
  Status add_dp_noise(RoundStats& stats) {
    const double k = static_cast<double>(accepted_);
    const double z = o_.dp_noise_multiplier;
    double z_eff = z;
    double sigma_b = 0.0;
    if (o_.dp_adaptive_clip && z > 0.0) {
      sigma_b = o_.dp_clip_count_stddev > 0.0 ? o_.dp_clip_count_stddev : k / 20.0;
      // The count query spends part of the budget: z_eff^-2 = z^-2 - (2 sigma_b)^-2. With a small
      // cohort sigma_b would leave nothing, so it is raised to z (then z_eff = z / sqrt(3/4)).
      if (2.0 * sigma_b <= z) sigma_b = z;
      z_eff = 1.0 / std::sqrt(1.0 / (z * z) - 1.0 / (4.0 * sigma_b * sigma_b));
    }
    auto rng = o_.dp_seed != 0 ? GaussianNoise::from_seed(o_.dp_seed, round_)
                               : GaussianNoise::from_os_entropy();
    if (!rng) return rng.error();
    const double noise_std = z_eff * clip_norm_;
    if (noise_std > 0.0) {
      noise_.resize(n_);
      if (Status st = rng->fill(noise_, noise_std); !st) return st;
      Result<AddReport> r = sum_->add(noise_, 1.0f);
      if (!r) return r.error();
    }
    stats["dp_clip_norm"] = clip_norm_;
    stats["dp_noise_std"] = noise_std / k;
    stats["dp_clipped_fraction"] = 1.0 - unclipped_ / k;
    if (o_.dp_adaptive_clip) {
      double b = static_cast<double>(unclipped_);
      if (sigma_b > 0.0) {
        auto nb = rng->sample(sigma_b);
        if (!nb) return nb.error();
        b += nb.value();
      }
      clip_norm_ *= std::exp(-o_.dp_clip_lr * (b / k - o_.dp_target_quantile));
    }
    if (z > 0.0) accountant_.add_steps(o_.dp_sampling_rate, z, 1);
    stats["dp_epsilon"] =
        z > 0.0 ? accountant_.epsilon(o_.dp_delta) : std::numeric_limits<double>::infinity();
    stats["dp_delta"] = o_.dp_delta;
    stats["dp_next_clip_norm"] = clip_norm_;
    return {};
  }

  std::string name_;
  ServerStep step_;
  StrategyOptions o_;
  AggregationBackend& backend_;
  bool dp_;

  std::unique_ptr<WeightedSum> sum_;
  Status setup_;
  bool began_ = false;
  bool delta_mode_ = false;
  std::uint64_t round_ = 0;
  std::size_t n_ = 0;
  std::size_t accepted_ = 0, rejected_ = 0, unclipped_ = 0;
  double total_weight_ = 0.0;
  std::vector<float> x_t_, noise_;
  bool pending_state_ = false;
  std::vector<float> pending_m_, pending_v_;
  double clip_norm_ = 0.1;
  RdpAccountant accountant_;
};

// ---------------------------------------------------------------------------------------------
// Robust strategies: every update of the round is kept (on the backend's device).

enum class Robust { median, trimmed, krum, multi_krum };

class RobustStrategy final : public Strategy {
 public:
  RobustStrategy(std::string name, Robust kind, const StrategyOptions& o,
                 AggregationBackend& backend)
      : name_(std::move(name)), kind_(kind), o_(o), backend_(backend) {}

  std::string name() const override { return name_; }
  bool needs_all_updates() const override { return true; }
  bool measures_change() const override { return o_.max_update_norm > 0.0; }

  Status begin_round(std::span<const float> global, std::uint64_t round) override {
    rejected_ = 0;
    weights_.clear();
    setup_ = Status{};
    n_ = global.size();
    if (!set_ || set_->size() != n_) {
      auto s = backend_.make_update_set(n_);
      if (!s) {
        set_.reset();
        setup_ = Status(s.error());
        return setup_;
      }
      set_ = std::move(s.value());
    } else if (Status st = set_->clear(); !st) {
      setup_ = st;
      return setup_;
    }
    delta_mode_ = measures_change();
    if (delta_mode_)
      x_t_.assign(global.begin(), global.end());
    else
      x_t_.clear();
    began_ = true;
    return {};
  }

  Status add_update(const ClientUpdate& u) override {
    if (Status st = precheck(u, began_, setup_, n_, rejected_); !st) return st;
    AddOptions ao;
    ao.max_norm = o_.max_update_norm;
    // Median, trimmed mean and Krum commute with a shift, so a bounded change can be kept as the
    // change itself and the starting point added back at the end.
    if (delta_mode_) ao.reference = x_t_;
    ao.known = u.known;
    Result<AddReport> r = set_->push(u.weights, ao);
    if (!r) {
      ++rejected_;
      return make_error(reject_message(u, r.error().message));
    }
    weights_.push_back(static_cast<float>(u.num_examples));
    return {};
  }

  Result<RoundStats> finish_round(std::span<float> global) override {
    if (!began_) return make_error("finish_round called before begin_round");
    if (!setup_) return make_error("aggregation backend: " + setup_.message());
    if (global.size() != n_) return make_error("finish_round: the model changed size in the round");
    const std::size_t k = set_->count();
    if (k == 0)
      return make_error("no usable updates this round (" + std::to_string(rejected_) +
                        " rejected)");
    out_.resize(n_);
    RoundStats stats;
    stats["accepted"] = static_cast<double>(k);
    stats["rejected"] = static_cast<double>(rejected_);
    switch (kind_) {
      case Robust::median:
        if (Status st = set_->median(out_); !st) return st.error();
        break;
      case Robust::trimmed: {
        auto trim = static_cast<std::size_t>(std::floor(o_.trim_beta * static_cast<double>(k)));
        stats["trimmed"] = static_cast<double>(trim);
        if (Status st = set_->trimmed_mean(trim, out_); !st) return st.error();
        break;
      }
      case Robust::krum:
      case Robust::multi_krum: {
        auto chosen = krum_select(k);
        if (!chosen) return chosen.error();
        std::vector<float> w;
        for (std::size_t r : chosen.value()) w.push_back(weights_[r]);
        stats["krum_selected"] = static_cast<double>(chosen->size());
        stats["krum_first"] = static_cast<double>(chosen->front());
        if (Status st = set_->weighted_mean(chosen.value(), w, out_); !st) return st.error();
        break;
      }
    }
    if (delta_mode_)
      for (std::size_t i = 0; i < n_; ++i) out_[i] += x_t_[i];
    std::copy(out_.begin(), out_.end(), global.begin());
    began_ = false;
    return stats;
  }

 private:
  // Krum (Blanchard et al. 2017): score(i) = sum of squared distances to its k - f - 2 nearest
  // other updates; the lowest scores win. Returns the chosen rows, best first.
  Result<std::vector<std::size_t>> krum_select(std::size_t k) {
    const std::size_t f = o_.krum_f;
    if (k <= 2 * f + 2)
      return make_error("krum needs more than 2f + 2 = " + std::to_string(2 * f + 2) +
                        " updates, got " + std::to_string(k) + " (--krum-f " + std::to_string(f) +
                        ")");
    auto d = set_->pairwise_sq_distances();
    if (!d) return d.error();
    const std::size_t nearest = k - f - 2;
    std::vector<double> score(k), row;
    for (std::size_t i = 0; i < k; ++i) {
      row.clear();
      for (std::size_t j = 0; j < k; ++j)
        if (j != i) row.push_back((*d)[i * k + j]);
      std::partial_sort(row.begin(), row.begin() + nearest, row.end());
      score[i] = std::accumulate(row.begin(), row.begin() + nearest, 0.0);
    }
    std::vector<std::size_t> order(k);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](auto a, auto b) { return score[a] < score[b]; });
    std::size_t m = 1;
    if (kind_ == Robust::multi_krum)
      m = o_.krum_m > 0 ? std::min<std::size_t>(o_.krum_m, k) : k - f;
    order.resize(m);
    return order;
  }

  std::string name_;
  Robust kind_;
  StrategyOptions o_;
  AggregationBackend& backend_;
  std::unique_ptr<UpdateSet> set_;
  Status setup_;
  bool began_ = false;
  bool delta_mode_ = false;
  std::size_t n_ = 0, rejected_ = 0;
  std::vector<float> weights_, x_t_, out_;
};

bool is_robust(const std::string& s) {
  return s == "median" || s == "trimmed-mean" || s == "krum" || s == "multi-krum";
}

bool is_known(const std::string& s) {
  return is_robust(s) || s == "fedavg" || s == "fedavgm" || s == "fedprox" || s == "fedadam" ||
         s == "fedyogi" || s == "fedadagrad";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void add_strategy_options(po::options_description& desc) {
  po::options_description s("Aggregation strategy", 110);
  s.add_options()("strategy", po::value<std::string>()->default_value("fedavg"),
                  (std::string("how updates become the next model: ") + kStrategyNames).c_str())(
      "server-lr", po::value<double>(),
      "server learning rate eta (fedavgm default 1.0, fedadam 0.1, fedyogi 0.01, fedadagrad 0.1)")(
      "server-momentum", po::value<double>(), "fedavgm server momentum beta (default 0.9)")(
      "beta1", po::value<double>()->default_value(0.9),
      "fedadam/fedyogi/fedadagrad first-moment decay")(
      "beta2", po::value<double>()->default_value(0.99), "fedadam/fedyogi second-moment decay")(
      "tau", po::value<double>(),
      "fedadam/fedyogi/fedadagrad adaptivity tau (default 1e-9; fedyogi 1e-3)")(
      "mu", po::value<double>()->default_value(0.01), "fedprox proximal term mu, sent to clients")(
      "trim-beta", po::value<double>()->default_value(0.1),
      "trimmed-mean: drop floor(beta K) largest and smallest values per coordinate (beta < 0.5)")(
      "krum-f", po::value<unsigned>()->default_value(1),
      "krum/multi-krum: Byzantine clients tolerated (K > 2f + 2)")(
      "krum-m", po::value<unsigned>()->default_value(0),
      "multi-krum: updates averaged (0 = K - f)")(
      "max-update-norm", po::value<double>()->default_value(0.0),
      "reject an update whose change from the global model has a larger L2 norm (0 = no bound)")(
      "dp-noise-multiplier", po::value<double>()->default_value(0.0),
      "central DP: Gaussian noise std = multiplier x clip norm on the sum (0 = no noise)")(
      "dp-clip-norm", po::value<double>()->default_value(0.0),
      "central DP: clip each update's change to this L2 norm (initial value when adaptive; 0 = "
      "0.1)")("dp-adaptive-clip", po::bool_switch(),
              "central DP: adapt the clip norm to a quantile of update norms")(
      "dp-target-quantile", po::value<double>()->default_value(0.5),
      "adaptive clipping: target unclipped fraction")("dp-clip-lr",
                                                      po::value<double>()->default_value(0.2),
                                                      "adaptive clipping: geometric learning rate")(
      "dp-clip-count-stddev", po::value<double>()->default_value(0.0),
      "adaptive clipping: noise std on the unclipped count (0 = cohort / 20)")(
      "dp-delta", po::value<double>()->default_value(1e-5),
      "central DP: delta for the reported epsilon")(
      "dp-sampling-rate", po::value<double>()->default_value(1.0),
      "central DP: fraction of the population sampled per round, for the accountant (1 = no "
      "amplification)")(
      "dp-seed", po::value<std::uint64_t>()->default_value(0),
      "central DP: noise seed for repeatable runs (0 = fresh OS randomness; use 0 in deployments)");
  desc.add(s);
}

Result<StrategyOptions> strategy_options_from(const po::variables_map& vm) {
  StrategyOptions o;
  auto get = [&](const char* key, auto& dst) {
    if (vm.count(key)) dst = vm[key].as<std::remove_reference_t<decltype(dst)>>();
  };
  auto get_opt = [&](const char* key, std::optional<double>& dst) {
    if (vm.count(key)) dst = vm[key].as<double>();
  };
  get("strategy", o.strategy);
  get_opt("server-lr", o.server_lr);
  get_opt("server-momentum", o.server_momentum);
  get("beta1", o.beta1);
  get("beta2", o.beta2);
  get_opt("tau", o.tau);
  get("mu", o.mu);
  get("trim-beta", o.trim_beta);
  get("krum-f", o.krum_f);
  get("krum-m", o.krum_m);
  get("max-update-norm", o.max_update_norm);
  get("dp-noise-multiplier", o.dp_noise_multiplier);
  get("dp-clip-norm", o.dp_clip_norm);
  get("dp-adaptive-clip", o.dp_adaptive_clip);
  get("dp-target-quantile", o.dp_target_quantile);
  get("dp-clip-lr", o.dp_clip_lr);
  get("dp-clip-count-stddev", o.dp_clip_count_stddev);
  get("dp-delta", o.dp_delta);
  get("dp-sampling-rate", o.dp_sampling_rate);
  get("dp-seed", o.dp_seed);

  if (!is_known(o.strategy))
    return make_error("--strategy: unknown '" + o.strategy + "' (one of " + kStrategyNames + ")");
  auto in = [](double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; };
  if (o.server_lr && !(*o.server_lr > 0.0 && std::isfinite(*o.server_lr)))
    return make_error("--server-lr must be > 0");
  if (o.server_momentum && !in(*o.server_momentum, 0.0, 1.0))
    return make_error("--server-momentum must be in [0, 1]");
  if (!in(o.beta1, 0.0, 1.0) || o.beta1 == 1.0) return make_error("--beta1 must be in [0, 1)");
  if (!in(o.beta2, 0.0, 1.0) || o.beta2 == 1.0) return make_error("--beta2 must be in [0, 1)");
  if (o.tau && !(*o.tau > 0.0)) return make_error("--tau must be > 0");
  if (!in(o.mu, 0.0, 1e6)) return make_error("--mu must be >= 0");
  if (!in(o.trim_beta, 0.0, 0.5) || o.trim_beta == 0.5)
    return make_error("--trim-beta must be in [0, 0.5)");
  if (!in(o.max_update_norm, 0.0, 1e300)) return make_error("--max-update-norm must be >= 0");
  if (!in(o.dp_noise_multiplier, 0.0, 1e6)) return make_error("--dp-noise-multiplier must be >= 0");
  if (!in(o.dp_clip_norm, 0.0, 1e300)) return make_error("--dp-clip-norm must be >= 0");
  if (!in(o.dp_target_quantile, 0.0, 1.0))
    return make_error("--dp-target-quantile must be in [0, 1]");
  if (!in(o.dp_clip_lr, 0.0, 1e3)) return make_error("--dp-clip-lr must be >= 0");
  if (!in(o.dp_clip_count_stddev, 0.0, 1e9))
    return make_error("--dp-clip-count-stddev must be >= 0");
  if (!(o.dp_delta > 0.0 && o.dp_delta < 1.0)) return make_error("--dp-delta must be in (0, 1)");
  if (!(o.dp_sampling_rate > 0.0 && o.dp_sampling_rate <= 1.0))
    return make_error("--dp-sampling-rate must be in (0, 1]");
  if (o.dp_noise_multiplier > 0.0 && o.dp_clip_norm == 0.0 && !o.dp_adaptive_clip)
    return make_error(
        "--dp-noise-multiplier needs --dp-clip-norm (or --dp-adaptive-clip): noise is scaled to "
        "the clip norm");
  if (o.dp_enabled() && is_robust(o.strategy))
    return make_error("central DP wraps the FedAvg family only, not --strategy " + o.strategy);
  return o;
}

Result<std::unique_ptr<Strategy>> make_strategy(const StrategyOptions& o,
                                                AggregationBackend& backend) {
  const std::string& s = o.strategy;
  if (o.dp_enabled() && is_robust(s))
    return make_error("central DP wraps the FedAvg family only, not --strategy " + s);
  auto streaming = [&](int kind, double lr, double momentum, double tau) {
    ServerStep step;
    step.kind = kind;
    step.lr = o.server_lr.value_or(lr);
    step.momentum = o.server_momentum.value_or(momentum);
    step.beta1 = o.beta1;
    step.beta2 = o.beta2;
    step.tau = o.tau.value_or(tau);
    return Result<std::unique_ptr<Strategy>>(
        std::unique_ptr<Strategy>(std::make_unique<StreamingStrategy>(s, step, o, backend)));
  };
  auto robust = [&](Robust kind) {
    return Result<std::unique_ptr<Strategy>>(
        std::unique_ptr<Strategy>(std::make_unique<RobustStrategy>(s, kind, o, backend)));
  };
  if (s == "fedavg" || s == "fedprox") return streaming(step::kReplace, 1.0, 0.0, 1e-9);
  if (s == "fedavgm") return streaming(step::kMomentum, 1.0, 0.9, 1e-9);
  if (s == "fedadam") return streaming(step::kAdam, 0.1, 0.0, 1e-9);
  if (s == "fedyogi") return streaming(step::kYogi, 0.01, 0.0, 1e-3);
  if (s == "fedadagrad") return streaming(step::kAdagrad, 0.1, 0.0, 1e-9);
  if (s == "median") return robust(Robust::median);
  if (s == "trimmed-mean") return robust(Robust::trimmed);
  if (s == "krum") return robust(Robust::krum);
  if (s == "multi-krum") return robust(Robust::multi_krum);
  return make_error("unknown strategy '" + s + "' (one of " + kStrategyNames + ")");
}

}  // namespace federa
