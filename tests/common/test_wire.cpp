#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/wire.hpp"

using namespace federa;

TEST_CASE("envelope protobuf round trip") {
  wire::Envelope e;
  auto* t = e.mutable_fit_task();
  t->set_round(3);
  TrainConfig c;
  c.model = "mlp:784,64,10";
  c.lr = 0.1f;
  c.proximal_mu = 0.01f;
  c.extra["k"] = "v";
  *t->mutable_config() = to_wire(c);
  ModelLayout layout({{"w", {2, 3}}, {"b", {2}}});
  *t->mutable_layout() = to_wire(layout);
  std::string bytes;
  REQUIRE(e.SerializeToString(&bytes));
  wire::Envelope back;
  REQUIRE(back.ParseFromString(bytes));
  REQUIRE(back.has_fit_task());
  CHECK(back.fit_task().round() == 3);
  TrainConfig c2 = from_wire(back.fit_task().config());
  CHECK(c2.model == c.model);
  CHECK(c2.lr == doctest::Approx(0.1));
  CHECK(c2.proximal_mu == doctest::Approx(0.01));
  CHECK(c2.extra.at("k") == "v");
  auto l2 = from_wire(back.fit_task().layout());
  REQUIRE(l2.ok());
  CHECK(*l2 == layout);
  CHECK(std::string(payload_name(back)) == "fit_task");
}

TEST_CASE("layouts from the wire are validated") {
  ModelLayout layout({{"w", {2, 3}}});
  auto w = to_wire(layout);
  w.set_hash(w.hash() + 1);
  CHECK_FALSE(from_wire(w).ok());
  wire::Layout huge;
  auto* t = huge.add_tensors();
  t->set_name("x");
  t->add_shape(1ull << 20);
  t->add_shape(1ull << 20);
  huge.set_hash(ModelLayout({{"x", {1ull << 20, 1ull << 20}}}).hash());
  CHECK_FALSE(from_wire(huge).ok());
  CHECK_FALSE(from_wire(wire::Layout{}).ok());
}

TEST_CASE("chunking and reassembly") {
  std::vector<float> data(10);
  for (int i = 0; i < 10; ++i) data[i] = float(i) * 1.5f;
  auto chunks = make_chunks(4, data, 3);
  REQUIRE(chunks.size() == 4);
  CHECK(chunks[3].chunk().data().size() == 4);
  std::vector<float> out(10, -1.0f);
  ChunkAssembler a;
  REQUIRE(a.begin(4, 10, 4, 3, out).ok());
  for (const auto& c : chunks) {
    CHECK_FALSE(a.complete());
    REQUIRE(a.add(c.chunk()).ok());
  }
  CHECK(a.complete());
  CHECK(out == data);
  CHECK_FALSE(a.add(chunks[0].chunk()).ok());  // more than announced
}

TEST_CASE("reassembly rejects bad chunks before trusting them") {
  std::vector<float> data(6, 1.0f);
  std::vector<float> out(6);
  auto chunks = make_chunks(1, data, 4);
  ChunkAssembler a;
  CHECK_FALSE(a.begin(1, 7, 2, 4, out).ok());  // more elements than the destination
  CHECK_FALSE(a.begin(1, 6, 3, 4, out).ok());  // wrong chunk count
  REQUIRE(a.begin(1, 6, 2, 4, out).ok());
  CHECK_FALSE(a.add(chunks[1].chunk()).ok());  // out of order
  REQUIRE(a.begin(2, 6, 2, 4, out).ok());
  CHECK_FALSE(a.add(chunks[0].chunk()).ok());  // wrong round
  REQUIRE(a.begin(1, 6, 2, 4, out).ok());
  auto shortened = chunks[0].chunk();
  shortened.mutable_data()->pop_back();
  CHECK_FALSE(a.add(shortened).ok());  // wrong byte length
  data[5] = std::numeric_limits<float>::quiet_NaN();
  auto nan_chunks = make_chunks(1, data, 4);
  REQUIRE(a.begin(1, 6, 2, 4, out).ok());
  REQUIRE(a.add(nan_chunks[0].chunk()).ok());
  auto s = a.add(nan_chunks[1].chunk());
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("non-finite") != std::string::npos);
  data[5] = std::numeric_limits<float>::infinity();
  auto inf_chunks = make_chunks(1, data, 4);
  REQUIRE(a.begin(1, 6, 2, 4, out).ok());
  REQUIRE(a.add(inf_chunks[0].chunk()).ok());
  CHECK_FALSE(a.add(inf_chunks[1].chunk()).ok());
}

TEST_CASE("reassembly measures the update while it copies: the same sums however it was chunked") {
  const std::size_t n = 100'003;  // not a multiple of the lanes, the sum block or the chunks
  std::vector<float> x(n), ref(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::sin(0.001f * float(i)) * 3.0f;
    ref[i] = std::cos(0.002f * float(i));
  }
  SquareSums whole(true);
  whole.add(x.data(), ref.data(), n);
  double plain = 0.0, delta = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    plain += double(x[i]) * x[i];
    delta += (double(x[i]) - ref[i]) * (double(x[i]) - ref[i]);
  }
  CHECK(whole.sum_sq() == doctest::Approx(plain).epsilon(1e-12));
  CHECK(*whole.sum_sq_delta() == doctest::Approx(delta).epsilon(1e-12));
  // Block by block, as a backend sums on several threads.
  double blocks = 0.0, blocks_delta = 0.0;
  for (std::size_t b = 0; b < n; b += SquareSums::kBlock) {
    const std::size_t len = std::min(SquareSums::kBlock, n - b);
    blocks += SquareSums::block(x.data() + b, len);
    blocks_delta += SquareSums::block_delta(x.data() + b, ref.data() + b, len);
  }
  CHECK(blocks == whole.sum_sq());
  CHECK(blocks_delta == *whole.sum_sq_delta());

  for (std::size_t chunk :
       {std::size_t{7}, std::size_t{1000}, std::size_t{16384}, std::size_t{65'537}, n}) {
    CAPTURE(chunk);
    auto chunks = make_chunks(3, x, chunk);
    std::vector<float> out(n);
    ChunkAssembler a;
    REQUIRE(a.begin(3, n, static_cast<std::uint32_t>(chunks.size()), chunk, out, true, ref).ok());
    for (const auto& c : chunks) REQUIRE(a.add(c.chunk()).ok());
    REQUIRE(a.complete());
    UpdateFacts f = a.facts();
    CHECK(f.finite);
    CHECK(*f.sum_sq == whole.sum_sq());  // bit for bit
    CHECK(*f.sum_sq_delta == *whole.sum_sq_delta());
    ChunkAssembler b;  // without a reference: no delta sum
    REQUIRE(b.begin(3, n, static_cast<std::uint32_t>(chunks.size()), chunk, out).ok());
    for (const auto& c : chunks) REQUIRE(b.add(c.chunk()).ok());
    CHECK(b.facts().finite);
    CHECK(*b.facts().sum_sq == whole.sum_sq());
    CHECK_FALSE(b.facts().sum_sq_delta.has_value());
  }
}

TEST_CASE(
    "reassembly facts: a non-finite value is named, and finite is only vouched for when checked") {
  std::vector<float> x(5000, 0.5f), out(5000), ref(4999);
  x[3210] = -std::numeric_limits<float>::infinity();
  auto chunks = make_chunks(1, x, 1000);
  ChunkAssembler a;
  CHECK_FALSE(a.begin(1, 5000, 5, 1000, out, true, ref).ok());  // reference of the wrong size
  REQUIRE(a.begin(1, 5000, 5, 1000, out).ok());
  for (int c = 0; c < 3; ++c) REQUIRE(a.add(chunks[c].chunk()).ok());
  Status s = a.add(chunks[3].chunk());
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == ErrorCode::invalid_argument);
  CHECK(s.message() == "non-finite value at element 3210");
  CHECK_FALSE(a.facts().finite);

  ChunkAssembler unchecked;  // require_finite off: the values are taken, nothing is vouched for
  REQUIRE(unchecked.begin(1, 5000, 5, 1000, out, false).ok());
  for (const auto& c : chunks) REQUIRE(unchecked.add(c.chunk()).ok());
  CHECK(unchecked.complete());
  CHECK_FALSE(unchecked.facts().finite);
}
