#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <string>
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

TEST_CASE("layouts keep their dtypes over the wire; bad dtypes and sizes are refused") {
  ModelLayout mixed({{"w", {2, 3}, DType::bf16}, {"n", {}, DType::i64}, {"b", {2}, DType::f16}});
  auto back = from_wire(to_wire(mixed));
  REQUIRE(back.ok());
  CHECK(*back == mixed);
  CHECK(back->hash() == mixed.hash());
  // A dtype changed in transit no longer matches the hash.
  auto w = to_wire(mixed);
  w.mutable_tensors(0)->set_dtype(wire::DTYPE_F32);
  CHECK_FALSE(from_wire(w).ok());
  // A dtype from a newer peer is refused, not guessed.
  auto unknown = to_wire(mixed);
  unknown.mutable_tensors(0)->set_dtype(static_cast<wire::DType>(42));
  auto refused = from_wire(unknown);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("unknown dtype 42") != std::string::npos);
  // Nothing to aggregate, or more carried bytes than a task message may hold.
  CHECK_FALSE(check_wire_layout(ModelLayout({{"n", {}, DType::i64}})).ok());
  CHECK_FALSE(
      check_wire_layout(ModelLayout({{"w", {2}}, {"big", {kMaxCarriedBytes + 1}, DType::u8}}))
          .ok());
  CHECK(check_wire_layout(ModelLayout({{"w", {2}}, {"ok", {kMaxCarriedBytes}, DType::u8}})).ok());
  // A zero-sized tensor is allowed (PyTorch has them); the model around it is not empty.
  CHECK(from_wire(to_wire(ModelLayout({{"w", {2}}, {"empty", {0, 4}}}))).ok());
}

TEST_CASE("chunks carry each element in its tensor's dtype and arrive as float32") {
  // Runs: 7 BF16, 5 F32, 6 F16; chunks of 4 elements cut through every run boundary.
  ModelLayout layout(
      {{"a", {7}, DType::bf16}, {"n", {1}, DType::i64}, {"b", {5}}, {"c", {2, 3}, DType::f16}});
  Model m(layout);
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.25f * float(i) - 1.5f + 0.001f;
  round_to_dtypes(m);  // values the narrow dtypes hold exactly
  const auto& runs = layout.float_runs();
  auto chunks = make_chunks(9, m.data, 4, runs);
  REQUIRE(chunks.size() == 5);
  std::uint64_t bytes = 0;
  for (const auto& c : chunks) bytes += c.chunk().data().size();
  CHECK(bytes == 7 * 2 + 5 * 4 + 6 * 2);
  CHECK(bytes == layout.float_bytes());
  CHECK(chunks[0].chunk().data().size() == 8);   // elements 0-3: BF16
  CHECK(chunks[1].chunk().data().size() == 10);  // 4-6 BF16, 7 F32
  CHECK(wire_bytes(runs, 4, 4) == 10);
  std::vector<float> ref(m.data.size(), 0.5f), out(m.data.size());
  ChunkAssembler a;
  REQUIRE(a.begin(9, out.size(), 5, 4, out, true, ref, runs).ok());
  for (const auto& c : chunks) REQUIRE(a.add(c.chunk()).ok());
  REQUIRE(a.complete());
  CHECK(out == m.data);
  // The facts are those of the float32 values, as if the update had come in F32.
  ChunkAssembler plain;
  std::vector<float> out32(m.data.size());
  auto chunks32 = make_chunks(9, m.data, 4);
  REQUIRE(plain.begin(9, out32.size(), 5, 4, out32, true, ref).ok());
  for (const auto& c : chunks32) REQUIRE(plain.add(c.chunk()).ok());
  CHECK(a.facts().finite);
  CHECK(a.facts().sum_sq == plain.facts().sum_sq);
  CHECK(a.facts().sum_sq_delta == plain.facts().sum_sq_delta);
}

TEST_CASE("typed chunks: F32-sized chunks, NaN in BF16 and runs that miss the size are refused") {
  ModelLayout layout({{"a", {6}, DType::bf16}});
  std::vector<float> x(6, 1.0f), out(6);
  ChunkAssembler a;
  REQUIRE(a.begin(1, 6, 2, 3, out, true, {}, layout.float_runs()).ok());
  auto as_f32 = make_chunks(1, x, 3);  // a client that ignored the dtype
  auto s = a.add(as_f32[0].chunk());
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("has 12 bytes, expected 6") != std::string::npos);

  x[4] = std::numeric_limits<float>::quiet_NaN();
  auto nan = make_chunks(1, x, 3, layout.float_runs());
  ChunkAssembler b;
  REQUIRE(b.begin(1, 6, 2, 3, out, true, {}, layout.float_runs()).ok());
  REQUIRE(b.add(nan[0].chunk()).ok());
  auto bad = b.add(nan[1].chunk());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().find("element 4") != std::string::npos);

  ChunkAssembler c;
  const std::vector<DTypeRun> short_runs{{5, DType::bf16}};
  CHECK_FALSE(c.begin(1, 6, 2, 3, out, true, {}, short_runs).ok());
}

namespace {
// What protobuf reads from `bytes` as a chunk, or nullopt when it is not a chunk envelope.
std::optional<ChunkView> protobuf_chunk(const std::string& bytes, wire::Envelope& e) {
  if (!e.ParseFromString(bytes) || !e.has_chunk()) return std::nullopt;
  return view_of(e.chunk());
}
bool same(const ChunkView& a, const ChunkView& b) {
  return a.round == b.round && a.index == b.index && a.offset == b.offset && a.data == b.data;
}
}  // namespace

TEST_CASE("parse_chunk_envelope reads protobuf's chunks in place, and declines anything else") {
  std::vector<float> x(40);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i) - 7.5f;
  for (std::uint64_t round : {0ull, 3ull, 1ull << 50}) {
    for (std::uint32_t i = 0; i < 3; ++i) {
      const std::string bytes = serialize_chunk(round, x, 16, {}, i);
      auto c = parse_chunk_envelope(bytes);
      REQUIRE(c.has_value());
      wire::Envelope e;
      CHECK(same(*c, *protobuf_chunk(bytes, e)));
      // In place: the payload is a view into the received bytes.
      CHECK(c->data.data() >= bytes.data());
      CHECK(c->data.data() + c->data.size() <= bytes.data() + bytes.size());
    }
  }
  wire::Envelope chunk = make_chunk(2, x, 16, {}, 1);
  auto with = [&](auto edit) {
    wire::Envelope e = chunk;
    edit(e);
    std::string s;
    e.SerializeToString(&s);
    return s;
  };
  const std::string good = with([](wire::Envelope&) {});
  CHECK(parse_chunk_envelope(good).has_value());
  // Declined, for protobuf to parse as usual:
  CHECK_FALSE(parse_chunk_envelope("").has_value());
  CHECK_FALSE(parse_chunk_envelope(good.substr(0, good.size() - 1)).has_value());  // truncated
  CHECK_FALSE(
      parse_chunk_envelope(good + std::string("\x08\x01", 2)).has_value());  // more after it
  CHECK_FALSE(parse_chunk_envelope(with([](wire::Envelope& e) {
                e.mutable_hello()->set_software("a");
              })).has_value());  // another payload
  // A field twice (protobuf keeps the last), an unknown field, a too-large index: protobuf's.
  std::string twice = good;
  twice[1] = static_cast<char>(static_cast<unsigned char>(twice[1]) + 2);  // one-byte length
  twice.insert(2, std::string("\x08\x05", 2));                             // round = 5 first
  wire::Envelope e;
  REQUIRE(protobuf_chunk(twice, e).has_value());
  CHECK(e.chunk().round() == 2);
  CHECK_FALSE(parse_chunk_envelope(twice).has_value());
  std::string unknown = good;
  unknown[1] = static_cast<char>(static_cast<unsigned char>(unknown[1]) + 2);
  unknown.insert(2, std::string("\x38\x01", 2));  // field 7, varint
  REQUIRE(protobuf_chunk(unknown, e).has_value());
  CHECK_FALSE(parse_chunk_envelope(unknown).has_value());
  std::string big_index = std::string("\x22\x06\x10\x80\x80\x80\x80\x10", 8);  // index 2^32
  REQUIRE(protobuf_chunk(big_index, e).has_value());
  CHECK(e.chunk().index() == 0);  // protobuf truncates to 32 bits
  CHECK_FALSE(parse_chunk_envelope(big_index).has_value());
}

TEST_CASE("parse_chunk_envelope: over random edits of a chunk, whatever it reads protobuf reads") {
  std::vector<float> x(12, 1.5f);
  const std::string base = serialize_chunk(9, x, 8, {}, 1);
  std::mt19937 rng(7);
  std::size_t read = 0, declined = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string b = base;
    const int edits = 1 + int(rng() % 3);
    for (int k = 0; k < edits; ++k) {
      const std::size_t at = rng() % (b.size() + 1);
      switch (rng() % 3) {
        case 0:
          if (at < b.size()) b[at] = static_cast<char>(rng());
          break;
        case 1:
          b.insert(at, 1, static_cast<char>(rng()));
          break;
        default:
          if (at < b.size()) b.erase(at, 1);
          break;
      }
    }
    auto c = parse_chunk_envelope(b);
    if (!c) {
      ++declined;
      continue;
    }
    ++read;
    wire::Envelope e;
    auto p = protobuf_chunk(b, e);
    REQUIRE(p.has_value());
    CHECK(same(*c, *p));
  }
  CHECK(read > 100);  // edits in the payload keep it a chunk
  CHECK(declined > 100);
}
