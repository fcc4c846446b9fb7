// Every backend operation on the CPU and on CUDA, compared (test-backend-ops style), plus what
// only a GPU can show: rejected updates leave the device accumulator bit-identical, pinned and
// pageable inputs give the same result, two runs give the same bits, an unusable device makes
// --device auto fall back. Needs a CUDA build and a CUDA device: without one the whole program
// exits 77 (CTest: skipped) and says what is missing; with one, nothing is skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <vector>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategies.hpp"
#ifdef FEDERA_HAVE_CUDA
#include "coordinator/cuda/cuda_backend.hpp"
#endif

using namespace federa;

namespace {

struct Pair {
  std::unique_ptr<AggregationBackend> cpu, gpu;
  std::vector<AggregationBackend*> both() const { return {cpu.get(), gpu.get()}; }
};

Pair backends() {
  auto c = make_backend("cpu", 2);
  auto g = make_backend("cuda", 2);
  REQUIRE(c.ok());
  REQUIRE_MESSAGE(g.ok(), (g.ok() ? "" : g.error().message));
  return {std::move(c.value()), std::move(g.value())};
}

std::vector<float> rnd(std::size_t n, std::mt19937& rng, float scale = 1.0f, float shift = 0.0f) {
  std::normal_distribution<float> d(shift, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Largest |a - b| / (1 + |a|); infinite when the sizes differ or either side has a NaN or an Inf
// the other has not, so a poisoned result can never pass.
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 || std::isnan(a[i]))
        return std::numeric_limits<double>::infinity();
      continue;
    }
    const double r = std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(double(a[i])));
    if (r > m) m = r;
  }
  return m;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> read_all(WeightedSum& s) {
  std::vector<float> out(s.size());
  REQUIRE(s.read(out, 1.0f).ok());
  return out;
}

// The update in a backend's own host buffer (pinned on CUDA), as the coordinator receives it.
struct Received {
  AggregationBackend::HostBuffer buf;
  std::size_t n;
  std::span<const float> span() const { return {buf.get(), n}; }
};
Received in_host_buffer(AggregationBackend& be, const std::vector<float>& x) {
  auto h = be.make_host_buffer(x.size());
  REQUIRE(h.ok());
  std::memcpy(h->get(), x.data(), x.size() * sizeof(float));
  return {std::move(h.value()), x.size()};
}

}  // namespace

TEST_CASE("the NaN-sensitive comparison itself") {
  std::vector<float> a = {1, 2, 3}, b = a;
  CHECK(max_rel(a, b) == 0.0);
  b[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isinf(max_rel(a, b)));
  CHECK(std::isinf(max_rel(b, b)));
  CHECK(std::isinf(max_rel(a, {1, 2})));
}

TEST_CASE(
    "parity: weighted sum from pageable and pinned memory, with reference, clipping, rejections") {
  Pair p = backends();
  std::mt19937 rng(1);
  const std::size_t n = 5'000'003;  // several staging chunks, an odd tail
  std::vector<float> ref = rnd(n, rng), a = rnd(n, rng), b = rnd(n, rng, 2.0f);
  std::vector<float> bad = a;
  bad[n - 7] = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> outs;
  for (bool pinned : {false, true}) {
    CAPTURE(pinned);
    for (auto* be : p.both()) {
      auto s = be->make_weighted_sum(n);
      REQUIRE(s.ok());
      Received ha = in_host_buffer(*be, a), hb = in_host_buffer(*be, b);
      std::span<const float> xa = pinned ? ha.span() : std::span<const float>(a);
      std::span<const float> xb = pinned ? hb.span() : std::span<const float>(b);
      REQUIRE(s.value()->add(xa, 3.0f).ok());
      CHECK_FALSE(s.value()->add(bad, 5.0f).ok());
      AddOptions o;
      o.reference = ref;
      o.clip_norm = 100.0;
      auto r2 = s.value()->add(xb, 1.5f, o);
      REQUIRE(r2.ok());
      CHECK(r2->scale < 1.0);
      o.clip_norm = 0;
      o.max_norm = 10.0;
      CHECK_FALSE(s.value()->add(xb, 1.0f, o).ok());
      std::vector<float> out(n);
      REQUIRE(s.value()->read(out, 0.25f).ok());
      outs.push_back(out);
    }
  }
  CHECK(max_rel(outs[0], outs[1]) < 1e-6);
  CHECK(same_bits(outs[0], outs[2]));  // CPU: pinned or not, the same
  CHECK(same_bits(outs[1], outs[3]));  // GPU: the staged and the direct path agree bit for bit
}

TEST_CASE(
    "rejected adds leave the accumulator bit-identical on both backends, with and without facts") {
  Pair p = backends();
  std::mt19937 rng(2);
  const std::size_t n = 3'000'017;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a = rnd(n, rng), b = rnd(n, rng), ref = rnd(n, rng);
  std::vector<float> huge_then_nan(n, 1e30f), nan_late = rnd(n, rng), inf_first = rnd(n, rng);
  huge_then_nan[n - 2] = nan;
  nan_late[n - 5] = nan;
  inf_first[0] = std::numeric_limits<float>::infinity();
  std::vector<float> too_long = rnd(n, rng, 100.0f);
  std::vector<std::vector<float>> finals;
  for (auto* be : p.both()) {
    CAPTURE(be->name());
    auto s = be->make_weighted_sum(n).value();
    CHECK_FALSE(s->add(huge_then_nan, 2.0f).ok());  // a rejected first add leaves no residue
    REQUIRE(s->add(a, 3.0f).ok());
    REQUIRE(s->add(b, 0.5f).ok());
    const std::vector<float> before = read_all(*s);
    for (const auto* bad : {&huge_then_nan, &nan_late, &inf_first}) {
      CHECK_FALSE(s->add(*bad, 7.0f).ok());
      CHECK(same_bits(read_all(*s), before));
      Received h = in_host_buffer(*be, *bad);
      CHECK_FALSE(s->add(h.span(), 7.0f).ok());
      CHECK(same_bits(read_all(*s), before));
    }
    AddOptions bound;
    bound.max_norm = 10.0;
    CHECK_FALSE(s->add(too_long, 1.0f, bound).ok());
    CHECK(same_bits(read_all(*s), before));
    SquareSums sums(true);
    sums.add(too_long.data(), ref.data(), n);
    bound.reference = ref;
    bound.known = {true, sums.sum_sq(), sums.sum_sq_delta()};
    CHECK_FALSE(s->add(too_long, 1.0f, bound).ok());  // refused from the facts alone
    CHECK(same_bits(read_all(*s), before));
    finals.push_back(before);
  }
  CHECK(max_rel(finals[0], finals[1]) < 1e-6);
}

TEST_CASE("parity: facts measured on receipt and the backend's own check give the same sums") {
  Pair p = backends();
  std::mt19937 rng(3);
  const std::size_t n = 2'500'001;
  std::vector<float> ref = rnd(n, rng), a = rnd(n, rng);
  SquareSums sums(true);
  sums.add(a.data(), ref.data(), n);
  for (auto* be : p.both()) {
    CAPTURE(be->name());
    auto s1 = be->make_weighted_sum(n).value();
    auto s2 = be->make_weighted_sum(n).value();
    AddOptions o;
    o.reference = ref;
    o.clip_norm = 500.0;
    auto r1 = s1->add(a, 2.0f, o);
    o.known = {true, sums.sum_sq(), sums.sum_sq_delta()};
    Received h = in_host_buffer(*be, a);
    auto r2 = s2->add(h.span(), 2.0f, o);
    REQUIRE(r1.ok());
    REQUIRE(r2.ok());
    CHECK(r1->norm == doctest::Approx(r2->norm).epsilon(1e-12));
    CHECK(r2->norm == std::sqrt(*sums.sum_sq_delta()));
    CHECK(max_rel(read_all(*s1), read_all(*s2)) < 1e-6);
  }
}

TEST_CASE("parity: median, trimmed mean, pairwise distances, weighted mean (odd and even K)") {
  Pair p = backends();
  std::mt19937 rng(4);
  for (std::size_t k : {5u, 8u, 32u}) {
    CAPTURE(k);
    const std::size_t n = 300'001;
    std::vector<std::vector<float>> ups;
    for (std::size_t j = 0; j < k; ++j) ups.push_back(rnd(n, rng, 0.01f, 0.5f));  // close models
    std::vector<std::vector<float>> med, tm, wm;
    std::vector<std::vector<double>> dist;
    for (auto* be : p.both()) {
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
    CHECK(same_bits(med[0], med[1]));  // the same sorted values on both
    CHECK(max_rel(tm[0], tm[1]) < 1e-6);
    CHECK(max_rel(wm[0], wm[1]) < 1e-6);
    for (std::size_t q = 0; q < k * k; ++q)
      CHECK(dist[1][q] == doctest::Approx(dist[0][q]).epsilon(1e-5));
  }
}

TEST_CASE("parity: mod 2^32 sum") {
  Pair p = backends();
  const std::size_t n = 3'000'001;
  std::vector<std::vector<std::uint32_t>> outs;
  for (auto* be : p.both()) {
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

TEST_CASE("parity: every strategy end to end, within 1e-6") {
  Pair p = backends();
  std::mt19937 rng(5);
  const std::size_t n = 100'000, k = 7;
  std::vector<std::vector<float>> ups;
  for (std::size_t j = 0; j < k; ++j) ups.push_back(rnd(n, rng, 0.1f, 1.0f));
  for (std::string name : {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad",
                           "dp-fedavg", "median", "trimmed-mean", "krum", "multi-krum"}) {
    CAPTURE(name);
    StrategyOptions o;
    o.strategy = name == "dp-fedavg" ? "fedavg" : name;
    o.tau = 0.1;
    if (name == "dp-fedavg") {
      o.dp_clip_norm = 5.0;
      o.dp_noise_multiplier = 0.5;
      o.dp_seed = 9;
    }
    std::vector<std::vector<float>> res;
    for (auto* be : p.both()) {
      auto s = make_strategy(o, *be);
      REQUIRE(s.ok());
      std::vector<float> g(n, 1.0f);
      for (std::uint64_t round = 1; round <= 2; ++round) {
        REQUIRE(s.value()->begin_round(g, round));
        for (std::size_t j = 0; j < k; ++j)
          REQUIRE(s.value()->add_update({"c", j + 1, ups[j]}).ok());
        REQUIRE(s.value()->finish_round(g).ok());
      }
      res.push_back(g);
    }
    CHECK(max_rel(res[0], res[1]) < 1e-6);
  }
}

TEST_CASE("parity: finalize with every server step, and kept updates stored as clipped changes") {
  Pair p = backends();
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
    for (auto* be : p.both()) {
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
    CHECK(max_rel(outs[0], outs[1]) < 1e-6);
    if (kind != step::kReplace) CHECK(max_rel(ms[0], ms[1]) < 1e-6);
  }
  std::vector<std::vector<float>> med;
  for (auto* be : p.both()) {
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

TEST_CASE(
    "the GPU gives the same bits on two runs (norms, clip factors, sums, distances, robust)") {
  const std::size_t n = 2'000'003, k = 9;
  auto run = [&]() {
    auto g = make_backend("cuda", 2);
    REQUIRE(g.ok());
    AggregationBackend& be = *g.value();
    std::mt19937 rng(8);
    std::vector<float> ref = rnd(n, rng);
    auto sum = be.make_weighted_sum(n).value();
    auto set = be.make_update_set(n).value();
    std::vector<double> norms;
    AddOptions o;
    o.reference = ref;
    o.clip_norm = 1300.0;
    for (std::size_t j = 0; j < k; ++j) {
      std::vector<float> u = rnd(n, rng);
      auto r = sum->add(u, float(j + 1), o);
      REQUIRE(r.ok());
      norms.push_back(r->norm);
      norms.push_back(r->scale);
      REQUIRE(set->push(u).ok());
    }
    std::vector<float> acc = read_all(*sum), med(n), wm(n);
    REQUIRE(set->median(med).ok());
    std::vector<std::size_t> rows = {0, 4, 8};
    std::vector<float> w = {1, 2, 3};
    REQUIRE(set->weighted_mean(rows, w, wm).ok());
    auto d = set->pairwise_sq_distances();
    REQUIRE(d.ok());
    return std::make_tuple(acc, med, wm, d.value(), norms);
  };
  auto r1 = run(), r2 = run();
  CHECK(same_bits(std::get<0>(r1), std::get<0>(r2)));
  CHECK(same_bits(std::get<1>(r1), std::get<1>(r2)));
  CHECK(same_bits(std::get<2>(r1), std::get<2>(r2)));
  CHECK(std::get<3>(r1) == std::get<3>(r2));
  CHECK(std::get<4>(r1) == std::get<4>(r2));
}

TEST_CASE("registry: a GPU whose probe launch fails is refused, and auto uses the CPU") {
#ifdef FEDERA_HAVE_CUDA
  GpuFactory broken = [](unsigned) { return make_cuda_backend({}, CudaBackendOptions{true}); };
  Error why;
  auto a = make_backend("auto", 2, broken, &why);
  REQUIRE(a.ok());
  CHECK(a.value()->name() == "cpu");
  CHECK(why.code == ErrorCode::failed_precondition);
  CHECK(why.message.find("cannot run this build's kernels") != std::string::npos);
  CHECK(why.message.find("CMAKE_CUDA_ARCHITECTURES") != std::string::npos);
  auto c = make_backend("cuda", 2, broken, &why);
  CHECK_FALSE(c.ok());
  // The device is still usable afterwards.
  auto ok = make_cuda_backend({});
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.error().message));
  auto bw = ok.value()->measure_bandwidth();
  REQUIRE(bw.ok());
  CHECK(bw->memory_gbps > 0.0);
  CHECK(bw->host_to_device_gbps > 0.0);
#endif
}

int main(int argc, char** argv) {
  if (!cuda_backend_available()) {
#ifdef FEDERA_HAVE_CUDA
    std::cout << "skipped: no CUDA device visible to this process (CUDA build, no GPU)\n";
#else
    std::cout << "skipped: this build has no CUDA backend (configure with -DFEDERA_CUDA=ON)\n";
#endif
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
