#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/fsutil.hpp"
#include "coordinator/state_store.hpp"

using namespace federa;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const char* name) {
  auto d = fs::temp_directory_path() / (std::string(name) + std::to_string(std::random_device{}()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::vector<std::string> lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}
}  // namespace

TEST_CASE("state store commits and loads the last round") {
  auto dir = fresh_dir("federa_state_");
  StateStore store(dir);
  auto none = store.load();
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());

  Model m(ModelLayout({{"w", {3}}}));
  m.data = {1, 2, 3};
  StrategyState st;
  st.tensors["momentum"] = {0.5f, -0.5f};
  st.values["clip"] = "0.25";
  REQUIRE(store.commit(1, m, st, R"({"round":1})", "softmax:3,1").ok());
  m.data = {4, 5, 6};
  REQUIRE(store.commit(2, m, st, R"({"round":2})", "softmax:3,1").ok());
  auto loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  const auto& s = **loaded;
  CHECK(s.round == 2);
  CHECK(s.model.data == std::vector<float>{4, 5, 6});
  CHECK(s.strategy.tensors.at("momentum") == std::vector<float>{0.5f, -0.5f});
  CHECK(s.strategy.values.at("clip") == "0.25");
  CHECK(s.metrics_line == R"({"round":2})");
  CHECK(s.model_spec == "softmax:3,1");
  // Old round files are cleaned up; the convenience copy exists.
  CHECK_FALSE(fs::exists(dir / "model-000001.safetensors"));
  CHECK(fs::exists(dir / "model-000002.safetensors"));
  CHECK(fs::exists(dir / "global.safetensors"));
  fs::remove_all(dir);
}

TEST_CASE("a corrupt state file is an error, not a crash") {
  auto dir = fresh_dir("federa_state_bad_");
  REQUIRE(write_file_atomic(dir / "state.json", "{\"round\": 3}").ok());
  CHECK_FALSE(StateStore(dir).load().ok());
  REQUIRE(write_file_atomic(dir / "state.json", "garbage").ok());
  CHECK_FALSE(StateStore(dir).load().ok());
  fs::remove_all(dir);
}

TEST_CASE("metrics log reconciles with the committed round on resume") {
  auto dir = fresh_dir("federa_metrics_");
  auto path = dir / "metrics.jsonl";
  {
    std::ofstream out(path);
    out << R"({"round":1,"loss":1})" << "\n" << R"({"round":2,"loss":2})" << "\n" << R"({"round":3,"loss":3})" << "\n";
  }
  // Died after appending round 3 but before committing it: round 3 goes.
  MetricsLog log;
  REQUIRE(log.open(path, 2, R"({"round":2,"loss":2})").ok());
  CHECK(lines(path) == std::vector<std::string>{R"({"round":1,"loss":1})", R"({"round":2,"loss":2})"});
  // Died after committing round 3 but before appending it: it is restored.
  REQUIRE(log.open(path, 3, R"({"round":3,"loss":3})").ok());
  CHECK(lines(path).size() == 3);
  CHECK(lines(path).back() == R"({"round":3,"loss":3})");
  REQUIRE(log.append(R"({"round":4,"loss":4})").ok());
  CHECK(lines(path).size() == 4);
  // A fresh run starts an empty file.
  REQUIRE(log.open(path, 0, "").ok());
  CHECK(lines(path).empty());
  fs::remove_all(dir);
}
