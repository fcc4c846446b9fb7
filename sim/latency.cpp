#include "sim/latency.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "common/seeds.hpp"

namespace federa {

namespace {

// [0, 1) from 53 random bits: the same on every standard library, unlike <random>'s
// distributions, so a seed means the same draws wherever the binary was built.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

double standard_normal(std::mt19937_64& rng) {
  double u1 = uniform01(rng), u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * M_PI * u2);
}

Result<std::vector<double>> parse_numbers(const std::string& spec, const std::string& list) {
  std::vector<double> args;
  std::size_t at = 0;
  while (at <= list.size()) {
    auto comma = list.find(',', at);
    std::string item = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(v) || v < 0)
      return Error{ErrorCode::invalid_argument,
                   "--straggler '" + spec + "': '" + item + "' is not a non-negative number"};
    args.push_back(v);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return args;
}

}  // namespace

double LatencyModel::sample(std::mt19937_64& rng) const {
  switch (kind) {
    case Kind::none:
      return 0.0;
    case Kind::constant:
      return a;
    case Kind::uniform:
      return a + (b - a) * uniform01(rng);
    case Kind::exponential:
      return -a * std::log1p(-uniform01(rng));
    case Kind::lognormal: {
      const double mu = std::log(a) - 0.5 * b * b;  // so that the mean is a
      return std::exp(mu + b * standard_normal(rng));
    }
  }
  return 0.0;
}

Result<LatencyModel> parse_latency(std::string_view spec) {
  const std::string s(spec);
  const auto colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  std::vector<double> args;
  if (colon != std::string::npos) {
    auto parsed = parse_numbers(s, s.substr(colon + 1));
    if (!parsed) return parsed.error();
    args = std::move(*parsed);
  }
  struct Form {
    const char* name;
    LatencyModel::Kind kind;
    std::size_t args;
    const char* usage;
  };
  static const Form forms[] = {
      {"none", LatencyModel::Kind::none, 0, "none"},
      {"constant", LatencyModel::Kind::constant, 1, "constant:SECONDS"},
      {"uniform", LatencyModel::Kind::uniform, 2, "uniform:LO,HI"},
      {"exponential", LatencyModel::Kind::exponential, 1, "exponential:MEAN"},
      {"lognormal", LatencyModel::Kind::lognormal, 2, "lognormal:MEAN,SIGMA"},
  };
  auto form = std::find_if(std::begin(forms), std::end(forms),
                           [&](const Form& f) { return kind == f.name; });
  if (form == std::end(forms))
    return Error{ErrorCode::invalid_argument,
                 "--straggler '" + s +
                     "': expected none, constant:S, uniform:LO,HI, exponential:MEAN or "
                     "lognormal:MEAN,SIGMA"};
  if (args.size() != form->args)
    return Error{ErrorCode::invalid_argument, "--straggler '" + s + "': expected " + form->usage};
  LatencyModel m;
  m.kind = form->kind;
  if (!args.empty()) m.a = args[0];
  if (args.size() > 1) m.b = args[1];
  if (m.kind == LatencyModel::Kind::uniform && m.b < m.a)
    return Error{ErrorCode::invalid_argument, "--straggler uniform:LO,HI needs LO <= HI"};
  if (m.kind == LatencyModel::Kind::lognormal && !(m.a > 0))
    return Error{ErrorCode::invalid_argument, "--straggler lognormal:MEAN,SIGMA needs MEAN > 0"};
  return m;
}

ClientFate draw_fate(const ClockOptions& clock, std::uint64_t round, std::uint32_t attempt,
                     std::size_t client) {
  std::mt19937_64 rng(mix_seeds(mix_seeds(mix_seeds(clock.seed, round), attempt), client + 1));
  const double u = uniform01(rng);
  ClientFate f;
  f.latency_s = clock.latency.sample(rng);
  if (u < clock.dropout)
    f.outcome = ClientFate::Outcome::dropped_out;
  else if (clock.round_timeout_s > 0 && f.latency_s > clock.round_timeout_s)
    f.outcome = ClientFate::Outcome::missed_deadline;
  return f;
}

std::string ClientFate::reason(const ClockOptions& clock) const {
  switch (outcome) {
    case Outcome::train:
      return {};
    case Outcome::dropped_out:
      return "dropped out (simulated)";
    case Outcome::missed_deadline:
      return "missed the " + std::to_string(clock.round_timeout_s) +
             " s deadline on the simulated clock";
  }
  return {};
}

void AttemptFigures::count(const ClientFate& fate, const ClockOptions& clock) {
  switch (fate.outcome) {
    case ClientFate::Outcome::train:
      if (missed_deadline == 0) round_s = std::max(round_s, fate.latency_s);
      break;
    case ClientFate::Outcome::dropped_out:
      ++dropped_out;
      break;
    case ClientFate::Outcome::missed_deadline:
      ++missed_deadline;
      round_s = clock.round_timeout_s;
      break;
  }
}

std::map<std::string, double> AttemptFigures::metrics() const {
  return {{"dropped_out", double(dropped_out)},
          {"missed_deadline", double(missed_deadline)},
          {"train_failed", double(train_failed)},
          {"sim_round_s", round_s},
          {"sim_clock_s", clock_s}};
}

}  // namespace federa
