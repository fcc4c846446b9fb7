// The simulated clock: per-client latency models, and each selected client's fate in one round
// attempt (trains, drops out, or misses the deadline), drawn from (seed, round, attempt, client)
// alone so that thread and rank counts change nothing. Nothing sleeps: latencies only decide who
// makes the deadline and how long the round lasted on the simulated clock.
//
//   auto m = parse_latency("lognormal:10,1");              // seconds
//   ClientFate f = draw_fate({seed, 0.1, *m, 8.0}, round, attempt, client);
//   if (f.outcome == ClientFate::Outcome::train) ...       // f.latency_s on the simulated clock
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace federa {

// Per-client latency on the simulated clock, in seconds, drawn once per round.
//   none | constant:S | uniform:LO,HI | exponential:MEAN | lognormal:MEAN,SIGMA
// (lognormal: MEAN is the mean latency, SIGMA the standard deviation of its logarithm).
struct LatencyModel {
  enum class Kind { none, constant, uniform, exponential, lognormal };
  Kind kind = Kind::none;
  double a = 0, b = 0;
  double sample(std::mt19937_64& rng) const;
};
Result<LatencyModel> parse_latency(std::string_view spec);

struct ClockOptions {
  std::uint64_t seed = 1;
  double dropout = 0.0;  // probability that a selected client drops out of a round
  LatencyModel latency;
  double round_timeout_s = 0.0;  // 0 = no deadline
};

struct ClientFate {
  enum class Outcome { train, dropped_out, missed_deadline };
  Outcome outcome = Outcome::train;
  double latency_s = 0;
  // The Error a client that does not train reports (empty when it trains).
  std::string reason(const ClockOptions& clock) const;
};
ClientFate draw_fate(const ClockOptions& clock, std::uint64_t round, std::uint32_t attempt,
                     std::size_t client);

// One round attempt on the simulated clock, as the metrics line reports it.
struct AttemptFigures {
  std::size_t dropped_out = 0, missed_deadline = 0, train_failed = 0;
  double round_s = 0;  // the slowest client that made it, or the deadline when one missed it
  double clock_s = 0;  // the simulated clock when the attempt ended (all attempts so far)
  void count(const ClientFate& fate, const ClockOptions& clock);
  // The fields federa-sim adds to the coordinator's metrics line.
  std::map<std::string, double> metrics() const;
};

}  // namespace federa
