#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "common/model.hpp"

using namespace federa;

TEST_CASE("layout offsets, sizes and hash") {
  ModelLayout a({{"fc1.weight", {4, 3}}, {"fc1.bias", {4}}});
  CHECK(a.size() == 16);
  CHECK(a.offset(0) == 0);
  CHECK(a.offset(1) == 12);
  ModelLayout same({{"fc1.weight", {4, 3}}, {"fc1.bias", {4}}});
  CHECK(a.hash() == same.hash());
  CHECK(a == same);
  // Any change of name, shape or order changes the hash.
  CHECK(ModelLayout({{"fc1.weight", {3, 4}}, {"fc1.bias", {4}}}).hash() != a.hash());
  CHECK(ModelLayout({{"fc1.bias", {4}}, {"fc1.weight", {4, 3}}}).hash() != a.hash());
  CHECK(ModelLayout({{"fc2.weight", {4, 3}}, {"fc1.bias", {4}}}).hash() != a.hash());
  // Names and dims are length-prefixed, so regrouping cannot collide.
  CHECK(ModelLayout({{"ab", {2}}, {"c", {2}}}).hash() !=
        ModelLayout({{"a", {2}}, {"bc", {2}}}).hash());
}

TEST_CASE("model tensors are views into one buffer") {
  Model m(ModelLayout({{"w", {2, 2}}, {"b", {2}}}));
  REQUIRE(m.data.size() == 6);
  m.tensor(1)[1] = 5.0f;
  CHECK(m.data[5] == 5.0f);
  CHECK(m.tensor(0).size() == 4);
}

namespace {
// The layout hash as it was before dtypes existed (FNV-1a over name lengths, names, ranks and
// dims), computed here independently: all-F32 layouts must keep it, so clients and committed
// states from before keep matching.
std::uint64_t pre_dtype_hash(const std::vector<TensorSpec>& specs) {
  std::uint64_t h = 14695981039346656037ull;
  auto byte = [&](unsigned char b) {
    h ^= b;
    h *= 1099511628211ull;
  };
  auto u64 = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(static_cast<unsigned char>(v >> (8 * i)));
  };
  for (const auto& t : specs) {
    u64(t.name.size());
    for (char c : t.name) byte(static_cast<unsigned char>(c));
    u64(t.shape.size());
    for (auto d : t.shape) u64(d);
  }
  return h;
}
}  // namespace

TEST_CASE("layout: float tensors in one float32 buffer, integer tensors carried as bytes") {
  ModelLayout l({{"conv.weight", {4, 3}, DType::bf16},
                 {"bn.weight", {4}},
                 {"bn.num_batches_tracked", {}, DType::i64},
                 {"bn.running_mean", {4}},
                 {"head.weight", {2, 4}, DType::f16},
                 {"mask", {3}, DType::boolean}});
  CHECK(l.size() == 12 + 4 + 4 + 8);
  CHECK(l.offset(0) == 0);
  CHECK(l.offset(1) == 12);
  CHECK(l.offset(2) == 0);  // first carried byte
  CHECK(l.offset(3) == 16);
  CHECK(l.offset(4) == 20);
  CHECK(l.offset(5) == 8);
  CHECK(l.carried_bytes() == 11);
  CHECK(l.float_bytes() == 12 * 2 + 8 * 4 + 8 * 2);
  // Neighbouring F32 tensors merge into one run; carried tensors are not in the runs.
  CHECK(l.float_runs() ==
        std::vector<DTypeRun>{{12, DType::bf16}, {8, DType::f32}, {8, DType::f16}});
  Model m(l);
  CHECK(m.data.size() == 28);
  CHECK(m.carried.size() == 11);
  CHECK(m.carried_tensor(5).size() == 3);
  m.tensor(4)[0] = 2.0f;
  CHECK(m.data[20] == 2.0f);
}

TEST_CASE("layout hash: dtypes count, and an all-F32 layout keeps its pre-dtype hash") {
  const std::vector<TensorSpec> f32 = {{"w", {4, 3}}, {"b", {4}}};
  CHECK(ModelLayout(f32).hash() == pre_dtype_hash(f32));
  CHECK(ModelLayout({{"w", {4, 3}, DType::bf16}, {"b", {4}}}).hash() != ModelLayout(f32).hash());
  CHECK(ModelLayout({{"w", {4, 3}, DType::bf16}, {"b", {4}}}).hash() !=
        ModelLayout({{"w", {4, 3}, DType::f16}, {"b", {4}}}).hash());
  CHECK(ModelLayout({{"n", {}, DType::i64}}).hash() != ModelLayout({{"n", {}, DType::i32}}).hash());
  CHECK_FALSE(ModelLayout({{"w", {4, 3}, DType::bf16}}) == ModelLayout({{"w", {4, 3}}}));
}

TEST_CASE("float conversions: round to nearest even, exact round trips, NaN and Inf kept") {
  auto through = [](DType d, float x) {
    std::uint8_t b[4];
    float y;
    encode_floats(d, &x, 1, b);
    decode_floats(d, b, 1, &y);
    return y;
  };
  auto bits = [](DType d, float x) {
    std::uint8_t b[2];
    encode_floats(d, &x, 1, b);
    return static_cast<std::uint16_t>(b[0] | b[1] << 8);
  };
  // BF16 keeps the top 16 bits of a float32, rounding the rest to nearest, ties to even.
  CHECK(bits(DType::bf16, 1.0f) == 0x3f80);
  CHECK(bits(DType::bf16, -2.0f) == 0xc000);
  float tie_down, tie_up, above;
  const std::uint32_t td = 0x3f808000u, tu = 0x3f818000u, ab = 0x3f808001u;
  std::memcpy(&tie_down, &td, 4);  // halfway between 0x3f80 and 0x3f81: to even 0x3f80
  std::memcpy(&tie_up, &tu, 4);    // halfway between 0x3f81 and 0x3f82: to even 0x3f82
  std::memcpy(&above, &ab, 4);     // just above halfway: up
  CHECK(bits(DType::bf16, tie_down) == 0x3f80);
  CHECK(bits(DType::bf16, tie_up) == 0x3f82);
  CHECK(bits(DType::bf16, above) == 0x3f81);
  // F16: 1.0 = 0x3c00, 65504 is the largest finite, 1/3 rounds to 0x3555.
  CHECK(bits(DType::f16, 1.0f) == 0x3c00);
  CHECK(bits(DType::f16, 65504.0f) == 0x7bff);
  CHECK(bits(DType::f16, 1.0f / 3.0f) == 0x3555);
  CHECK(through(DType::f16, 1.0f / 3.0f) == 0.333251953125f);
  for (DType d : {DType::f32, DType::f16, DType::bf16}) {
    CHECK(std::isnan(through(d, std::numeric_limits<float>::quiet_NaN())));
    CHECK(through(d, std::numeric_limits<float>::infinity()) ==
          std::numeric_limits<float>::infinity());
    CHECK(through(d, -0.5f) == -0.5f);  // representable: exact
  }
  CHECK(std::isinf(through(DType::f16, 1e6f)));  // beyond F16's range
  CHECK(through(DType::f32, 0.1f) == 0.1f);
}

TEST_CASE("round_to_dtypes: the float32 view becomes what the stored dtype holds") {
  Model m(ModelLayout({{"a", {2}, DType::bf16}, {"b", {2}}, {"c", {1}, DType::f16}}));
  m.data = {0.1f, 1.0f, 0.1f, 1.0f / 3.0f, 0.1f};
  round_to_dtypes(m);
  CHECK(m.data[0] == 0.10009765625f);  // BF16 nearest to 0.1
  CHECK(m.data[1] == 1.0f);
  CHECK(m.data[2] == 0.1f);  // F32 untouched
  CHECK(m.data[3] == 1.0f / 3.0f);
  CHECK(m.data[4] == 0.0999755859375f);  // F16 nearest to 0.1
  const std::vector<float> once = m.data;
  round_to_dtypes(m);
  CHECK(m.data == once);  // idempotent
}
