// The external trainer: an agency's own program (PyTorch, R, anything) run once per task under
// the contract of docs/external-trainer.md. The command comes only from the client's local
// configuration, never from the coordinator.
//
//   ExecTrainerOptions o;
//   o.command = {"python3", "train.py", "--out", "{output_model}"};   // or one string: /bin/sh -c
//   o.timeout = std::chrono::minutes(30);
//   ExecTrainer trainer(o);
//   Result<FitResult> r = trainer.fit(global, config);   // checked: names, shapes, dtypes, finite,
//                                                        // 0 < num_examples <= max_examples
//   trainer.cancel();                                    // from another thread: stop it now
//
// Per task it makes a private folder (0700) under $STATE_DIRECTORY (systemd's writable state
// folder) or the temporary folder, puts global.safetensors and task.json in it, runs the program
// in its own process group with FEDERA_* variables, relays its output to the log as
// "[trainer] ...", and reads model.safetensors and metrics.json back. Exit 0 is done, 75
// (EX_TEMPFAIL) is "try later" (ErrorCode::unavailable), anything else fails the task with the
// cause first and the last lines of the program's stderr after it. Quantisation and masking for
// secure aggregation happen after fit() returns, in the client: the program sees no key or
// certificate, and no descriptor of the client's.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "client/trainer.hpp"
#include "common/task_kind.hpp"

namespace federa {

struct ExecTrainerOptions {
  // One element: a shell command line, run by /bin/sh -c. More: the program and its arguments,
  // run directly. Either may hold placeholders ({input_model}, {output_model}, {metrics},
  // {task_config}, {work_dir}, {task}, {round}) that become the task's values.
  std::vector<std::string> command;
  std::chrono::milliseconds timeout{std::chrono::hours(1)};
  std::chrono::milliseconds kill_grace{std::chrono::seconds(10)};
  std::uint64_t max_examples = 100'000'000;  // a larger num_examples fails the task
  // Where per-task folders go; empty: $STATE_DIRECTORY/trainer (systemd), else the temp folder.
  std::filesystem::path work_root;
  std::filesystem::path working_directory;  // the program's; empty: the client's own
  bool keep_work_dirs = false;              // leave each task's folder behind (debugging)
  std::uint64_t num_train_examples = 0;     // announced in Hello (the program is not asked)
  std::size_t stderr_tail_lines = 50;
  // Takes evaluate tasks (said in Hello). The program's held-out count is known only when it
  // answers one, so an external trainer evaluates unless told it cannot.
  bool evaluates = true;
};

// What the last task left behind, for `federa-client trainer-test`.
struct ExecTaskReport {
  std::filesystem::path work_dir;  // removed unless keep_work_dirs
  std::string outcome;             // "exit status 0", "killed by signal 9 (SIGKILL)", ...
  double seconds = 0;              // the program's wall time
  std::uint64_t output_bytes = 0;  // size of model.safetensors
};

class ExecTrainer final : public Trainer {
 public:
  explicit ExecTrainer(ExecTrainerOptions options);

  Result<FitResult> fit(const Model& global, const TrainConfig& config) override;
  Result<EvaluateResult> evaluate(const Model& model, const TrainConfig& config) override;
  std::uint64_t num_train_examples() const override { return opt_.num_train_examples; }
  bool can_evaluate() const override { return opt_.evaluates; }
  void begin_task(std::uint64_t round, std::uint32_t attempt) override {
    round_ = round;
    attempt_ = attempt;
  }

  // Thread-safe: ends the running program (SIGTERM to its group, SIGKILL after kill_grace) and
  // makes every later task fail with ErrorCode::cancelled.
  void cancel() { cancelled_ = true; }
  const ExecTaskReport& last_report() const { return report_; }
  const ExecTrainerOptions& options() const { return opt_; }

 private:
  struct Outputs {
    std::vector<float> weights;  // fit only
    std::uint64_t num_examples = 0;
    std::map<std::string, double> metrics;
  };
  Result<Outputs> run(TaskKind kind, const Model& model, const TrainConfig& config);

  ExecTrainerOptions opt_;
  std::uint64_t round_ = 0;
  std::uint32_t attempt_ = 1;
  std::atomic<bool> cancelled_{false};
  ExecTaskReport report_;
};

// For `federa-client doctor`: the program the command starts (found and executable) and a task
// folder made and removed under the work root; the text says both, the error what is wrong.
Result<std::string> check_exec_setup(const ExecTrainerOptions& options);

// Where a client's task folders go when `configured` is empty: $STATE_DIRECTORY/trainer (the
// first of its folders) under systemd, else the temporary folder ($TMPDIR or /tmp).
std::filesystem::path default_work_root(const std::filesystem::path& configured);

// The command with placeholders filled in; `values` maps "input_model" to a path, etc. In a
// shell command line (one element) each value is single-quoted for the shell.
std::vector<std::string> expand_command(const std::vector<std::string>& command,
                                        const std::map<std::string, std::string>& values);

}  // namespace federa
