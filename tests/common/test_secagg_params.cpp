// SecAgg+ parameters, graph, quantization and pairwise masks (common/secagg).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/secagg.hpp"
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::secagg;
using namespace federa::test;
using crypto::Key32;

TEST_CASE("secagg: pairwise masks derived on both ends cancel exactly") {
  RoundOptions o;
  o.num_clients = 10;
  o.vector_length = 3000;
  o.neighbors = 4;
  o.threshold = 2;
  auto cfg = make_round_config(o);
  REQUIRE(cfg);
  auto u = crypto::x25519_generate();
  auto v = crypto::x25519_generate();
  REQUIRE(u);
  REQUIRE(v);
  auto su = derive_mask_seed(*cfg, u->private_key, v->public_key, 3, 8);
  auto sv = derive_mask_seed(*cfg, v->private_key, u->public_key, 8, 3);
  REQUIRE(su);
  REQUIRE(sv);
  CHECK(*su == *sv);
  std::vector<std::uint32_t> sum(3001, 0);
  REQUIRE(crypto::prg_accumulate(*su, sum, pair_mask_op(3, 8)));
  CHECK(std::any_of(sum.begin(), sum.end(), [](std::uint32_t x) { return x != 0; }));
  REQUIRE(crypto::prg_accumulate(*sv, sum, pair_mask_op(8, 3)));
  CHECK(std::all_of(sum.begin(), sum.end(), [](std::uint32_t x) { return x == 0; }));
  // domain separation: another pair / round gives another seed
  auto other = derive_mask_seed(*cfg, u->private_key, v->public_key, 3, 9);
  REQUIRE(other);
  CHECK(*other != *su);
}

TEST_CASE("secagg: derived (k, t) reproduce the calibration table") {
  auto check = [](std::uint32_t n, double dropout, double corrupt, std::uint32_t k,
                  std::uint32_t t) {
    auto p = derive_parameters(n, dropout, corrupt);
    REQUIRE(p);
    CHECK(p->neighbors == k);
    CHECK(p->threshold == t);
  };
  check(1000, 0.05, 0.05, 30, 17);
  check(1000, 0.33, 0.05, 72, 24);
  check(10000, 0.05, 0.05, 34, 20);
  check(10000, 0.33, 0.05, 86, 29);
  auto hard = derive_parameters(1000, 0.33, 0.33);  // the table says (286, 150)
  REQUIRE(hard);
  CHECK(hard->neighbors >= 270);
  CHECK(hard->neighbors <= 300);
  CHECK_FALSE(derive_parameters(100, 0.6, 0.4));
}

TEST_CASE("secagg: Harary graph is regular, symmetric, seeded and relabelled") {
  for (std::uint32_t n : {7u, 50u, 333u}) {
    for (std::uint32_t k : {2u, 5u, 6u, 30u}) {
      auto g = NeighborGraph::create(n, k, key_from(9));
      REQUIRE(g);
      const std::uint32_t deg = effective_degree(n, k);
      CHECK(g->degree() == deg);
      for (std::uint32_t u = 0; u < n; ++u) {
        const auto& nb = g->neighbors(u);
        CHECK(nb.size() == deg);
        CHECK(std::set<std::uint32_t>(nb.begin(), nb.end()).size() == nb.size());
        for (std::uint32_t v : nb) {
          CHECK(v != u);
          CHECK(g->adjacent(v, u));
        }
      }
    }
  }
  auto g1 = NeighborGraph::create(100, 10, key_from(1));
  auto g2 = NeighborGraph::create(100, 10, key_from(1));
  auto g3 = NeighborGraph::create(100, 10, key_from(2));
  REQUIRE(g1);
  REQUIRE(g2);
  REQUIRE(g3);
  bool same12 = true, same13 = true, ring = true;
  for (std::uint32_t u = 0; u < 100; ++u) {
    same12 &= g1->neighbors(u) == g2->neighbors(u);
    same13 &= g1->neighbors(u) == g3->neighbors(u);
    ring &= g1->adjacent(u, (u + 1) % 100);
  }
  CHECK(same12);
  CHECK_FALSE(same13);
  // one client's neighbours without the whole graph agree with the graph
  RoundOptions o;
  o.num_clients = 300;
  o.vector_length = 1;
  o.neighbors = 16;
  o.threshold = 5;
  auto cfg = make_round_config(o);
  REQUIRE(cfg);
  auto g = NeighborGraph::create(*cfg);
  REQUIRE(g);
  for (std::uint32_t u : {0u, 17u, 299u}) {
    auto nb = neighbors_of(*cfg, u);
    REQUIRE(nb);
    CHECK(*nb == g->neighbors(u));
  }
  CHECK_FALSE(ring);  // relabelled, not the identity layout
}

TEST_CASE("secagg: quantization bounds, unbiased rounding and no-wrap refusal") {
  auto q = make_quant_config(1000, 8.0, 1.0);
  REQUIRE(q);
  CHECK(1000.0 * (std::ceil(8.0 * q->scale) + 1) <= 2147483647.0);
  // an explicit scale that lets 1000 clients wrap is refused, and so is a cohort too large
  auto wrap = make_quant_config(1000, 8.0, 1.0, q->scale * 1.01);
  CHECK_FALSE(wrap);
  CHECK(contains(wrap.error().message, "wrap"));
  QuantConfig bad = *q;
  bad.cohort = 2000;
  CHECK_FALSE(check_quant_config(bad));
  // Flower's ±8 / 2^22 levels would wrap beyond ~1024 clients; we refuse it for 2000.
  CHECK_FALSE(make_quant_config(2000, 8.0, 1.0, (1 << 22) / 16.0));

  std::vector<float> x = {0.f, 1.f, -1.f, 100.f, -100.f, 7.99f, 1e-7f};
  std::vector<std::uint32_t> out(x.size() + 1);
  REQUIRE(quantize(x, 0.5, *q, out));
  const double bound = std::ceil(8.0 * q->scale) + 1;
  for (std::uint32_t w : out) CHECK(std::abs(double(static_cast<std::int32_t>(w))) <= bound);
  auto d = dequantize(out, *q);
  for (std::size_t i = 0; i < x.size(); ++i)
    CHECK(std::abs(d.weighted_sum[i] - 0.5 * std::clamp(double(x[i]), -8.0, 8.0)) <=
          1.0 / q->scale);
  CHECK(std::abs(d.total_weight - 0.5) < 1e-6);
  // worst case: the whole cohort at +clip and -clip does not wrap
  std::vector<float> hi(1, 8.f), lo(1, -8.f);
  std::vector<std::uint32_t> qh(2), ql(2), sh(2, 0), sl(2, 0);
  REQUIRE(quantize(hi, 1.0, *q, qh));
  REQUIRE(quantize(lo, 1.0, *q, ql));
  for (int i = 0; i < 1000; ++i) {
    sh[0] += qh[0];
    sl[0] += ql[0];
  }
  CHECK(dequantize(sh, *q).weighted_sum[0] == doctest::Approx(8000.0).epsilon(1e-6));
  CHECK(dequantize(sl, *q).weighted_sum[0] == doctest::Approx(-8000.0).epsilon(1e-6));
  // stochastic rounding is unbiased: a value of 0.25 units averages to 0.25
  std::vector<float> quarter(20000, static_cast<float>(0.25 / q->scale));
  std::vector<std::uint32_t> qq(quarter.size() + 1);
  REQUIRE(quantize(quarter, 1.0, *q, qq));
  double mean = 0;
  for (std::size_t i = 0; i < quarter.size(); ++i) mean += static_cast<std::int32_t>(qq[i]);
  mean /= double(quarter.size());
  CHECK(mean == doctest::Approx(0.25).epsilon(0.05));
  // bad inputs
  CHECK_FALSE(quantize(x, 1.5, *q, out));  // weight > max_weight
  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
  std::vector<std::uint32_t> o2(2);
  CHECK_FALSE(quantize(nan, 1.0, *q, o2));
}

TEST_CASE("secagg: round configuration validation") {
  RoundOptions o;
  o.num_clients = 100;
  o.vector_length = 10;
  o.dropout = 0.1;
  auto c = make_round_config(o);
  REQUIRE(c);
  CHECK(validate(*c));
  RoundConfig bad = *c;
  bad.threshold = 1;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.threshold = bad.neighbors + 1;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.quant.scale *= 4;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.neighbors = 7;  // odd degree below n-1 is not a Harary degree here
  CHECK_FALSE(validate(bad));
}
