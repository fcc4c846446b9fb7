// The CPU aggregation backend on its own (what add() may and may not do to the accumulator, the
// facts measured on receipt, determinism, the thread pool) and the registry's choice of backend.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "common/wire.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cpu_backend.hpp"
#include "coordinator/strategies.hpp"

using namespace federa;

namespace {

std::unique_ptr<AggregationBackend> cpu(unsigned threads = 2) {
  return std::make_unique<CpuBackend>(threads);
}

std::vector<float> random_update(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> read_all(WeightedSum& s) {
  std::vector<float> out(s.size());
  REQUIRE(s.read(out, 1.0f).ok());
  return out;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// What the coordinator's receive path learns: the update sent through make_chunks and a
// ChunkAssembler, with `reference` as the round's model when given.
UpdateFacts received_facts(const std::vector<float>& x, std::size_t chunk_elements,
                           std::span<const float> reference = {}) {
  std::vector<float> dest(x.size());
  ChunkAssembler in;
  auto chunks = make_chunks(1, x, chunk_elements);
  REQUIRE(in.begin(1, x.size(), static_cast<std::uint32_t>(chunks.size()), chunk_elements, dest,
                   true, reference)
              .ok());
  for (const auto& c : chunks) REQUIRE(in.add(c.chunk()).ok());
  REQUIRE(in.complete());
  REQUIRE(dest == x);
  return in.facts();
}

// A GPU factory that finds a device it cannot use, as a GPU busy in exclusive mode or without a
// kernel image for its architecture looks to the registry.
Result<std::unique_ptr<AggregationBackend>> unusable_gpu(unsigned) {
  return make_error(ErrorCode::unavailable,
                    "all CUDA-capable devices are busy or unavailable (simulated)");
}

}  // namespace

TEST_CASE("cpu weighted sum: a rejected update leaves the accumulator bit-identical") {
  // Several chunks per thread, so a late bad value is met after earlier chunks were seen.
  const std::size_t n = 600'001;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(11);
  const std::vector<float> good_a = random_update(n, rng), good_b = random_update(n, rng);

  std::vector<float> huge_then_nan(n, 1e30f);  // finite, huge: adding and subtracting wipes acc
  huge_then_nan[n - 2] = nan;
  std::vector<float> nan_late = random_update(n, rng);  // ordinary values: rounding residue
  nan_late[n - 5] = nan;
  std::vector<float> inf_mid = random_update(n, rng);
  inf_mid[n / 2] = -inf;
  std::vector<float> too_long = random_update(n, rng, 100.0f);

  for (unsigned threads : {1u, 2u, 3u}) {
    CAPTURE(threads);
    CpuBackend backend(threads);
    auto sum = backend.make_weighted_sum(n);
    REQUIRE(sum.ok());
    WeightedSum& s = *sum.value();
    REQUIRE(s.add(good_a, 3.0f).ok());
    REQUIRE(s.add(good_b, 0.5f).ok());
    const std::vector<float> before = read_all(s);

    CHECK_FALSE(s.add(huge_then_nan, 7.0f).ok());
    CHECK(bit_identical(read_all(s), before));
    CHECK_FALSE(s.add(nan_late, 2.0f).ok());
    CHECK(bit_identical(read_all(s), before));
    CHECK_FALSE(s.add(inf_mid, 2.0f).ok());
    CHECK(bit_identical(read_all(s), before));
    AddOptions bound;
    bound.max_norm = 10.0;
    CHECK_FALSE(s.add(too_long, 1.0f, bound).ok());
    CHECK(bit_identical(read_all(s), before));
    AddOptions delta;
    delta.reference = good_a;
    CHECK_FALSE(s.add(huge_then_nan, 1.0f, delta).ok());
    CHECK(bit_identical(read_all(s), before));

    // A rejected first update of a round leaves nothing behind either.
    REQUIRE(s.reset().ok());
    CHECK_FALSE(s.add(huge_then_nan, 7.0f).ok());
    REQUIRE(s.add(good_a, 3.0f).ok());
    auto only = backend.make_weighted_sum(n);
    REQUIRE(only.ok());
    REQUIRE(only.value()->add(good_a, 3.0f).ok());
    CHECK(bit_identical(read_all(s), read_all(*only.value())));
  }
}

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

TEST_CASE("cpu weighted sum: accumulate matches a double reference, threads 1..3") {
  std::mt19937 rng(1);
  const std::size_t n = 100003;  // odd size, above the serial threshold
  std::vector<std::vector<float>> xs;
  std::vector<float> w = {3, 1, 7, 2.5f};
  for (std::size_t k = 0; k < w.size(); ++k) xs.push_back(random_update(n, rng));
  for (unsigned threads : {1u, 2u, 3u}) {
    auto b = cpu(threads);
    auto sum = b->make_weighted_sum(n);
    REQUIRE(sum.ok());
    for (std::size_t k = 0; k < w.size(); ++k) {
      auto r = sum.value()->add(xs[k], w[k]);
      REQUIRE(r.ok());
      double ref = 0;
      for (float v : xs[k]) ref += double(v) * v;
      CHECK(r->norm == doctest::Approx(std::sqrt(ref)).epsilon(1e-5));
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

TEST_CASE("u32 sum wraps mod 2^32") {
  auto b = cpu();
  auto u = b->make_u32_sum(3);
  REQUIRE(u.ok());
  std::vector<std::uint32_t> a = {0xffffffffu, 5u, 1u << 31}, c = {2u, 7u, 1u << 31}, out(3);
  REQUIRE(u.value()->add(a).ok());
  REQUIRE(u.value()->add(c).ok());
  REQUIRE(u.value()->read(out).ok());
  CHECK(out[0] == 1u);
  CHECK(out[1] == 12u);
  CHECK(out[2] == 0u);
}

TEST_CASE("thread pool: parallel_for covers every index exactly once, for many sizes and runs") {
  for (unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{40000},
                          std::size_t{100001}}) {
      std::vector<int> hits(n, 0);
      for (int rep = 0; rep < 20; ++rep)
        pool.parallel_for(n, [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; ++i) ++hits[i];
        });
      CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 20; }));
    }
  }
}

TEST_CASE("thread pool: callers on two threads take turns") {
  ThreadPool pool(2);
  std::vector<int> a(200000, 0), b(200000, 0);
  std::thread other([&] {
    for (int r = 0; r < 50; ++r)
      pool.parallel_for(b.size(), [&](std::size_t lo, std::size_t hi) {
        for (std::size_t i = lo; i < hi; ++i) ++b[i];
      });
  });
  for (int r = 0; r < 50; ++r)
    pool.parallel_for(a.size(), [&](std::size_t lo, std::size_t hi) {
      for (std::size_t i = lo; i < hi; ++i) ++a[i];
    });
  other.join();
  CHECK(std::all_of(a.begin(), a.end(), [](int h) { return h == 50; }));
  CHECK(std::all_of(b.begin(), b.end(), [](int h) { return h == 50; }));
}

TEST_CASE("registry: auto falls back to the CPU when a GPU is present but unusable, and says why") {
  Error why;
  auto a = make_backend("auto", 2, unusable_gpu, &why);
  REQUIRE(a.ok());
  CHECK(a.value()->name() == "cpu");
  CHECK(why.code == ErrorCode::unavailable);
  CHECK(why.message.find("busy") != std::string::npos);
  auto c = make_backend("cuda", 2, unusable_gpu, &why);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().code == ErrorCode::unavailable);
  CHECK(c.error().message.find("busy") != std::string::npos);

  // No device at all, and a build without a GPU backend: auto uses the CPU, cuda is refused.
  GpuFactory none = [](unsigned) -> Result<std::unique_ptr<AggregationBackend>> {
    return make_error(ErrorCode::not_found, "no CUDA device found");
  };
  auto n = make_backend("auto", 1, none, &why);
  REQUIRE(n.ok());
  CHECK(n.value()->name() == "cpu");
  CHECK(why.code == ErrorCode::not_found);
  auto nb = make_backend("cuda", 1, GpuFactory{}, &why);
  REQUIRE_FALSE(nb.ok());
  CHECK(nb.error().message.find("no CUDA backend") != std::string::npos);

  // A usable GPU is taken by both.
  GpuFactory works = [](unsigned t) -> Result<std::unique_ptr<AggregationBackend>> {
    return std::unique_ptr<AggregationBackend>(std::make_unique<CpuBackend>(t));
  };
  CHECK(make_backend("auto", 1, works, nullptr).ok());
  CHECK(make_backend("cuda", 1, works, nullptr).ok());
}

TEST_CASE(
    "cpu weighted sum: facts measured on receipt give the same bits as the backend's own check") {
  const std::size_t n = 300'007;
  std::mt19937 rng(21);
  const std::vector<float> ref = random_update(n, rng), a = random_update(n, rng),
                           b = random_update(n, rng);
  for (std::size_t chunk : {std::size_t{1} << 16, std::size_t{77'777}, n}) {
    CAPTURE(chunk);
    for (bool delta : {false, true}) {
      CAPTURE(delta);
      AddOptions plain;
      if (delta) plain.reference = ref;
      plain.clip_norm = 400.0;  // clips some: the scale comes from the norm
      AddOptions known = plain;
      std::vector<float> out_plain, out_known;
      std::vector<double> norms_plain, norms_known;
      for (unsigned threads : {1u, 3u}) {
        CpuBackend be(threads);
        auto s1 = be.make_weighted_sum(n).value();
        auto s2 = be.make_weighted_sum(n).value();
        for (const auto* x : {&a, &b}) {
          known.known = received_facts(
              *x, chunk, delta ? std::span<const float>(ref) : std::span<const float>());
          CHECK(known.known.finite);
          auto r1 = s1->add(*x, 2.0f, plain);
          auto r2 = s2->add(*x, 2.0f, known);
          REQUIRE(r1.ok());
          REQUIRE(r2.ok());
          norms_plain.push_back(r1->norm);
          norms_known.push_back(r2->norm);
          CHECK(r1->scale < 1.0);
        }
        out_plain = read_all(*s1);
        out_known = read_all(*s2);
        CHECK(bit_identical(out_plain, out_known));
      }
      // The norm does not depend on the thread count or on how the update was chunked.
      CHECK(norms_plain == norms_known);
      CHECK(norms_plain[0] == norms_plain[2]);
    }
  }
}

TEST_CASE("cpu weighted sum and update set: known facts reject without reading the update") {
  const std::size_t n = 50'000;
  std::mt19937 rng(5);
  const std::vector<float> x = random_update(n, rng);
  CpuBackend be(2);
  auto sum = be.make_weighted_sum(n).value();
  REQUIRE(sum->add(x, 1.0f).ok());
  const std::vector<float> before = read_all(*sum);
  AddOptions o;
  o.max_norm = 1.0;
  o.known = received_facts(x, 4096);
  auto r = sum->add(x, 1.0f, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::invalid_argument);
  CHECK(r.error().message.find("exceeds the bound") != std::string::npos);
  CHECK(bit_identical(read_all(*sum), before));
  // Facts that do not cover what the options need (a delta norm with a reference) are ignored.
  AddOptions d;
  d.reference = x;
  d.max_norm = 1.0;
  d.known = o.known;
  d.known.sum_sq_delta.reset();
  auto rd = sum->add(x, 1.0f, d);  // the change is 0: within the bound once measured
  REQUIRE(rd.ok());
  CHECK(rd->norm == 0.0);

  auto set = be.make_update_set(n).value();
  REQUIRE(set->push(x).ok());
  CHECK_FALSE(set->push(x, o).ok());
  CHECK(set->count() == 1);
}

TEST_CASE("cpu update set: a rejected push keeps nothing; rows are reused after clear") {
  const std::size_t n = 40'001;
  std::mt19937 rng(8);
  std::vector<std::vector<float>> ups;
  for (int j = 0; j < 5; ++j) ups.push_back(random_update(n, rng));
  std::vector<float> bad = ups[0];
  bad[n - 1] = std::numeric_limits<float>::quiet_NaN();
  CpuBackend be(2);
  auto set = be.make_update_set(n).value();
  std::vector<float> first(n), second(n);
  for (int round = 0; round < 2; ++round) {
    REQUIRE(set->clear().ok());
    for (int j = 0; j < 5; ++j) {
      REQUIRE(set->push(ups[j]).ok());
      if (j == 2) CHECK_FALSE(set->push(bad).ok());
    }
    CHECK(set->count() == 5);
    REQUIRE(set->median(round == 0 ? first : second).ok());
  }
  CHECK(bit_identical(first, second));
  std::vector<float> expect(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<float> v;
    for (auto& u : ups) v.push_back(u[i]);
    std::sort(v.begin(), v.end());
    expect[i] = v[2];
  }
  CHECK(bit_identical(first, expect));
}

TEST_CASE("cpu backend: two runs give the same bits (sums, norms, distances, robust reductions)") {
  const std::size_t n = 250'003, k = 9;
  auto run = [&]() {
    std::mt19937 rng(31);
    std::vector<std::vector<float>> ups;
    for (std::size_t j = 0; j < k; ++j) ups.push_back(random_update(n, rng));
    CpuBackend be(3);
    auto sum = be.make_weighted_sum(n).value();
    auto set = be.make_update_set(n).value();
    std::vector<double> norms;
    for (std::size_t j = 0; j < k; ++j) {
      norms.push_back(sum->add(ups[j], float(j + 1)).value().norm);
      REQUIRE(set->push(ups[j]).ok());
    }
    std::vector<float> acc = read_all(*sum), med(n), tm(n), wm(n);
    REQUIRE(set->median(med).ok());
    REQUIRE(set->trimmed_mean(2, tm).ok());
    std::vector<std::size_t> rows = {0, 3, 8};
    std::vector<float> w = {1, 2, 3};
    REQUIRE(set->weighted_mean(rows, w, wm).ok());
    auto d = set->pairwise_sq_distances();
    REQUIRE(d.ok());
    return std::make_tuple(acc, med, tm, wm, d.value(), norms);
  };
  auto r1 = run(), r2 = run();
  CHECK(bit_identical(std::get<0>(r1), std::get<0>(r2)));
  CHECK(bit_identical(std::get<1>(r1), std::get<1>(r2)));
  CHECK(bit_identical(std::get<2>(r1), std::get<2>(r2)));
  CHECK(bit_identical(std::get<3>(r1), std::get<3>(r2)));
  CHECK(std::get<4>(r1) == std::get<4>(r2));
  CHECK(std::get<5>(r1) == std::get<5>(r2));
}

TEST_CASE("host buffers: aligned, writable, read straight by the backend") {
  auto b = cpu();
  auto h = b->make_host_buffer(4096);
  REQUIRE(h.ok());
  AggregationBackend::HostBuffer buf = std::move(h.value());
  CHECK(reinterpret_cast<std::uintptr_t>(buf.get()) % 64 == 0);
  std::fill(buf.get(), buf.get() + 4096, 1.0f);
  auto sum = b->make_weighted_sum(4096).value();
  REQUIRE(sum->add({buf.get(), 4096}, 2.0f).ok());
  CHECK(read_all(*sum)[4095] == 2.0f);
}

TEST_CASE(
    "strategies: updates carrying the receive path's facts give the same rounds, bit for bit") {
  const std::size_t n = 120'001, k = 6;
  std::mt19937 rng(17);
  std::vector<float> global = random_update(n, rng, 0.1f);
  std::vector<std::vector<float>> ups;
  for (std::size_t j = 0; j < k; ++j) {
    ups.push_back(global);
    for (float& v : ups.back()) v += std::normal_distribution<float>(0.0f, 0.01f)(rng);
  }
  ups[3][n / 2] = std::numeric_limits<float>::quiet_NaN();  // rejected either way
  for (std::string name : {"fedavg", "fedadam", "dp-fedavg", "median", "multi-krum"}) {
    for (bool bound : {false, true}) {
      CAPTURE(name);
      CAPTURE(bound);
      StrategyOptions o;
      o.strategy = name == "dp-fedavg" ? "fedavg" : name;
      o.tau = 0.1;
      if (bound) o.max_update_norm = 5.0;  // the changes' norms are ~3.5
      if (name == "dp-fedavg") {
        o.dp_clip_norm = 0.5;
        o.dp_noise_multiplier = 0.3;
        o.dp_seed = 4;
      }
      std::vector<std::vector<float>> results;
      for (bool with_facts : {false, true}) {
        CpuBackend be(2);
        auto s = make_strategy(o, be);
        REQUIRE(s.ok());
        std::vector<float> g = global;
        REQUIRE(s.value()->begin_round(g, 1));
        for (std::size_t j = 0; j < k; ++j) {
          ClientUpdate u{"c" + std::to_string(j), 10 + j, ups[j]};
          if (with_facts) {
            if (j == 3) continue;  // the receive path refuses a non-finite upload itself
            const bool change = s.value()->measures_change();
            u.known = received_facts(
                ups[j], 50'000, change ? std::span<const float>(global) : std::span<const float>());
          }
          Status st = s.value()->add_update(u);
          CHECK(st.ok() == (j != 3));
        }
        REQUIRE(s.value()->finish_round(g).ok());
        results.push_back(g);
      }
      CHECK(bit_identical(results[0], results[1]));
    }
  }
}
