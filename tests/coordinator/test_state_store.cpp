#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/fsutil.hpp"
#include "common/safetensors.hpp"
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
  // global.safetensors is the round's file itself (a hard link), not a second copy written and
  // synced each round; it loads on its own with the round's values.
  CHECK(fs::equivalent(dir / "global.safetensors", dir / "model-000002.safetensors"));
  auto global = load_safetensors(dir / "global.safetensors");
  REQUIRE(global.ok());
  CHECK(global->model.data == std::vector<float>{4, 5, 6});
  CHECK(global->metadata.at("federa.round") == "2");
  fs::remove_all(dir);
}

TEST_CASE("state store: a tabular federation's table is committed with the round") {
  auto dir = fresh_dir("federa_state_table_");
  StateStore store(dir);
  Model m(ModelLayout({{"w", {2}}}));
  m.data = {1, 2};
  REQUIRE(store.commit(1, m, {}, R"({"round":1})", "softmax:1,2").ok());
  auto plain = store.load();
  REQUIRE(plain.ok());
  CHECK((*plain)->table.empty());  // a federation without a table commits none

  const std::string table = R"({"schema":{"label":"y","classes":["no","yes"]}})";
  REQUIRE(store.commit(2, m, {}, R"({"round":2})", "softmax:1,2", {}, table).ok());
  auto loaded = store.load();
  REQUIRE(loaded.ok());
  CHECK((*loaded)->table == table);
  CHECK_FALSE(store.commit(3, m, {}, R"({"round":3})", "softmax:1,2", {}, "not json").ok());
  CHECK((*store.load())->round == 2);  // the refused commit changed nothing
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
    out << R"({"round":1,"loss":1})"
        << "\n"
        << R"({"round":2,"loss":2})"
        << "\n"
        << R"({"round":3,"loss":3})"
        << "\n";
  }
  // Died after appending round 3 but before committing it: round 3 goes.
  MetricsLog log;
  REQUIRE(log.open(path, 2, R"({"round":2,"loss":2})", MetricsStart::resume).ok());
  CHECK(lines(path) ==
        std::vector<std::string>{R"({"round":1,"loss":1})", R"({"round":2,"loss":2})"});
  // Died after committing round 3 but before appending it: it is restored.
  REQUIRE(log.open(path, 3, R"({"round":3,"loss":3})", MetricsStart::resume).ok());
  REQUIRE(lines(path).size() == 3);
  CHECK(lines(path).back() == R"({"round":3,"loss":3})");
  REQUIRE(log.append(R"({"round":4,"loss":4})").ok());
  CHECK(lines(path).size() == 4);
  fs::remove_all(dir);
}

// Issue 9, defect 7: a new run truncated --metrics-out (the help says append). Before the fix
// open(path, 0, "") emptied the file; now a new federation refuses a file holding rounds and
// leaves it as it was.
TEST_CASE("metrics log: a new run never truncates a file that holds rounds; it is refused") {
  auto dir = fresh_dir("federa_metrics_new_");
  auto path = dir / "metrics.jsonl";
  {
    std::ofstream out(path);
    out << R"({"round":1,"loss":1})"
        << "\n"
        << R"({"round":2,"loss":2})"
        << "\n";
  }
  MetricsLog log;
  Status s = log.open(path, 0, "", MetricsStart::new_run);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == ErrorCode::already_exists);
  CHECK(s.message().find("--resume") != std::string::npos);
  CHECK(lines(path).size() == 2);
  // An empty or missing file is fine for a new run, and appends go to its end.
  auto fresh = dir / "fresh.jsonl";
  REQUIRE(log.open(fresh, 0, "", MetricsStart::new_run).ok());
  REQUIRE(log.append(R"({"round":1})").ok());
  CHECK(lines(fresh) == std::vector<std::string>{R"({"round":1})"});
  // Resuming keeps lines it does not understand (only uncommitted rounds are dropped).
  {
    std::ofstream out(path, std::ios::app);
    out << "# operator note"
        << "\n";
  }
  REQUIRE(log.open(path, 2, R"({"round":2,"loss":2})", MetricsStart::resume).ok());
  CHECK(lines(path).size() == 3);
  fs::remove_all(dir);
}

// Issue 9, defect 7: fixed temp name opened without O_EXCL|O_NOFOLLOW, 0644 files, names read
// back from state.json not validated. Before the fix the planted symlink was written through
// and the state file's '../' name was followed.
TEST_CASE(
    "state store: files 0600, no write through a planted temp file, names from state.json "
    "checked") {
  auto dir = fresh_dir("federa_state_safe_");
  StateStore store(dir);
  REQUIRE(store.check_usable().ok());
  Model m(ModelLayout({{"w", {3}}}));
  m.data = {1, 2, 3};
  // A symlink planted where the old fixed temp name was must not be written through.
  auto victim = dir / "victim.txt";
  { std::ofstream(victim) << "untouched"; }
  fs::create_symlink(victim, dir / "state.json.tmp");
  REQUIRE(store.commit(1, m, {}, R"({"round":1})", "softmax:3,1").ok());
  CHECK(read_file(victim).value() == "untouched");
  for (const char* f : {"state.json", "global.safetensors", "model-000001.safetensors",
                        "strategy-000001.safetensors"}) {
    CAPTURE(f);
    CHECK((fs::status(dir / f).permissions() & (fs::perms::group_all | fs::perms::others_all)) ==
          fs::perms::none);
  }
  // No temp file is left behind.
  for (const auto& e : fs::directory_iterator(dir))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  // A state file naming a file outside the folder is refused, not followed.
  auto outside = fresh_dir("federa_state_outside_");
  REQUIRE(save_safetensors_atomic(outside / "model-000009.safetensors", m).ok());
  const std::string evil =
      std::string(
          R"({"round":9,"metrics":"","model_spec":"softmax:3,1","strategy_file":"strategy-000001.safetensors","model_file":"../)") +
      outside.filename().string() + R"(/model-000009.safetensors"})";
  REQUIRE(write_file_atomic(dir / "state.json", evil).ok());
  auto loaded = store.load();
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error().message.find("model_file") != std::string::npos);
  REQUIRE(
      write_file_atomic(
          dir / "state.json",
          R"({"round":9,"metrics":"","model_spec":"x","model_file":"/etc/passwd","strategy_file":"strategy-000001.safetensors"})")
          .ok());
  CHECK_FALSE(store.load().ok());
  fs::remove_all(dir);
  fs::remove_all(outside);
}

// Issue 9, defect 7: an unusable --state-dir was found only after round 1 trained.
TEST_CASE("state store: an unusable folder is found before anything trains") {
  auto dir = fresh_dir("federa_state_unusable_");
  auto file = dir / "not-a-folder";
  { std::ofstream(file) << "x"; }
  Status s = StateStore(file).check_usable();
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("not a folder") != std::string::npos);
  CHECK_FALSE(StateStore(file / "below").check_usable().ok());
  if (::geteuid() != 0) {  // root writes anywhere
    auto ro = dir / "read-only";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_FALSE(StateStore(ro).check_usable().ok());
    fs::permissions(ro, fs::perms::owner_all);
  }
  auto fresh = dir / "new" / "state";
  CHECK(StateStore(fresh).check_usable().ok());
  CHECK(fs::is_directory(fresh));
  CHECK(fs::is_empty(fresh));
  fs::remove_all(dir);
}

// Operators' API (issue 12) serves committed models by round from history/.
TEST_CASE(
    "state store: history keeps the last --keep-models committed models, oldest pruned first") {
  auto dir = fresh_dir("federa_state_history_");
  StateStore store(dir, 3);
  Model m(ModelLayout({{"w", {2}}}));
  for (std::uint64_t r = 1; r <= 5; ++r) {
    m.data = {float(r), -float(r)};
    REQUIRE(store.commit(r, m, {}, "{}", "softmax:2,1", {0.5, 0.25}).ok());
  }
  CHECK(store.history_rounds() == std::vector<std::uint64_t>{3, 4, 5});
  for (std::uint64_t r = 3; r <= 5; ++r) {
    auto h = load_safetensors(store.history_model(r));
    REQUIRE(h.ok());
    CHECK(h->model.data == std::vector<float>{float(r), -float(r)});
    CHECK(h->metadata.at("federa.round") == std::to_string(r));
  }
  CHECK(fs::equivalent(store.history_model(5), dir / "global.safetensors"));
  // Linked files are replaced, never written in place: the next commit leaves round 5's
  // history file as it was.
  m.data = {6, -6};
  REQUIRE(store.commit(6, m, {}, "{}", "softmax:2,1", {0.5, 0.25}).ok());
  CHECK(load_safetensors(store.history_model(5))->model.data == std::vector<float>{5, -5});
  CHECK(load_safetensors(dir / "global.safetensors")->model.data == std::vector<float>{6, -6});
  auto loaded = store.load();
  REQUIRE(loaded.ok());
  CHECK((*loaded)->update_norms == std::vector<double>{0.5, 0.25});
  StateStore none(dir / "none", 0);
  REQUIRE(none.commit(1, m, {}, "{}", "softmax:2,1").ok());
  CHECK(none.history_rounds().empty());
  fs::remove_all(dir);
}
