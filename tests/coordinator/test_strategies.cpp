// Strategies and aggregation backends against reference computations on small inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cpu_backend.hpp"
#include "coordinator/dp.hpp"
#include "coordinator/strategies.hpp"

using namespace federa;

namespace {

std::unique_ptr<AggregationBackend> cpu(unsigned threads = 2) {
  auto b = make_backend("cpu", threads);
  REQUIRE(b.ok());
  return std::move(b.value());
}

std::unique_ptr<Strategy> strategy(const StrategyOptions& o, AggregationBackend& b) {
  auto s = make_strategy(o, b);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  return std::move(s.value());
}

StrategyOptions opts(const std::string& name) {
  StrategyOptions o;
  o.strategy = name;
  return o;
}

std::vector<float> random_vec(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Runs one round; returns the new global model (REQUIREs success).
std::vector<float> run_round(Strategy& s, std::vector<float> global,
                             const std::vector<std::vector<float>>& updates,
                             const std::vector<std::uint64_t>& n, std::uint64_t round = 1,
                             RoundStats* stats = nullptr) {
  s.begin_round(global, round);
  for (std::size_t k = 0; k < updates.size(); ++k) {
    Status st = s.add_update({"c" + std::to_string(k), n[k], updates[k]});
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  auto r = s.finish_round(global);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  if (stats) *stats = r.value();
  return global;
}

}  // namespace

TEST_CASE("registry: cpu, auto and unknown devices") {
  auto b = make_backend("cpu", 2);
  REQUIRE(b.ok());
  CHECK(b.value()->name() == "cpu");
  auto a = make_backend("auto", 1);
  REQUIRE(a.ok());
  CHECK((a.value()->name() == "cpu" || a.value()->name() == "cuda"));
  if (!cuda_backend_available()) {
    CHECK(a.value()->name() == "cpu");
    auto c = make_backend("cuda", 1);
    CHECK_FALSE(c.ok());
    if (!c.ok()) CHECK(c.error().message.find("cuda") != std::string::npos);
  }
  CHECK_FALSE(make_backend("tpu", 1).ok());
}

TEST_CASE("cpu weighted sum: fused accumulate matches a double reference, threads 1..3") {
  std::mt19937 rng(1);
  const std::size_t n = 100003;  // odd size, above the serial threshold
  std::vector<std::vector<float>> xs;
  std::vector<float> w = {3, 1, 7, 2.5f};
  for (std::size_t k = 0; k < w.size(); ++k) xs.push_back(random_vec(n, rng));
  for (unsigned threads : {1u, 2u, 3u}) {
    auto b = cpu(threads);
    auto sum = b->make_weighted_sum(n);
    REQUIRE(sum.ok());
    for (std::size_t k = 0; k < w.size(); ++k) {
      auto r = sum.value()->add(xs[k], w[k]);
      REQUIRE(r.ok());
      double ref = 0;
      for (float v : xs[k]) ref += double(v) * v;
      CHECK(r->norm == doctest::Approx(std::sqrt(ref)).epsilon(1e-9));
    }
    std::vector<float> out(n);
    REQUIRE(sum.value()->read(out, 0.5f).ok());
    double max_err = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double ref = 0;
      for (std::size_t k = 0; k < w.size(); ++k) ref += double(w[k]) * xs[k][i];
      max_err = std::max(max_err, std::abs(ref * 0.5 - out[i]));
    }
    CHECK(max_err < 1e-5);
  }
}

TEST_CASE("fedavg: weighted average by num_examples") {
  auto b = cpu();
  auto s = strategy(opts("fedavg"), *b);
  CHECK(s->name() == "fedavg");
  CHECK_FALSE(s->needs_all_updates());
  std::vector<float> global = {0, 0, 0};
  auto out = run_round(*s, global, {{1, 2, 3}, {4, 5, 6}, {-1, 0, 1}}, {1, 2, 1});
  // (1*[1,2,3] + 2*[4,5,6] + 1*[-1,0,1]) / 4
  CHECK(out[0] == doctest::Approx(2.0));
  CHECK(out[1] == doctest::Approx(3.0));
  CHECK(out[2] == doctest::Approx(4.0));
}
