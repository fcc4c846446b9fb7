#include <doctest/doctest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/fsutil.hpp"
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
  // a dtype federa can neither aggregate nor carry, refused with the reason
  auto f64 = decode_safetensors(
      with_header(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16));
  REQUIRE_FALSE(f64.ok());
  CHECK(f64.error().message.find("'a' has dtype F64") != std::string::npos);
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}})", 4))
                  .ok());
  // the byte size follows the dtype: 2 BF16 values are 4 bytes, not 8
  CHECK_FALSE(decode_safetensors(
                  with_header(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})", 8))
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

namespace {
// A hand-written file holding one tensor of every dtype federa takes, with odd sizes so that
// tensors after the BOOL one start unaligned.
std::string every_dtype_file() {
  struct T {
    const char* name;
    const char* dtype;
    std::vector<std::uint8_t> bytes;  // 2 elements each
  };
  const std::vector<T> tensors = {
      {"bool", "BOOL", {1, 0}},
      {"u8", "U8", {7, 255}},
      {"i8", "I8", {0x80, 0x7f}},
      {"f32", "F32", {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},  // 1.0, -2.0
      {"bf16", "BF16", {0x80, 0x3f, 0x49, 0x40}},         // 1.0, 3.140625
      {"f16", "F16", {0x00, 0x3c, 0x00, 0xc4}},           // 1.0, -4.0
      {"i16", "I16", {0xff, 0xff, 1, 0}},
      {"i32", "I32", {1, 2, 3, 4, 5, 6, 7, 8}},
      {"i64", "I64", {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
  };
  std::string json = "{", data;
  for (const auto& t : tensors) {
    json += (json.size() > 1 ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" +
            t.dtype + "\",\"shape\":[2],\"data_offsets\":[" + std::to_string(data.size()) + "," +
            std::to_string(data.size() + t.bytes.size()) + "]}";
    data.append(t.bytes.begin(), t.bytes.end());
  }
  json += "}";
  return with_header(json, 0) + data;
}
}  // namespace

TEST_CASE("safetensors: every dtype is read in file order and written back byte for byte") {
  const std::string original = every_dtype_file();
  auto f = decode_safetensors(original);
  REQUIRE(f.ok());
  const auto& layout = f->model.layout;
  REQUIRE(layout.tensors().size() == 9);
  CHECK(layout.tensors()[0].name == "bool");
  CHECK(layout.tensors()[0].dtype == DType::boolean);
  CHECK(layout.tensors()[4].dtype == DType::bf16);
  CHECK(layout.tensors()[8].dtype == DType::i64);
  // Float tensors in float32, in layout order; the rest as bytes.
  CHECK(f->model.data == std::vector<float>{1.0f, -2.0f, 1.0f, 3.140625f, 1.0f, -4.0f});
  CHECK(layout.carried_bytes() == 2 + 2 + 2 + 4 + 8 + 16);
  auto i64 = f->model.carried_tensor(8);
  std::int64_t second;
  std::memcpy(&second, i64.data() + 8, 8);
  CHECK(second == INT64_MAX);

  // Written back: the same names, dtypes, offsets and bytes (the writer's JSON differs only in
  // key order and padding, so compare what a reader sees).
  const std::string again = encode_safetensors(f->model);
  auto g = decode_safetensors(again);
  REQUIRE(g.ok());
  CHECK(g->model.layout == layout);
  CHECK(g->model.data == f->model.data);
  CHECK(g->model.carried == f->model.carried);
  std::uint64_t n_orig, n_again;
  std::memcpy(&n_orig, original.data(), 8);
  std::memcpy(&n_again, again.data(), 8);
  CHECK(original.substr(8 + n_orig) == again.substr(8 + n_again));
}

TEST_CASE("safetensors: written piece by piece, the bytes are those of the whole encoding") {
  // Big enough that F16 and BF16 are converted in several pieces.
  Model m(ModelLayout({{"a", {70000}, DType::f16}, {"b", {3}}, {"c", {140001}, DType::bf16}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = float(i % 1000) * 0.25f - 7.0f;
  const Metadata meta{{"federa.round", "3"}};
  const std::string whole = encode_safetensors(m, meta);
  std::string pieces;
  std::size_t calls = 0;
  REQUIRE(write_safetensors(m, meta, [&](std::string_view part) -> Status {
            pieces.append(part);
            ++calls;
            return {};
          }).ok());
  CHECK(pieces == whole);
  CHECK(calls >= 5);  // header, a (2 pieces), b, c (3 pieces)
  auto f = decode_safetensors(pieces);
  REQUIRE(f.ok());
  CHECK(f->model.data[70000] == m.data[70000]);  // b, F32, copied as is

  // A sink's error stops the writing and is what the caller gets.
  std::size_t seen = 0;
  Status s = write_safetensors(m, meta, [&](std::string_view) -> Status {
    return ++seen == 2 ? make_error("disk full") : Status{};
  });
  CHECK_FALSE(s.ok());
  CHECK(s.error().message == "disk full");
  CHECK(seen == 2);
}

TEST_CASE("write_file_atomic: a producer's error leaves the old file and no temp file behind") {
  const auto dir = std::filesystem::temp_directory_path() / "federa_fsutil_producer";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  REQUIRE(write_file_atomic(dir / "f", "old").ok());
  Status s = write_file_atomic(dir / "f", [](const ByteSink& sink) -> Status {
    if (Status w = sink("new, partly"); !w) return w;
    return make_error("encoder failed");
  });
  CHECK_FALSE(s.ok());
  CHECK(*read_file(dir / "f") == "old");
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 1);
  REQUIRE(write_file_atomic(dir / "f", [](const ByteSink& sink) -> Status {
            if (Status w = sink("new, "); !w) return w;
            return sink("whole");
          }).ok());
  CHECK(*read_file(dir / "f") == "new, whole");
  std::filesystem::remove_all(dir);
}

// A caller acts on the code (retry, tell the operator to free space, fix a path); every I/O
// failure of the atomic writer used to come back as "unknown".
TEST_CASE("write_file_atomic and sync_folder: failures carry a code and name the path") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / "federa_fsutil_codes";
  fs::remove_all(dir);
  fs::create_directories(dir);
  { std::ofstream(dir / "plain") << "x"; }
  Status missing = write_file_atomic(dir / "no-such-folder" / "f", "data");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::not_found);
  CHECK(missing.message().find("no-such-folder") != std::string::npos);
  Status under_file = write_file_atomic(dir / "plain" / "f", "data");
  REQUIRE_FALSE(under_file.ok());
  CHECK(under_file.error().code == ErrorCode::not_found);

  CHECK(sync_folder(dir).ok());
  Status gone = sync_folder(dir / "no-such-folder");
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == ErrorCode::not_found);
  CHECK(gone.message().find("cannot open folder") != std::string::npos);
  CHECK(gone.message().find("no-such-folder") != std::string::npos);
  CHECK_FALSE(sync_folder(dir / "plain").ok());  // a file is not a folder

  if (::geteuid() != 0) {  // root writes anywhere
    const auto ro = dir / "read-only";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    Status denied = write_file_atomic(ro / "f", "data");
    fs::permissions(ro, fs::perms::owner_all);
    REQUIRE_FALSE(denied.ok());
    CHECK(denied.error().code == ErrorCode::permission_denied);
  }
  CHECK(file_error_code(EACCES) == ErrorCode::permission_denied);
  CHECK(file_error_code(EROFS) == ErrorCode::permission_denied);
  CHECK(file_error_code(ENOSPC) == ErrorCode::resource_exhausted);
  CHECK(file_error_code(EDQUOT) == ErrorCode::resource_exhausted);
  CHECK(file_error_code(EEXIST) == ErrorCode::already_exists);
  CHECK(file_error_code(EIO) == ErrorCode::unavailable);
  fs::remove_all(dir);
}
