// The external trainer contract (client/exec_trainer.hpp) with real programs that need no torch:
// test_exec_trainer_fake.py (standard library + python/federa_trainer.py) and
// test_exec_trainer_fake.sh. Each bad output must fail the task with a message naming the cause.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "client/exec_trainer.hpp"
#include "client/exec_trainer_files.hpp"
#include "client/exec_trainer_process.hpp"
#include "client/task.hpp"
#include "common/safetensors.hpp"

using namespace federa;
namespace fs = std::filesystem;

namespace {

const fs::path kTests = FEDERA_TESTS_DIR;
const std::string kFakePy = (kTests / "client/test_exec_trainer_fake.py").string();
const std::string kFakeSh = (kTests / "client/test_exec_trainer_fake.sh").string();

Model small_model() {
  Model m(ModelLayout({{"fc.weight", {3, 4}}, {"fc.bias", {3}}, {"head.weight", {2, 3}}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.25f * float(i) - 1.0f;
  return m;
}

// A model in every dtype class the layout carries: BF16 and F16 (aggregated, narrower on disk),
// F32, and an I64 step counter (carried, never averaged). Values on a 0.25 grid, so they and
// value + 0.5 are exact in BF16 and F16: a program's update can be checked for equality.
Model mixed_model() {
  Model m(ModelLayout({{"conv.weight", {2, 3}, DType::bf16},
                       {"bn.num_batches_tracked", {}, DType::i64},
                       {"bn.weight", {3}, DType::f16},
                       {"fc.bias", {2}, DType::f32}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.25f * float(i) - 1.0f;
  const std::int64_t steps = 1234;
  std::memcpy(m.carried_tensor(1).data(), &steps, sizeof steps);
  return m;
}

fs::path scratch(const std::string& stem) {
  auto d = fs::temp_directory_path() / (stem + std::to_string(std::random_device{}()));
  fs::create_directories(d);
  return d;
}

ExecTrainerOptions options(std::vector<std::string> command, const fs::path& root) {
  ExecTrainerOptions o;
  o.command = std::move(command);
  o.work_root = root;
  o.timeout = std::chrono::seconds(60);
  o.kill_grace = std::chrono::seconds(2);
  o.max_examples = 1'000'000;
  return o;
}

// Runs the Python fake in `mode` as round 3's fit task; returns the error (or none).
Result<FitResult> fit_with(const std::string& mode, const fs::path& root,
                           ExecTrainerOptions* tweak = nullptr) {
  ExecTrainerOptions o = tweak ? *tweak : options({"python3", kFakePy, mode}, root);
  if (tweak) o.command = {"python3", kFakePy, mode};
  ExecTrainer t(o);
  t.begin_task(3, 1);
  return t.fit(small_model(), TrainConfig{});
}

void expect_refused(const std::string& mode, const std::vector<std::string>& words) {
  CAPTURE(mode);
  auto root = scratch("federa_exec_");
  auto r = fit_with(mode, root);
  REQUIRE_FALSE(r.ok());
  for (const auto& w : words) {
    CAPTURE(w);
    CHECK(r.error().message.find(w) != std::string::npos);
  }
  MESSAGE(r.error().message.substr(0, 300));
  CHECK(fs::is_empty(root));  // the task folder is gone, whatever happened
  fs::remove_all(root);
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] == 'Z';
}

}  // namespace

TEST_CASE("exec trainer: a well-behaved program's update, metrics and environment") {
  auto root = scratch("federa_exec_ok_");
  ExecTrainer t(options({"python3", kFakePy, "ok"}, root));
  t.begin_task(3, 1);
  const Model global = small_model();
  auto r = t.fit(global, TrainConfig{});
  REQUIRE_MESSAGE(r.ok(), r.error().message);
  REQUIRE(r->weights.size() == global.data.size());
  for (std::size_t i = 0; i < global.data.size(); ++i)
    CHECK(r->weights[i] == global.data[i] + 0.5f);
  CHECK(r->num_examples == 103);  // 100 + FEDERA_ROUND
  CHECK(r->metrics.at("train_loss") == 0.5);
  CHECK(r->metrics.count("note") == 0);  // text metrics are left out
  CHECK(fs::is_empty(root));             // the task folder was removed
  CHECK(t.last_report().outcome == "exit status 0");

  SUBCASE("evaluate task") {
    auto e = t.evaluate(global, TrainConfig{});
    REQUIRE_MESSAGE(e.ok(), e.error().message);
    CHECK(e->loss == 0.25);
    CHECK(e->accuracy == 0.75);
    CHECK(e->num_examples == 40);
  }
  fs::remove_all(root);
}

TEST_CASE("exec trainer: a regression model's evaluation has a loss, no accuracy, its metrics") {
  auto root = scratch("federa_exec_regression_");
  ExecTrainer t(options({"python3", kFakePy, "regression"}, root));
  t.begin_task(2, 1);
  auto e = t.evaluate(small_model(), TrainConfig{});
  REQUIRE_MESSAGE(e.ok(), e.error().message);  // was refused: "needs ... accuracy"
  CHECK(e->loss == 3.5);
  CHECK_FALSE(e->accuracy);
  CHECK(e->metrics.at("r2") == 0.6);  // averaged by the coordinator as fed_r2
  CHECK(e->metrics.count("loss") == 0);
  ExecTrainer bad(options({"python3", kFakePy, "bad_accuracy"}, root));
  bad.begin_task(2, 1);
  auto refused = bad.evaluate(small_model(), TrainConfig{});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("fraction") != std::string::npos);
  fs::remove_all(root);
}

TEST_CASE("exec trainer: a shell program, argv placeholders and a shell command line") {
  auto root = scratch("federa_exec_sh_");
  const Model global = small_model();
  for (auto command :
       {std::vector<std::string>{"sh", kFakeSh, "ok"},
        std::vector<std::string>{"sh", kFakeSh, "args", "{input_model}", "{output_model}"},
        std::vector<std::string>{"sh '" + kFakeSh + "' args {input_model} {output_model}"}}) {
    CAPTURE(command.back());
    ExecTrainer t(options(command, root));
    auto r = t.fit(global, TrainConfig{});
    REQUIRE_MESSAGE(r.ok(), r.error().message);
    CHECK(r->weights == global.data);
    CHECK((r->num_examples == 7 || r->num_examples == 9));
  }
  fs::remove_all(root);
}

TEST_CASE("exec trainer: placeholders are quoted for the shell and left alone when unknown") {
  auto out =
      expand_command({"run {input_model} {unknown} ${HOME}"}, {{"input_model", "/a b/it's"}});
  CHECK(out == std::vector<std::string>{"run '/a b/it'\\''s' {unknown} ${HOME}"});
  out = expand_command({"run", "--in={input_model}"}, {{"input_model", "/a b"}});
  CHECK(out == std::vector<std::string>{"run", "--in=/a b"});
}

TEST_CASE("exec trainer: the program's failures fail the task with the cause first") {
  expect_refused(
      "fail", {"exit status 3", "ValueError: the agency's data file is missing", "stderr line 79"});
  expect_refused("segfault", {"the trainer was killed by signal 11 (SIGSEGV)"});
  expect_refused("no_model", {"wrote no model"});
  expect_refused("missing_tensor", {"1 missing tensor is: 'fc.weight'"});
  expect_refused("extra_tensor", {"'extra.bias'", "extra tensor"});
  expect_refused("wrong_shape", {"'fc.weight' has shape [13], the global model's is [3,4]"});
  expect_refused("wrong_dtype", {"'fc.weight' has dtype F16, the global model's is F32"});
  expect_refused("nan", {"holds NaN"});
  expect_refused("inf", {"holds Inf"});
  expect_refused("truncated", {"truncated"});
  expect_refused("oversized", {"oversized"});
  expect_refused("metrics_not_json", {"metrics.json: not valid JSON"});
  expect_refused("zero_examples", {"num_examples is 0"});
  expect_refused("absurd_examples",
                 {"num_examples is 1000000000000000, above this client's cap of 1000000"});
}

TEST_CASE("exec trainer: only the last 50 stderr lines travel") {
  auto root = scratch("federa_exec_tail_");
  auto r = fit_with("fail", root);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.rfind("the trainer failed with exit status 3", 0) == 0);
  CHECK(r.error().message.find("stderr line 30\n") == std::string::npos);  // 81 lines, 50 kept
  CHECK(r.error().message.find("stderr line 31\n") != std::string::npos);
  fs::remove_all(root);
}

TEST_CASE("exec trainer: exit 75 asks to try later") {
  auto root = scratch("federa_exec_later_");
  auto r = fit_with("later", root);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::unavailable);
  CHECK(r.error().message.find("try later") != std::string::npos);
  CHECK(r.error().message.find("GPU busy") != std::string::npos);
  fs::remove_all(root);
}

TEST_CASE("exec trainer: shell programs going wrong") {
  auto root = scratch("federa_exec_shbad_");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fail", "cannot read /data/agency.csv"},
      {"killed", "was killed by signal 9"},
      {"no_model", "wrote no model"},
      {"truncated", "truncated"},
      {"bad_metrics", "metrics.json: not valid JSON"},
      {"symlink", "symbolic link"}};
  for (const auto& c : cases) {
    const std::string& mode = c.first;  // not a structured binding: CAPTURE's lambda takes it
    const std::string& words = c.second;
    CAPTURE(mode);
    ExecTrainer t(options({"sh", kFakeSh, mode}, root));
    auto r = t.fit(small_model(), TrainConfig{});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(words) != std::string::npos);
  }
  fs::remove_all(root);
}

TEST_CASE("exec trainer: deadlines, SIGKILL after the grace, and nothing left running") {
  auto root = scratch("federa_exec_hang_");
  ExecTrainerOptions o = options({}, root);
  o.timeout = std::chrono::milliseconds(1500);
  o.kill_grace = std::chrono::milliseconds(300);

  SUBCASE("a program past its deadline") {
    auto r = fit_with("hang", root, &o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
    CHECK(r.error().message.find("deadline") != std::string::npos);
    CHECK(r.error().message.find("hanging") != std::string::npos);  // its stderr came along
  }
  SUBCASE("a program that ignores SIGTERM") {
    auto r = fit_with("hang_ignoring_term", root, &o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
  }
  SUBCASE("a program's own children die with its group") {
    const fs::path pid_file = root / "grandchild.pid";
    o.command = {"python3", kFakePy, "grandchild", (kTests / "../python").string(),
                 pid_file.string()};
    ExecTrainer t(o);
    auto r = t.fit(small_model(), TrainConfig{});
    REQUIRE_FALSE(r.ok());
    std::ifstream in(pid_file);
    pid_t pid = 0;
    in >> pid;
    REQUIRE(pid > 0);
    for (int i = 0; i < 100 && !process_gone(pid); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(process_gone(pid));
    fs::remove(pid_file);
  }
  fs::remove_all(root);
}

TEST_CASE("exec trainer: cancel() stops a running program") {
  auto root = scratch("federa_exec_cancel_");
  ExecTrainer t(options({"python3", kFakePy, "hang"}, root));
  Result<FitResult> r = Error{ErrorCode::internal, "not run"};
  std::thread worker([&] { r = t.fit(small_model(), TrainConfig{}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  t.cancel();
  worker.join();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::cancelled);
  fs::remove_all(root);
}

TEST_CASE("exec trainer: a program that cannot start") {
  auto root = scratch("federa_exec_nostart_");
  ExecTrainer t(options({"no-such-trainer-program", "x"}, root));
  auto r = t.fit(small_model(), TrainConfig{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("'no-such-trainer-program' is not an executable in PATH") !=
        std::string::npos);
  ExecTrainerOptions o = options({"sh", kFakeSh, "ok"}, root);
  o.working_directory = root / "missing";
  auto r2 = ExecTrainer(o).fit(small_model(), TrainConfig{});
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().message.find("No such file or directory") != std::string::npos);
  fs::remove_all(root);
}

TEST_CASE("exec trainer: run_task hands the task's round to the program") {
  auto root = scratch("federa_exec_task_");
  ExecTrainer t(options({"sh", kFakeSh, "ok"}, root));
  Task task;
  task.round = 42;
  task.model = std::make_shared<const Model>(small_model());
  TaskResult r = run_task(t, task);
  REQUIRE(r.output.ok());
  auto& fit = std::get<FitResult>(r.output.value());
  CHECK(fit.num_examples == 7);
  fs::remove_all(root);
}

TEST_CASE(
    "exec trainer files: global.safetensors is what the C++ reader reads, task.json names it") {
  auto root = scratch("federa_exec_files_");
  const Model m = small_model();
  REQUIRE(write_model_file(root / "g.safetensors", m).ok());
  auto back = load_safetensors(root / "g.safetensors");
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(back->model.layout == m.layout);
  CHECK(back->model.data == m.data);
  struct stat st {};
  REQUIRE(::stat((root / "g.safetensors").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // And what common writes, the exec reader takes.
  REQUIRE(save_safetensors_atomic(root / "c.safetensors", m).ok());
  auto w = read_trainer_model(root / "c.safetensors", m.layout);
  REQUIRE_MESSAGE(w.ok(), w.error().message);
  CHECK(*w == m.data);
  fs::remove_all(root);
}

TEST_CASE("exec trainer files: each tensor travels in the global model's dtype, both ways") {
  auto root = scratch("federa_exec_dtypes_");
  const Model m = mixed_model();
  REQUIRE(write_model_file(root / "g.safetensors", m).ok());
  auto back = load_safetensors(root / "g.safetensors");  // common's strict reader agrees
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(back->model.layout == m.layout);  // names, shapes and dtypes
  CHECK(back->model.data == m.data);
  CHECK(back->model.carried == m.carried);
  // 6 BF16 values (12 bytes), the I64 (8), 3 F16 (6), 2 F32 (8): narrow, not widened to F32.
  CHECK(fs::file_size(root / "g.safetensors") - 8 - [&] {
    std::ifstream in(root / "g.safetensors", std::ios::binary);
    std::uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    return n;
  }() == 6 * 2 + 8 + 3 * 2 + 2 * 4);

  SUBCASE("a file in the global's dtypes is read back as its float32 values") {
    REQUIRE(save_safetensors_atomic(root / "c.safetensors", m).ok());
    auto w = read_trainer_model(root / "c.safetensors", m.layout);
    REQUIRE_MESSAGE(w.ok(), w.error().message);
    CHECK(*w == m.data);
  }
  SUBCASE("a BF16 tensor returned as F32 is refused, naming both dtypes") {
    std::vector<TensorSpec> widened = m.layout.tensors();
    widened[0].dtype = DType::f32;
    Model f32{ModelLayout(widened)};
    f32.data = m.data;
    f32.carried = m.carried;
    REQUIRE(save_safetensors_atomic(root / "w.safetensors", f32).ok());
    auto w = read_trainer_model(root / "w.safetensors", m.layout);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().message ==
          "w.safetensors: tensor 'conv.weight' has dtype F32, the global model's is BF16");
  }
  SUBCASE("a carried tensor must keep its dtype; its value is the global's own") {
    std::vector<TensorSpec> specs = m.layout.tensors();
    specs[1].dtype = DType::i32;
    Model i32{ModelLayout(specs)};
    i32.data = m.data;
    REQUIRE(save_safetensors_atomic(root / "i.safetensors", i32).ok());
    auto w = read_trainer_model(root / "i.safetensors", m.layout);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().message.find("'bn.num_batches_tracked' has dtype I32, the global model's is "
                                 "I64") != std::string::npos);
    Model other = m;  // the trainer counted more steps: accepted, the floats are what it sent
    std::fill(other.carried.begin(), other.carried.end(), std::uint8_t{7});
    REQUIRE(save_safetensors_atomic(root / "o.safetensors", other).ok());
    auto o = read_trainer_model(root / "o.safetensors", m.layout);
    REQUIRE_MESSAGE(o.ok(), o.error().message);
    CHECK(*o == m.data);
  }
  fs::remove_all(root);
}

TEST_CASE(
    "exec trainer files: a tabular federation's schema and standardisation are JSON in task.json") {
  TrainConfig c;
  c.extra["schema"] =
      R"({"label":"y","task":"classification","classes":["a","b"],"features":[{"name":"x","type":"numeric"}]})";
  c.extra["standardization"] = R"({"columns":[{"name":"x","mean":2.5,"std":0.5}]})";
  c.extra["note"] = "{kept as text}";
  const auto task = boost::json::parse(task_json(TaskFiles{}, c, small_model().layout)).as_object();
  CHECK(task.at("schema").at("classes").as_array().size() == 2);
  CHECK(task.at("standardization").at("columns").as_array()[0].at("mean").as_double() == 2.5);
  const auto& hp = task.at("hyperparameters").as_object();
  CHECK_FALSE(hp.contains("schema"));
  CHECK(hp.at("note").as_string() == "{kept as text}");
}

TEST_CASE("exec trainer: a program's update in BF16, F16 and I64 through the whole task") {
  auto root = scratch("federa_exec_mixed_");
  ExecTrainer t(options({"python3", kFakePy, "ok"}, root));
  t.begin_task(3, 1);
  const Model global = mixed_model();
  auto r = t.fit(global, TrainConfig{});
  REQUIRE_MESSAGE(r.ok(), r.error().message);
  REQUIRE(r->weights.size() == global.data.size());
  for (std::size_t i = 0; i < global.data.size(); ++i)
    CHECK(r->weights[i] == global.data[i] + 0.5f);
  // The same program widening its BF16 and F16 tensors to F32 is refused before anything leaves.
  ExecTrainer wide(options({"python3", kFakePy, "as_f32"}, root));
  auto w = wide.fit(global, TrainConfig{});
  REQUIRE_FALSE(w.ok());
  CHECK(w.error().message.find("has dtype F32, the global model's is BF16") != std::string::npos);
  CHECK(fs::is_empty(root));
  fs::remove_all(root);
}

TEST_CASE("python/federa_trainer.py reads and writes what the C++ side does, in every backend") {
  // F32 edge values, and a model in BF16, F16, F32 and I64. The helper's other dtypes are
  // checked byte for byte in tests/python/test_federa_trainer.py.
  auto root = scratch("federa_exec_py_");
  Model f32 = small_model();
  f32.data[1] = -0.0f;
  f32.data[2] = 3.4028235e38f;
  f32.data[3] = 1.17549435e-38f;  // smallest normal
  f32.data[4] = 1.4e-45f;         // a subnormal
  int ran = 0;
  for (const Model& m : {f32, mixed_model()})
    for (const char* backend : {"python", "numpy", "torch"}) {
      CAPTURE(backend);
      CAPTURE(m.layout.tensors().size());
      REQUIRE(write_model_file(root / "cpp.safetensors", m).ok());
      const fs::path out = root / (std::string(backend) + ".safetensors");
      const std::string cmd =
          std::string(FEDERA_PYTHON) + " " + (kTests / "python/roundtrip.py").string() + " " +
          (root / "cpp.safetensors").string() + " " + out.string() + " " + backend;
      const int status = std::system(cmd.c_str());
      REQUIRE(WIFEXITED(status));
      if (WEXITSTATUS(status) == 77) continue;  // not installed here
      REQUIRE(WEXITSTATUS(status) == 0);
      ++ran;
      auto back = read_trainer_model(out, m.layout);
      REQUIRE_MESSAGE(back.ok(), back.error().message);
      REQUIRE(back->size() == m.data.size());
      CHECK(std::memcmp(back->data(), m.data.data(), m.data.size() * sizeof(float)) == 0);
      auto common = load_safetensors(out);  // common/safetensors.hpp agrees
      REQUIRE_MESSAGE(common.ok(), common.error().message);
      CHECK(common->model.data == *back);
      CHECK(common->model.carried == m.carried);  // the I64 counter's bytes too
      CHECK(common->model.layout == m.layout);    // dtypes kept by the helper
    }
  CHECK(ran >= 2);
  fs::remove_all(root);
}
