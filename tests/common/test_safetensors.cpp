#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "common/safetensors.hpp"

using namespace federa;

namespace {
Model sample() {
  Model m(ModelLayout({{"fc1.weight", {3, 2}}, {"fc1.bias", {3}}, {"scalar", {}}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.5f * float(i) - 1.0f;
  return m;
}
std::string with_header(const std::string& json, std::size_t data_bytes) {
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + std::string(data_bytes, '\0');
}
}  // namespace

TEST_CASE("safetensors round trip keeps names, shapes, order, values and metadata") {
  Model m = sample();
  std::string bytes = encode_safetensors(m, {{"round", "7"}});
  // The data section starts 8-byte aligned.
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  auto f = decode_safetensors(bytes);
  REQUIRE(f.ok());
  CHECK(f->model.layout == m.layout);
  CHECK(f->model.data == m.data);
  CHECK(f->metadata.at("round") == "7");

  auto path = std::filesystem::temp_directory_path() / "federa_test_model.safetensors";
  REQUIRE(save_safetensors_atomic(path, m).ok());
  auto g = load_safetensors(path);
  REQUIRE(g.ok());
  CHECK(g->model.data == m.data);
  std::filesystem::remove(path);
}

TEST_CASE("safetensors decoder rejects malformed files") {
  CHECK_FALSE(decode_safetensors("abc").ok());
  CHECK_FALSE(decode_safetensors(std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8)).ok());
  CHECK_FALSE(decode_safetensors(with_header("not json", 0)).ok());
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4))
                  .ok());
  // shape disagrees with the byte range
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8))
                  .ok());
  // out of bounds
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8))
                  .ok());
  // gap between tensors
  CHECK_FALSE(
      decode_safetensors(
          with_header(
              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              12))
          .ok());
  // trailing bytes
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8))
                  .ok());
  // negative or non-integer offsets
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4))
                  .ok());
  CHECK_FALSE(decode_safetensors(with_header(R"({"__metadata__":{"k":1}})", 0)).ok());
  // a well-formed hand-written file is accepted
  auto ok = decode_safetensors(
      with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
  REQUIRE(ok.ok());
  CHECK(ok->model.data.size() == 2);
}
