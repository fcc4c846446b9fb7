// Strategies and aggregation backends against reference computations on small inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/options.hpp"
#include "coordinator/aggregation_backend.hpp"
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
  REQUIRE(s.begin_round(global, round));
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

TEST_CASE("fedprox: fedavg on the server, mu sent to clients") {
  auto b = cpu();
  auto o = opts("fedprox");
  o.mu = 0.1;
  auto s = strategy(o, *b);
  TrainConfig c;
  s->configure_fit(c);
  CHECK(c.proximal_mu == doctest::Approx(0.1));
  auto out = run_round(*s, {0, 0}, {{1, 2}, {3, 4}}, {1, 3});
  CHECK(out[0] == doctest::Approx(2.5));
  CHECK(out[1] == doctest::Approx(3.5));
  TrainConfig c2;
  strategy(opts("fedavg"), *b)->configure_fit(c2);
  CHECK(c2.proximal_mu == 0.0f);
}

TEST_CASE("fedavgm: server momentum over two rounds matches the formula") {
  auto b = cpu();
  auto o = opts("fedavgm");
  o.server_lr = 0.5;
  o.server_momentum = 0.9;
  auto s = strategy(o, *b);
  std::vector<double> x = {1.0, -2.0}, v = {0, 0};
  std::vector<float> g = {1.0f, -2.0f};
  std::vector<std::vector<float>> ups = {{2, 0}, {0, -1}};
  for (int round = 1; round <= 2; ++round) {
    g = run_round(*s, g, ups, {1, 1}, round);
    for (int i = 0; i < 2; ++i) {
      double avg = (ups[0][i] + ups[1][i]) / 2.0;
      double d = x[i] - avg;
      v[i] = 0.9 * v[i] + d;
      x[i] = x[i] - 0.5 * v[i];
      CHECK(g[i] == doctest::Approx(x[i]).epsilon(1e-6));
    }
  }
}

TEST_CASE("fedadam, fedyogi, fedadagrad: three rounds against Reddi et al.'s update") {
  for (std::string name : {"fedadam", "fedyogi", "fedadagrad"}) {
    CAPTURE(name);
    auto b = cpu();
    auto o = opts(name);
    o.server_lr = 0.1;
    o.tau = 1e-3;
    o.beta1 = 0.9;
    o.beta2 = 0.99;
    auto s = strategy(o, *b);
    std::vector<double> x = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
    std::vector<float> g = {0.5f, -1.0f, 2.0f};
    std::vector<std::vector<float>> ups = {{1, 1, 1}, {0, -3, 2.5f}};
    for (int round = 1; round <= 3; ++round) {
      g = run_round(*s, g, ups, {3, 1}, round);
      for (int i = 0; i < 3; ++i) {
        double avg = (3.0 * ups[0][i] + ups[1][i]) / 4.0;
        double d = avg - x[i];
        m[i] = 0.9 * m[i] + 0.1 * d;
        if (name == "fedadagrad")
          v[i] += d * d;
        else if (name == "fedadam")
          v[i] = 0.99 * v[i] + 0.01 * d * d;
        else
          v[i] = v[i] - 0.01 * d * d * ((v[i] - d * d) > 0 ? 1 : (v[i] - d * d) < 0 ? -1 : 0);
        x[i] = x[i] + 0.1 * m[i] / (std::sqrt(v[i]) + 1e-3);
        CHECK(g[i] == doctest::Approx(x[i]).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("median and trimmed mean against sorted references") {
  auto b = cpu();
  std::mt19937 rng(7);
  for (std::size_t k : {1u, 4u, 5u, 10u}) {
    CAPTURE(k);
    std::vector<std::vector<float>> ups;
    for (std::size_t j = 0; j < k; ++j) ups.push_back(random_vec(37, rng));
    std::vector<std::uint64_t> n(k, 1);
    auto med = run_round(*strategy(opts("median"), *b), std::vector<float>(37, 0), ups, n);
    auto o = opts("trimmed-mean");
    o.trim_beta = 0.2;
    auto tm = run_round(*strategy(o, *b), std::vector<float>(37, 0), ups, n);
    std::size_t trim = static_cast<std::size_t>(std::floor(0.2 * k));
    for (std::size_t i = 0; i < 37; ++i) {
      std::vector<double> col;
      for (auto& u : ups) col.push_back(u[i]);
      std::sort(col.begin(), col.end());
      double ref_med = k % 2 ? col[k / 2] : (col[k / 2 - 1] + col[k / 2]) / 2;
      CHECK(med[i] == doctest::Approx(ref_med).epsilon(1e-6));
      double s = 0;
      for (std::size_t j = trim; j < k - trim; ++j) s += col[j];
      CHECK(tm[i] == doctest::Approx(s / double(k - 2 * trim)).epsilon(1e-5));
    }
  }
  CHECK(strategy(opts("median"), *b)->needs_all_updates());
}

TEST_CASE("krum and multi-krum pick by the sum of distances to the k - f - 2 nearest") {
  auto b = cpu();
  std::mt19937 rng(11);
  const std::size_t k = 9, n = 50, f = 2;
  std::vector<std::vector<float>> ups;
  for (std::size_t j = 0; j < k; ++j) ups.push_back(random_vec(n, rng, 1.0f + 0.3f * j));
  std::vector<std::uint64_t> w = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  // brute-force reference
  std::vector<double> score(k);
  for (std::size_t i = 0; i < k; ++i) {
    std::vector<double> d;
    for (std::size_t j = 0; j < k; ++j) {
      if (i == j) continue;
      double s = 0;
      for (std::size_t q = 0; q < n; ++q)
        s += double(ups[i][q] - ups[j][q]) * (ups[i][q] - ups[j][q]);
      d.push_back(s);
    }
    std::sort(d.begin(), d.end());
    score[i] = std::accumulate(d.begin(), d.begin() + (k - f - 2), 0.0);
  }
  std::vector<std::size_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto c) { return score[a] < score[c]; });

  auto o = opts("krum");
  o.krum_f = f;
  RoundStats st;
  auto kr = run_round(*strategy(o, *b), std::vector<float>(n, 0), ups, w, 1, &st);
  CHECK(st["krum_first"] == double(order[0]));
  for (std::size_t q = 0; q < n; ++q) CHECK(kr[q] == doctest::Approx(ups[order[0]][q]));

  o.strategy = "multi-krum";
  o.krum_m = 4;
  auto mk = run_round(*strategy(o, *b), std::vector<float>(n, 0), ups, w, 1, &st);
  CHECK(st["krum_selected"] == 4.0);
  for (std::size_t q = 0; q < n; ++q) {
    double s = 0, tw = 0;
    for (std::size_t r = 0; r < 4; ++r) {
      s += double(w[order[r]]) * ups[order[r]][q];
      tw += w[order[r]];
    }
    CHECK(mk[q] == doctest::Approx(s / tw).epsilon(1e-5));
  }
  // too few updates for f
  o.krum_f = 4;
  auto s2 = strategy(o, *b);
  std::vector<float> g(n, 0);
  REQUIRE(s2->begin_round(g, 1));
  for (std::size_t j = 0; j < k; ++j) REQUIRE(s2->add_update({"c", 1, ups[j]}).ok());
  auto r = s2->finish_round(g);
  CHECK_FALSE(r.ok());
}

TEST_CASE(
    "validation: NaN, Inf, wrong size, zero examples and a too-large change are rejected; the "
    "round is intact") {
  for (std::string name : {"fedavg", "fedadam", "median", "multi-krum"}) {
    for (bool bound : {false, true}) {
      CAPTURE(name);
      CAPTURE(bound);
      auto b = cpu(2);
      std::mt19937 rng(3);
      const std::size_t n = 70001;  // several blocks per thread: the fused path undoes late NaNs
      std::vector<float> global(n, 0.25f);
      std::vector<std::vector<float>> good;
      for (int j = 0; j < 5; ++j) good.push_back(random_vec(n, rng, 0.01f));
      for (auto& u : good)
        for (std::size_t i = 0; i < n; ++i) u[i] += 0.25f;
      auto o = opts(name);
      o.krum_f = 1;
      o.tau = 0.1;  // FedAdam with a tiny tau turns last-bit differences into sign flips
      if (bound) o.max_update_norm = 50.0;
      auto clean = run_round(*strategy(o, *b), global, good, {1, 2, 3, 4, 5});

      auto s = strategy(o, *b);
      REQUIRE(s->begin_round(global, 1));
      std::vector<float> nan_late = good[0], inf_early = good[0], big = good[0];
      nan_late[n - 3] = std::numeric_limits<float>::quiet_NaN();
      inf_early[5] = std::numeric_limits<float>::infinity();
      for (auto& v : big) v += 1.0f;  // change norm ~ 265 > 50
      std::vector<float> short_one(n - 1, 0.0f);
      for (std::size_t j = 0; j < good.size(); ++j) {
        REQUIRE(s->add_update({"good" + std::to_string(j), j + 1, good[j]}).ok());
        if (j == 1) {
          Status a = s->add_update({"evil-nan", 10, nan_late});
          CHECK_FALSE(a.ok());
          CHECK(a.message().find("evil-nan") != std::string::npos);
          CHECK(a.message().find("non-finite") != std::string::npos);
          CHECK_FALSE(s->add_update({"evil-inf", 10, inf_early}).ok());
          Status sz = s->add_update({"evil-size", 10, short_one});
          CHECK_FALSE(sz.ok());
          CHECK(sz.message().find("values") != std::string::npos);
          CHECK_FALSE(s->add_update({"evil-zero", 0, good[0]}).ok());
          if (bound) {
            Status nb = s->add_update({"evil-norm", 10, big});
            CHECK_FALSE(nb.ok());
            CHECK(nb.message().find("norm") != std::string::npos);
          }
        }
      }
      auto r = s->finish_round(global);
      REQUIRE(r.ok());
      CHECK(r.value()["rejected"] == (bound ? 5.0 : 4.0));
      double max_err = 0;
      for (std::size_t i = 0; i < n; ++i)
        max_err = std::max(max_err, double(std::abs(global[i] - clean[i])));
      CHECK(max_err < 1e-6);
    }
  }
}

TEST_CASE("a round with no usable update fails and leaves the model alone") {
  auto b = cpu();
  auto s = strategy(opts("fedavg"), *b);
  std::vector<float> g = {1, 2};
  REQUIRE(s->begin_round(g, 1));
  std::vector<float> bad = {std::nanf(""), 0};
  CHECK_FALSE(s->add_update({"x", 1, bad}).ok());
  CHECK_FALSE(s->finish_round(g).ok());
  CHECK(g[0] == 1.0f);
  CHECK(g[1] == 2.0f);
}

TEST_CASE("save_state / load_state: a resumed strategy produces bit-identical next rounds") {
  for (std::string name : {"fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedavg"}) {
    for (bool dp : {false, true}) {
      CAPTURE(name);
      CAPTURE(dp);
      auto b = cpu();
      auto o = opts(name);
      if (dp) {
        o.dp_noise_multiplier = 1.0;
        o.dp_clip_norm = 0.5;
        o.dp_adaptive_clip = true;
        o.dp_seed = 42;
        o.dp_sampling_rate = 0.1;
      }
      std::mt19937 rng(5);
      std::vector<std::vector<std::vector<float>>> rounds;
      for (int r = 0; r < 3; ++r) {
        std::vector<std::vector<float>> ups;
        for (int j = 0; j < 4; ++j) ups.push_back(random_vec(64, rng));
        rounds.push_back(ups);
      }
      std::vector<std::uint64_t> n = {1, 2, 3, 4};
      auto a = strategy(o, *b);
      std::vector<float> g(64, 0.1f);
      g = run_round(*a, g, rounds[0], n, 1);
      StrategyState saved = a->save_state().value();
      RoundStats sa, sb;
      auto ga = run_round(*a, g, rounds[1], n, 2, &sa);
      ga = run_round(*a, ga, rounds[2], n, 3, &sa);

      auto c = strategy(o, *b);
      REQUIRE(c->load_state(saved).ok());
      auto gc = run_round(*c, g, rounds[1], n, 2, &sb);
      gc = run_round(*c, gc, rounds[2], n, 3, &sb);
      CHECK(ga == gc);
      if (dp) {
        CHECK(sa["dp_epsilon"] == sb["dp_epsilon"]);
        CHECK(sa["dp_clip_norm"] == sb["dp_clip_norm"]);
      }
      // a fresh strategy without the state diverges (momentum/moments/clip norm matter)
      if (name != "fedavg" || dp) {
        auto d = strategy(o, *b);
        auto gd = run_round(*d, g, rounds[1], n, 2);
        gd = run_round(*d, gd, rounds[2], n, 3);
        CHECK(gd != ga);
      }
    }
  }
  auto b = cpu();
  StrategyState wrong;
  wrong.values["strategy"] = "fedyogi";
  CHECK_FALSE(strategy(opts("fedadam"), *b)->load_state(wrong).ok());
}

namespace {

// Toy federation: minimise sum_k |w - c_k|^2 / 2 with c_k near `target`. Honest clients take a
// local step towards their c_k; attackers send scaled (-10x) or random (std 30) models.
double toy_federation(const std::string& name, bool scaled_attack) {
  auto b = cpu(1);
  auto o = opts(name);
  o.krum_f = 2;
  o.trim_beta = 0.2;
  auto s = strategy(o, *b);
  const std::size_t d = 10, k = 10, evil = 2;
  std::mt19937 rng(99);
  std::normal_distribution<float> noise(0.0f, 0.1f), junk(0.0f, 30.0f);
  std::vector<float> target(d, 3.0f), w(d, 0.0f);
  for (int round = 1; round <= 30; ++round) {
    REQUIRE(s->begin_round(w, round));
    for (std::size_t j = 0; j < k; ++j) {
      std::vector<float> u(d);
      for (std::size_t i = 0; i < d; ++i) {
        float honest = w[i] + 0.5f * (target[i] + noise(rng) - w[i]);
        if (j < evil)
          u[i] = scaled_attack ? w[i] - 10.0f * (honest - w[i]) * 4.0f : junk(rng);
        else
          u[i] = honest;
      }
      REQUIRE(s->add_update({"c" + std::to_string(j), 100, u}).ok());
    }
    REQUIRE(s->finish_round(w).ok());
  }
  double dist = 0;
  for (std::size_t i = 0; i < d; ++i) dist += (w[i] - target[i]) * (w[i] - target[i]);
  return std::sqrt(dist);
}

}  // namespace

TEST_CASE("robust strategies keep learning with 20% malicious clients; fedavg does not") {
  for (bool scaled : {true, false}) {
    CAPTURE(scaled);
    double avg = toy_federation("fedavg", scaled);
    CHECK(avg > 5.0);
    for (std::string name : {"median", "trimmed-mean", "krum", "multi-krum"}) {
      CAPTURE(name);
      CHECK(toy_federation(name, scaled) < 0.5);
    }
  }
}

TEST_CASE("central DP: clipping bounds each change, noise std is z S / K") {
  auto b = cpu();
  SUBCASE("clip only") {
    auto o = opts("fedavg");
    o.dp_clip_norm = 1.0;
    auto s = strategy(o, *b);
    CHECK(s->name() == "dp-fedavg");
    std::vector<float> g = {1, 1, 1, 1};
    // change (3, 4, 0, 0) has norm 5 -> clipped to (0.6, 0.8, 0, 0)
    auto out = run_round(*s, g, {{4, 5, 1, 1}}, {7});
    CHECK(out[0] == doctest::Approx(1.6));
    CHECK(out[1] == doctest::Approx(1.8));
    CHECK(out[2] == doctest::Approx(1.0));
  }
  SUBCASE("noise") {
    auto o = opts("fedavg");
    o.dp_clip_norm = 2.0;
    o.dp_noise_multiplier = 1.5;
    o.dp_seed = 1234;
    auto s = strategy(o, *b);
    const std::size_t n = 200000, k = 10;
    std::vector<float> g(n, 0.5f);
    std::vector<std::vector<float>> ups(k, g);  // clients send the model back unchanged
    RoundStats st;
    auto out = run_round(*s, g, ups, std::vector<std::uint64_t>(k, 1), 1, &st);
    double mean = 0, var = 0;
    for (std::size_t i = 0; i < n; ++i) mean += out[i] - 0.5;
    mean /= n;
    for (std::size_t i = 0; i < n; ++i) var += (out[i] - 0.5 - mean) * (out[i] - 0.5 - mean);
    double sd = std::sqrt(var / (n - 1));
    const double expected = 1.5 * 2.0 / k;  // sigma / K with sigma = z S
    CHECK(sd == doctest::Approx(expected).epsilon(0.01));
    CHECK(std::abs(mean) < 5 * expected / std::sqrt(double(n)));
    CHECK(st["dp_noise_std"] == doctest::Approx(expected));
    // q = 1, one step: epsilon from RDP alpha / (2 z^2)
    std::vector<int> orders;
    std::vector<double> rdp;
    for (int a = 2; a <= 512; ++a) {
      orders.push_back(a);
      rdp.push_back(a / (2 * 1.5 * 1.5));
    }
    CHECK(st["dp_epsilon"] > 0.0);
    CHECK(st["dp_epsilon"] >= epsilon_from_rdp(orders, rdp, 1e-5) - 1e-9);
  }
  SUBCASE("adaptive clip norm moves towards the target quantile") {
    auto o = opts("fedavg");
    o.dp_adaptive_clip = true;
    o.dp_clip_norm = 1.0;
    o.dp_clip_count_stddev = 1e-9;  // effectively noiseless count for the check
    o.dp_noise_multiplier = 0.0;
    auto s = strategy(o, *b);
    std::vector<float> g = {0, 0};
    RoundStats st;
    run_round(*s, g, {{0.1f, 0}, {0, 0.1f}}, {1, 1}, 1, &st);  // all unclipped: b = 1
    CHECK(st["dp_next_clip_norm"] == doctest::Approx(std::exp(-0.2 * (1.0 - 0.5))));
    run_round(*s, g, {{5, 0}, {0, 5}}, {1, 1}, 2, &st);  // all clipped: b = 0
    CHECK(st["dp_clip_norm"] == doctest::Approx(std::exp(-0.1)));
    CHECK(st["dp_next_clip_norm"] == doctest::Approx(std::exp(-0.1) * std::exp(0.1)));
  }
}

TEST_CASE("RDP accountant matches TensorFlow Privacy's published MNIST figure") {
  // tensorflow/privacy tutorials/README.md: noise multiplier 1.12, batch 256 of 60000, 60 epochs
  // (60 x 234 steps), delta 1e-5 -> epsilon 2.92.
  RdpAccountant acc;
  acc.add_steps(256.0 / 60000.0, 1.12, 60 * (60000 / 256));
  CHECK(acc.epsilon(1e-5) == doctest::Approx(2.92).epsilon(0.002));
  // Closed form without sampling: RDP(alpha) = alpha / (2 z^2).
  CHECK(rdp_sampled_gaussian(1.0, 2.0, 8) == doctest::Approx(1.0));
  // Order 2 in closed form: log(1 + q^2 (e^{1/z^2} - 1)).
  CHECK(rdp_sampled_gaussian(0.01, 1.0, 2) ==
        doctest::Approx(std::log1p(1e-4 * (std::exp(1.0) - 1.0))).epsilon(1e-9));
  RdpAccountant again;
  REQUIRE(again.deserialize(acc.serialize()).ok());
  CHECK(again.epsilon(1e-5) == acc.epsilon(1e-5));
  CHECK_FALSE(again.deserialize("3 0x1p-3").ok());
}

TEST_CASE("options: flags parse into StrategyOptions; bad values are named") {
  namespace po = boost::program_options;
  auto parse = [](std::vector<std::string> args) {
    po::options_description desc;
    add_strategy_options(desc);
    std::vector<const char*> argv = {"prog"};
    for (auto& a : args) argv.push_back(a.c_str());
    po::variables_map vm;
    po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), desc), vm);
    po::notify(vm);
    return strategy_options_from(vm);
  };
  auto d = parse({});
  REQUIRE(d.ok());
  CHECK(d->strategy == "fedavg");
  CHECK_FALSE(d->dp_enabled());
  auto a = parse({"--strategy", "fedadam", "--server-lr", "0.05", "--beta2", "0.999", "--tau",
                  "1e-4", "--dp-noise-multiplier", "1.1", "--dp-clip-norm", "0.5", "--dp-delta",
                  "1e-6", "--dp-adaptive-clip"});
  REQUIRE(a.ok());
  CHECK(a->strategy == "fedadam");
  CHECK(*a->server_lr == doctest::Approx(0.05));
  CHECK(*a->tau == doctest::Approx(1e-4));
  CHECK(a->dp_adaptive_clip);
  CHECK(a->dp_enabled());
  auto bad = parse({"--strategy", "fedmagic"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("--strategy") != std::string::npos);
  CHECK_FALSE(parse({"--trim-beta", "0.5"}).ok());
  CHECK_FALSE(parse({"--strategy", "median", "--dp-clip-norm", "1"}).ok());
  CHECK_FALSE(parse({"--dp-noise-multiplier", "1"}).ok());
  auto b = cpu();
  for (const char* name : {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad",
                           "median", "trimmed-mean", "krum", "multi-krum"})
    CHECK(make_strategy(opts(name), *b).ok());
}

TEST_CASE("options: the strategy flags work as keys of a JSON --config file") {
  const std::string path = "federa_test_strategy_config.json";
  {
    std::ofstream f(path);
    f << R"({"strategy": "fedyogi", "server-lr": 0.02, "tau": 0.001, "krum-f": 2,
             "dp-noise-multiplier": 0.8, "dp-clip-norm": 1.5, "dp-adaptive-clip": true,
             "dp-seed": 12345, "dp-sampling-rate": 0.05})";
  }
  boost::program_options::options_description desc("test");
  add_strategy_options(desc);
  std::vector<std::string> args = {"prog", "--config", path, "--beta1", "0.8"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto vm = parse_options(static_cast<int>(argv.size()), argv.data(), desc);
  std::remove(path.c_str());
  REQUIRE(vm.has_value());
  auto o = strategy_options_from(*vm);
  REQUIRE_MESSAGE(o.ok(), (o.ok() ? "" : o.error().message));
  CHECK(o->strategy == "fedyogi");
  CHECK(*o->server_lr == doctest::Approx(0.02));
  CHECK(o->krum_f == 2);
  CHECK(o->dp_adaptive_clip);
  CHECK(o->dp_seed == 12345u);
  CHECK(o->dp_sampling_rate == doctest::Approx(0.05));
  CHECK(o->beta1 == doctest::Approx(0.8));  // the command line, on top of the file
  auto b = cpu();
  auto s = make_strategy(*o, *b);
  REQUIRE(s.ok());
  CHECK(s.value()->name() == "dp-fedyogi");
}

TEST_CASE(
    "DP noise generator: AES-CTR Gaussian has the right moments, repeats per seed, differs per "
    "round") {
  auto a = GaussianNoise::from_seed(7, 1);
  auto b = GaussianNoise::from_seed(7, 1);
  auto c = GaussianNoise::from_seed(7, 2);
  REQUIRE(a.ok());
  std::vector<float> x(300001), y(300001), z(300001);
  REQUIRE(a->fill(x, 2.0).ok());
  REQUIRE(b->fill(y, 2.0).ok());
  REQUIRE(c->fill(z, 2.0).ok());
  CHECK(x == y);
  CHECK(x != z);
  double m = 0, v = 0, k4 = 0;
  for (float f : x) m += f;
  m /= x.size();
  for (float f : x) {
    v += (f - m) * (f - m);
    k4 += std::pow(f - m, 4);
  }
  v /= x.size() - 1;
  k4 /= x.size();
  CHECK(std::abs(m) < 0.02);
  CHECK(std::sqrt(v) == doctest::Approx(2.0).epsilon(0.01));
  CHECK(k4 / (v * v) == doctest::Approx(3.0).epsilon(0.05));  // Gaussian kurtosis
  auto os = GaussianNoise::from_os_entropy();
  REQUIRE(os.ok());
  auto s1 = os->sample(1.0), s2 = os->sample(1.0);
  REQUIRE(s1.ok());
  CHECK(s1.value() != s2.value());
}

TEST_CASE("secure aggregation: which strategies can work from the cohort mean alone") {
  auto b = cpu();
  for (const char* name : {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad"})
    CHECK(strategy(opts(name), *b)->supports_secure_aggregation());
  for (const char* name : {"median", "trimmed-mean", "krum", "multi-krum"})
    CHECK_FALSE(strategy(opts(name), *b)->supports_secure_aggregation());
  auto dp = opts("fedavg");
  dp.dp_noise_multiplier = 1.0;
  dp.dp_clip_norm = 1.0;
  CHECK_FALSE(strategy(dp, *b)->supports_secure_aggregation());
  auto bounded = opts("fedavg");
  bounded.max_update_norm = 5.0;
  CHECK_FALSE(strategy(bounded, *b)->supports_secure_aggregation());

  // The cohort mean arrives as one update carrying the total weight: FedAvg then yields it.
  auto s = strategy(opts("fedavg"), *b);
  std::vector<float> global = {0.0f, 0.0f, 0.0f};
  std::vector<float> mean = {1.0f, -2.0f, 0.5f};
  REQUIRE(s->begin_round(global, 1));
  REQUIRE(s->add_cohort_mean({"secure-aggregate", 600, mean}, 3).ok());
  auto stats = s->finish_round(global);
  REQUIRE(stats.ok());
  CHECK(global == mean);
}
