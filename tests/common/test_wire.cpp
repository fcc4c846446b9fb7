#include <doctest/doctest.h>

#include <cmath>
#include <limits>

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
