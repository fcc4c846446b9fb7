// A federation started from a model file with mixed dtypes (issue 10, item 1), over fake links:
// BF16/F16 tensors travel in their dtype and are averaged in float32, integer tensors are carried
// (the global keeps its own value), and the committed global.safetensors has the input's names
// and dtypes. With FEDERA_TEST_MODEL=FILE and FEDERA_TEST_STATE=DIR the same round runs on a
// PyTorch state_dict file and commits into DIR, for tests/integration/torch_state_dict.sh to
// load with model.load_state_dict().
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>

#include "common/fsutil.hpp"
#include "common/safetensors.hpp"
#include "coordinator/initial_model.hpp"
#include "tests/coordinator/orchestrator_harness.hpp"

using namespace federa;
using namespace federa::testing;
namespace fs = std::filesystem;

namespace {

Model built_in_mixed_model() {
  Model m(ModelLayout({{"conv.weight", {2, 3}, DType::bf16},
                       {"bn.num_batches_tracked", {}, DType::i64},
                       {"bn.running_mean", {3}},
                       {"head.weight", {2, 2}, DType::f16},
                       {"mask", {3}, DType::boolean}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.1f * float(i) - 0.35f;
  round_to_dtypes(m);
  const std::int64_t batches = 4711;
  std::memcpy(m.carried.data(), &batches, 8);
  m.carried[8] = 1;
  m.carried[10] = 1;
  return m;
}

// The float32 values a tensor of `layout` holds after passing through its dtype.
std::vector<float> stored(const ModelLayout& layout, std::vector<float> values) {
  Model m(layout);
  m.data = std::move(values);
  round_to_dtypes(m);
  return m.data;
}

std::vector<float> plus(const std::vector<float>& v, float d) {
  std::vector<float> out(v);
  for (float& x : out) x += d;
  return out;
}

}  // namespace

TEST_CASE("orchestrator: a model from a file keeps its dtypes; floats averaged, integers carried") {
  const char* env_model = std::getenv("FEDERA_TEST_MODEL");
  const char* env_state = std::getenv("FEDERA_TEST_STATE");
  Model initial = built_in_mixed_model();
  if (env_model) {
    auto loaded = load_initial_model(std::string("safetensors:") + env_model, 1);
    REQUIRE_MESSAGE(loaded, loaded.error().message);
    initial = std::move(loaded->model);
  }
  const Model original = initial;
  const ModelLayout& layout = original.layout;
  const fs::path dir = env_state ? fs::path(env_state) : fresh_test_dir("federa_orch_model_");
  OrchestratorOptions o;
  o.rounds = 1;
  o.min_clients = 2;
  o.chunk_elements = 4;  // chunks cut through the dtype runs
  OrchestratorHarness h(o, initial, StateStore(dir));
  FakeClient a(*h.orch, "a"), b(*h.orch, "b");
  REQUIRE(a.join(10));
  REQUIRE(b.join(10));
  h.start();
  auto ta = wait_for_typed_task(a), tb = wait_for_typed_task(b);
  REQUIRE(ta);
  REQUIRE(tb);
  // The global model arrives whole: its floats in their dtypes (fewer bytes than F32), its
  // integer tensors as they were.
  CHECK(ta->model.layout == layout);
  CHECK(ta->model.data == original.data);
  CHECK(ta->model.carried == original.carried);
  CHECK(ta->chunk_bytes == layout.float_bytes());
  if (layout.float_bytes() < layout.size() * 4) CHECK(ta->chunk_bytes < layout.size() * 4);

  // Two updates, equal weights: the mean of what each became in its dtype, stored in the dtype.
  const auto ua = plus(original.data, 1.0f), ub = plus(original.data, 3.0f);
  REQUIRE(upload_typed(a, 1, ua, 10, layout, 4));
  REQUIRE(upload_typed(b, 1, ub, 10, layout, 4));
  REQUIRE(h.finish());
  const auto sa = stored(layout, ua), sb = stored(layout, ub);
  std::vector<float> mean(sa.size());
  for (std::size_t i = 0; i < mean.size(); ++i) mean[i] = 0.5f * sa[i] + 0.5f * sb[i];
  const auto expected = stored(layout, mean);
  const auto& got = h.orch->global().data;
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-6));
  CHECK(stored(layout, got) == got);  // the global holds exactly what its dtypes hold
  CHECK(h.orch->global().carried == original.carried);  // carried, never averaged

  // The committed file: the input's names, order, shapes and dtypes; the new values.
  auto file = load_safetensors(dir / "global.safetensors");
  REQUIRE(file);
  CHECK(file->model.layout == layout);
  CHECK(file->model.data == got);
  CHECK(file->model.carried == original.carried);
  if (!env_state) fs::remove_all(dir);
}

TEST_CASE(
    "initial model: a malformed file or one federa cannot aggregate is refused with the reason") {
  const fs::path dir = fresh_test_dir("federa_initial_model_");
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& bytes) {
    REQUIRE(write_file_atomic(dir / name, bytes));
    return "safetensors:" + (dir / name).string();
  };
  auto refusal = [](const std::string& spec) {
    auto m = load_initial_model(spec, 1);
    REQUIRE_FALSE(m);
    return m.error().message;
  };
  auto header = [](const std::string& json, const std::string& data) {
    std::string out(8, '\0');
    const std::uint64_t n = json.size();
    std::memcpy(out.data(), &n, 8);
    return out + json + data;
  };
  CHECK(refusal(write("short.safetensors", "abc")).find("shorter than its 8-byte header") !=
        std::string::npos);
  CHECK(refusal(write("f64.safetensors",
                      header(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                             std::string(8, '\0'))))
            .find("'w' has dtype F64") != std::string::npos);
  CHECK(refusal(write("ints.safetensors",
                      header(R"({"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                             std::string(8, '\0'))))
            .find("no floating-point") != std::string::npos);
  CHECK(refusal("safetensors:" + (dir / "missing.safetensors").string())
            .find("missing.safetensors") != std::string::npos);
  // A good file: the clients are told its name, not the coordinator's folders.
  Model m = built_in_mixed_model();
  auto spec = write("good.safetensors", encode_safetensors(m));
  auto ok = load_initial_model(spec, 1);
  REQUIRE(ok);
  CHECK(ok->wire_spec == "safetensors:good.safetensors");
  CHECK(ok->network == nullptr);
  CHECK(ok->model.layout == m.layout);
  // A file a federa run committed from a built-in spec names it, so built-in trainers go on.
  auto net = load_initial_model("softmax:4,3", 7);
  REQUIRE(net);
  auto again =
      load_initial_model(write("committed.safetensors",
                               encode_safetensors(net->model, {{"federa.model", "softmax:4,3"}})),
                         1);
  REQUIRE(again);
  CHECK(again->wire_spec == "softmax:4,3");
  CHECK(again->network != nullptr);
  CHECK(again->model.data == net->model.data);
  fs::remove_all(dir);
}
