// A job of the orchestrator with scripted members over fake links, for the attack suites
// (test_attacks.cpp, test_secure_attacks.cpp).
//
//   Run r(options(3, 2));                                   // 3 rounds, --min-clients 2
//   REQUIRE(r.run({honest("a", 1), {"evil", Attack::poison}}));
//   auto o = r.outcome(0, "evil");                          // its fate in round 1
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"
#include "tests/coordinator/fake_clients.hpp"

namespace federa::testing {

using namespace std::chrono_literals;

inline const ModelLayout kAttackLayout{{{"w", {30}}, {"b", {10}}}};

struct Run {
  std::unique_ptr<AggregationBackend> backend;
  EventLog events;
  std::unique_ptr<Orchestrator> orch;
  std::unique_ptr<FakeFederation> fed;
  Status result;

  explicit Run(OrchestratorOptions o, ModelLayout layout = kAttackLayout, StrategyOptions so = {}) {
    auto b = make_backend("cpu", 1);
    REQUIRE(b);
    backend = std::move(*b);
    auto s = make_strategy(so, *backend);
    REQUIRE(s);
    Model global(std::move(layout));
    for (std::size_t i = 0; i < global.data.size(); ++i)
      global.data[i] = 0.1f * float(i % 7) - 0.3f;
    if (o.train.model.empty() || o.train.model == "mlp:784,128,10") o.train.model = "test";
    o.backend = backend.get();
    orch = std::make_unique<Orchestrator>(o, std::move(*s), std::move(global), std::nullopt,
                                          std::nullopt);
    orch->add_observer(&events);
    fed = std::make_unique<FakeFederation>(*orch);
  }
  // Adds the members in order, runs the job to its end and stops the members.
  Status run(const std::vector<MemberSpec>& members) {
    for (const auto& m : members) (void)fed->add(m);
    fed->start();
    result = orch->run();
    fed->stop();
    return result;
  }
  ~Run() {
    orch->stop();
    fed->stop();
  }
  // The outcome of `id` in the `report`-th committed round, if it was selected.
  std::optional<ClientOutcome> outcome(std::size_t report, const std::string& id) const {
    auto reports = events.reports();
    if (report >= reports.size()) return std::nullopt;
    for (const auto& c : reports[report].clients)
      if (c.client == id) return c;
    return std::nullopt;
  }
};

inline OrchestratorOptions options(std::uint64_t rounds, std::size_t min_clients) {
  OrchestratorOptions o;
  o.rounds = rounds;
  o.min_clients = min_clients;
  o.round_timeout = 20s;
  o.round_retries = 2;
  o.chunk_elements = 16;
  return o;
}

inline MemberSpec honest(std::string id, std::uint32_t seed, std::uint64_t examples = 100) {
  MemberOptions m;
  m.seed = seed;
  m.examples = examples;
  return MemberSpec{std::move(id), Attack::honest, m};
}

inline bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

}  // namespace federa::testing
