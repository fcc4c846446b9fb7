// Every backend operation on the CPU and on CUDA, compared (test-backend-ops style). Without a
// GPU (or without a CUDA build) each case reports "skipped: no GPU" and passes.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategies.hpp"

using namespace federa;

namespace {

struct Pair {
  std::unique_ptr<AggregationBackend> cpu, gpu;
};

bool backends(Pair& p) {
  if (!cuda_backend_available()) {
    MESSAGE("skipped: no GPU");
    return false;
  }
  auto c = make_backend("cpu", 2);
  auto g = make_backend("cuda", 2);
  REQUIRE(c.ok());
  REQUIRE_MESSAGE(g.ok(), (g.ok() ? "" : g.error().message));
  p.cpu = std::move(c.value());
  p.gpu = std::move(g.value());
  return true;
}

std::vector<float> rnd(std::size_t n, std::mt19937& rng, float scale = 1.0f, float shift = 0.0f) {
  std::normal_distribution<float> d(shift, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(double(a[i]))));
  return m;
}

}  // namespace

TEST_CASE("parity: weighted sum (fused, reference + clip, rejection), 3 chunk boundaries") {
  Pair p;
  if (!backends(p)) return;
  std::mt19937 rng(1);
  const std::size_t n = 5'000'003;  // > 2 staging chunks of 8 MiB, odd tail
  std::vector<float> ref = rnd(n, rng), a = rnd(n, rng), b = rnd(n, rng, 2.0f);
  std::vector<float> bad = a;
  bad[n - 7] = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> outs;
  for (auto* be : {p.cpu.get(), p.gpu.get()}) {
    auto s = be->make_weighted_sum(n);
    REQUIRE(s.ok());
    auto r1 = s.value()->add(a, 3.0f);
    REQUIRE(r1.ok());
    CHECK_FALSE(s.value()->add(bad, 5.0f).ok());
    AddOptions o;
    o.reference = ref;
    o.clip_norm = 100.0;
    auto r2 = s.value()->add(b, 1.5f, o);
    REQUIRE(r2.ok());
    CHECK(r2->scale < 1.0);
    o.clip_norm = 0;
    o.max_norm = 10.0;
    CHECK_FALSE(s.value()->add(b, 1.0f, o).ok());
    std::vector<float> out(n);
    REQUIRE(s.value()->read(out, 0.25f).ok());
    outs.push_back(out);
  }
  CHECK(max_rel(outs[0], outs[1]) < 1e-5);
}

TEST_CASE("parity: median, trimmed mean, pairwise distances, weighted mean (odd and even K)") {
  Pair p;
  if (!backends(p)) return;
  std::mt19937 rng(2);
  for (std::size_t k : {5u, 8u}) {
    const std::size_t n = 300'001;
    std::vector<std::vector<float>> ups;
    for (std::size_t j = 0; j < k; ++j) ups.push_back(rnd(n, rng, 0.01f, 0.5f));  // close models
    std::vector<std::vector<float>> med, tm, wm;
    std::vector<std::vector<double>> dist;
    for (auto* be : {p.cpu.get(), p.gpu.get()}) {
      auto set = be->make_update_set(n);
      REQUIRE(set.ok());
      for (auto& u : ups) REQUIRE(set.value()->push(u).ok());
      std::vector<float> out(n);
      REQUIRE(set.value()->median(out).ok());
      med.push_back(out);
      REQUIRE(set.value()->trimmed_mean(1, out).ok());
      tm.push_back(out);
      auto d = set.value()->pairwise_sq_distances();
      REQUIRE(d.ok());
      dist.push_back(d.value());
      std::vector<std::size_t> rows = {0, 2, 3};
      std::vector<float> w = {1, 2, 5};
      REQUIRE(set.value()->weighted_mean(rows, w, out).ok());
      wm.push_back(out);
    }
    CHECK(max_rel(med[0], med[1]) == 0.0);
    CHECK(max_rel(tm[0], tm[1]) < 1e-6);
    CHECK(max_rel(wm[0], wm[1]) < 1e-6);
    for (std::size_t q = 0; q < k * k; ++q) CHECK(dist[1][q] == doctest::Approx(dist[0][q]).epsilon(1e-5));
  }
}

TEST_CASE("parity: mod 2^32 sum") {
  Pair p;
  if (!backends(p)) return;
  std::mt19937 rng(3);
  const std::size_t n = 3'000'001;
  std::vector<std::vector<std::uint32_t>> outs;
  for (auto* be : {p.cpu.get(), p.gpu.get()}) {
    std::mt19937 r(4);
    auto s = be->make_u32_sum(n);
    REQUIRE(s.ok());
    std::vector<std::uint32_t> x(n);
    for (int k = 0; k < 3; ++k) {
      for (auto& v : x) v = static_cast<std::uint32_t>(r());
      REQUIRE(s.value()->add(x).ok());
    }
    std::vector<std::uint32_t> out(n);
    REQUIRE(s.value()->read(out).ok());
    outs.push_back(out);
  }
  CHECK(outs[0] == outs[1]);
}

TEST_CASE("parity: strategies end to end (fedavg, dp-fedadam, krum, trimmed-mean)") {
  Pair p;
  if (!backends(p)) return;
  std::mt19937 rng(5);
  const std::size_t n = 100'000, k = 7;
  std::vector<std::vector<float>> ups;
  for (std::size_t j = 0; j < k; ++j) ups.push_back(rnd(n, rng, 0.1f, 1.0f));
  for (std::string name : {"fedavg", "fedadam", "krum", "trimmed-mean"}) {
    CAPTURE(name);
    StrategyOptions o;
    o.strategy = name;
    o.tau = 0.1;
    if (name == "fedadam") {
      o.dp_clip_norm = 5.0;
      o.dp_noise_multiplier = 0.5;
      o.dp_seed = 9;
    }
    std::vector<std::vector<float>> res;
    for (auto* be : {p.cpu.get(), p.gpu.get()}) {
      auto s = make_strategy(o, *be);
      REQUIRE(s.ok());
      std::vector<float> g(n, 1.0f);
      s.value()->begin_round(g, 1);
      for (std::size_t j = 0; j < k; ++j) REQUIRE(s.value()->add_update({"c", j + 1, ups[j]}).ok());
      REQUIRE(s.value()->finish_round(g).ok());
      res.push_back(g);
    }
    CHECK(max_rel(res[0], res[1]) < 1e-4);
  }
}

TEST_CASE("parity: finalize with every server step, and kept updates stored as clipped changes") {
  Pair p;
  if (!backends(p)) return;
  std::mt19937 rng(6);
  const std::size_t n = 1'000'003;
  std::vector<float> xt = rnd(n, rng), a = rnd(n, rng), b = rnd(n, rng);
  for (int kind : {step::kReplace, step::kMomentum, step::kAdam, step::kYogi, step::kAdagrad}) {
    CAPTURE(kind);
    ServerStep st;
    st.kind = kind;
    st.lr = 0.1;
    st.momentum = 0.9;
    st.tau = 1e-2;
    std::vector<std::vector<float>> outs, ms;
    for (auto* be : {p.cpu.get(), p.gpu.get()}) {
      auto s = be->make_weighted_sum(n);
      REQUIRE(s.ok());
      std::vector<float> g(n);
      for (int round = 0; round < 2; ++round) {
        REQUIRE(s.value()->reset().ok());
        AddOptions o;
        o.reference = xt;
        REQUIRE(s.value()->add(a, 2.0f, o).ok());
        REQUIRE(s.value()->add(b, 1.0f, o).ok());
        REQUIRE(s.value()->finalize(xt, true, 1.0f / 3.0f, st, g).ok());
      }
      std::vector<float> m, v;
      REQUIRE(s.value()->optimizer_state(m, v).ok());
      outs.push_back(g);
      ms.push_back(v);
    }
    CHECK(max_rel(outs[0], outs[1]) < 1e-5);
    if (kind != step::kReplace) CHECK(max_rel(ms[0], ms[1]) < 1e-5);
  }
  std::vector<std::vector<float>> med;
  for (auto* be : {p.cpu.get(), p.gpu.get()}) {
    rng.seed(7);  // the same updates on both backends
    auto set = be->make_update_set(n);
    REQUIRE(set.ok());
    AddOptions o;
    o.reference = xt;
    o.clip_norm = 100.0;
    for (int j = 0; j < 3; ++j) REQUIRE(set.value()->push(rnd(n, rng, 1.0f), o).ok());
    o.max_norm = 1.0;
    CHECK_FALSE(set.value()->push(a, o).ok());
    CHECK(set.value()->count() == 3);
    std::vector<float> out(n);
    REQUIRE(set.value()->median(out).ok());
    med.push_back(out);
  }
  CHECK(max_rel(med[0], med[1]) < 1e-6);
}
