#include "client/exec_trainer.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "client/exec_trainer_files.hpp"
#include "client/exec_trainer_process.hpp"
#include "common/fsutil.hpp"

extern char** environ;

namespace federa {

namespace fs = std::filesystem;

namespace {

// The exit status of "try again later" (sysexits.h's EX_TEMPFAIL).
constexpr int kTryLater = 75;
// The most of the program's stderr that travels to the coordinator.
constexpr std::size_t kMaxTailBytes = 8192;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// The client's environment without what is not the trainer's business (a stale FEDERA_*, the
// folder of systemd credentials, where the client's private key may be), plus the task's.
std::vector<std::string> task_environment(const std::map<std::string, std::string>& task_vars) {
  std::vector<std::string> env;
  bool has_unbuffered = false;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("FEDERA_") || kv.starts_with("CREDENTIALS_DIRECTORY=")) continue;
    if (kv.starts_with("PYTHONUNBUFFERED=")) has_unbuffered = true;
    env.emplace_back(kv);
  }
  // Python buffers a pipe's output; unbuffered, its lines reach the log as they are printed.
  if (!has_unbuffered) env.emplace_back("PYTHONUNBUFFERED=1");
  for (const auto& [k, v] : task_vars) env.push_back(k + "=" + v);
  return env;
}

// The program's last stderr lines, at most kMaxTailBytes, for the task's error message.
std::string stderr_tail(const std::deque<std::string>& lines) {
  std::string out;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (out.size() + it->size() + 1 > kMaxTailBytes) break;
    out = *it + (out.empty() ? "" : "\n") + out;
  }
  return out;
}

// A per-task folder, mode 0700, removed when the task is over (unless kept).
class WorkDir {
 public:
  WorkDir(fs::path dir, bool keep) : dir_(std::move(dir)), keep_(keep) {}
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  ~WorkDir() {
    std::error_code ec;
    if (!keep_ && !dir_.empty()) fs::remove_all(dir_, ec);
  }
  const fs::path& path() const { return dir_; }

  static Result<fs::path> make(const fs::path& root) {
    std::error_code ec;
    if (!fs::exists(root, ec)) {
      fs::create_directories(root, ec);
      if (ec)
        return make_error(ErrorCode::failed_precondition, "cannot create the trainer's work root " +
                                                              root.string() + ": " + ec.message());
      ::chmod(root.c_str(), 0700);
    }
    std::string tmpl = (root / "federa-task-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))  // mode 0700
      return make_error(ErrorCode::failed_precondition,
                        "cannot create a task folder in " + root.string() + ": " +
                            std::strerror(errno) +
                            " (set --trainer-work-root to a writable folder)");
    return fs::path(tmpl);
  }

 private:
  fs::path dir_;
  bool keep_;
};

Error process_failure(const ProcessOutcome& o, const ExecTrainerOptions& opt) {
  ErrorCode code = ErrorCode::aborted;
  std::string what = "the trainer " + describe_outcome(o, opt.timeout);
  switch (o.end) {
    case ProcessOutcome::End::exited:
      if (o.status == kTryLater) {
        code = ErrorCode::unavailable;
        what = "the trainer asked to try later (exit status 75)";
      } else {
        what = "the trainer failed with exit status " + std::to_string(o.status);
      }
      break;
    case ProcessOutcome::End::signalled:
      break;
    case ProcessOutcome::End::timed_out:
      code = ErrorCode::deadline_exceeded;
      break;
    case ProcessOutcome::End::cancelled:
      code = ErrorCode::cancelled;
      break;
  }
  const std::string tail = stderr_tail(o.stderr_tail);
  if (!tail.empty()) what += "; its stderr ended with:\n" + tail;
  return Error{code, what};
}

}  // namespace

fs::path default_work_root(const fs::path& configured) {
  if (!configured.empty()) return configured;
  if (const char* state = std::getenv("STATE_DIRECTORY"); state && *state) {
    std::string first(state);
    first = first.substr(0, first.find(':'));  // systemd lists one folder per StateDirectory=
    return fs::path(first) / "trainer";
  }
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  return ec ? fs::path("/tmp") : tmp;
}

std::vector<std::string> expand_command(const std::vector<std::string>& command,
                                        const std::map<std::string, std::string>& values) {
  const bool shell = command.size() == 1;
  std::vector<std::string> out;
  for (const auto& arg : command) {
    std::string s;
    for (std::size_t i = 0; i < arg.size();) {
      const std::size_t close = arg[i] == '{' ? arg.find('}', i) : std::string::npos;
      auto it =
          close != std::string::npos ? values.find(arg.substr(i + 1, close - i - 1)) : values.end();
      if (it == values.end()) {
        s += arg[i++];
        continue;
      }
      s += shell ? shell_quote(it->second) : it->second;
      i = close + 1;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> check_exec_setup(const ExecTrainerOptions& o) {
  if (o.command.empty()) return make_error(ErrorCode::invalid_argument, "no --trainer-command");
  const std::string first = o.command.size() == 1 ? "/bin/sh" : o.command.front();
  auto program = resolve_program(first, task_environment({}));
  if (!program) return program.error();
  if (::access(program->c_str(), X_OK) != 0)
    return make_error(ErrorCode::failed_precondition, *program + " is not executable by this user");
  const fs::path root = default_work_root(o.work_root);
  auto dir = WorkDir::make(root);
  if (!dir) return dir.error();
  WorkDir remove_it(*dir, false);
  return "runs " + *program + (o.command.size() == 1 ? " -c '" + o.command.front() + "'" : "") +
         "; task folders in " + root.string() + " (writable)";
}

ExecTrainer::ExecTrainer(ExecTrainerOptions options) : opt_(std::move(options)) {}

Result<FitResult> ExecTrainer::fit(const Model& global, const TrainConfig& config) {
  auto out = run(TaskKind::fit, global, config);
  if (!out) return out.error();
  FitResult r;
  r.weights = std::move(out->weights);
  r.num_examples = out->num_examples;
  r.metrics = std::move(out->metrics);
  return r;
}

Result<EvaluateResult> ExecTrainer::evaluate(const Model& model, const TrainConfig& config) {
  auto out = run(TaskKind::evaluate, model, config);
  if (!out) return out.error();
  auto loss = out->metrics.find("loss");
  if (loss == out->metrics.end())
    return make_error(
        ErrorCode::invalid_argument,
        "metrics.json of an evaluate task needs the metric \"loss\" (and \"accuracy\" "
        "for a classifier)");
  EvaluateResult r;
  r.loss = loss->second;
  r.num_examples = out->num_examples;
  out->metrics.erase(loss);
  if (auto acc = out->metrics.find("accuracy"); acc != out->metrics.end()) {
    if (!(acc->second >= 0 && acc->second <= 1))
      return make_error(ErrorCode::invalid_argument,
                        "metrics.json: \"accuracy\" must be a fraction in [0, 1]");
    r.accuracy = acc->second;
    out->metrics.erase(acc);
  }
  r.metrics = std::move(out->metrics);  // r2, f1, ...: averaged as fed_<name>
  return r;
}

Result<ExecTrainer::Outputs> ExecTrainer::run(TaskKind kind, const Model& model,
                                              const TrainConfig& config) {
  report_ = ExecTaskReport{};
  if (cancelled_) return make_error(ErrorCode::cancelled, "the client is stopping");
  if (opt_.command.empty()) return make_error(ErrorCode::invalid_argument, "no --trainer-command");
  auto dir_path = WorkDir::make(default_work_root(opt_.work_root));
  if (!dir_path) return dir_path.error();
  WorkDir dir(*dir_path, opt_.keep_work_dirs);
  report_.work_dir = dir.path();
  TaskFiles files{kind,
                  round_,
                  attempt_,
                  dir.path() / "global.safetensors",
                  dir.path() / "model.safetensors",
                  dir.path() / "metrics.json",
                  dir.path(),
                  opt_.max_examples};
  if (Status s = write_model_file(files.input_model, model); !s) return s.error();
  const fs::path task_path = dir.path() / "task.json";
  if (Status s = write_file_atomic(task_path, task_json(files, config, model.layout)); !s)
    return s.error();

  const std::map<std::string, std::string> values{{"task", std::string(task_kind_name(kind))},
                                                  {"round", std::to_string(files.round)},
                                                  {"input_model", files.input_model.string()},
                                                  {"output_model", files.output_model.string()},
                                                  {"metrics", files.metrics.string()},
                                                  {"task_config", task_path.string()},
                                                  {"work_dir", dir.path().string()}};
  ProcessSpec spec;
  spec.argv = expand_command(opt_.command, values);
  if (opt_.command.size() == 1) spec.argv = {"/bin/sh", "-c", spec.argv[0]};
  spec.env = task_environment({{"FEDERA_TASK", values.at("task")},
                               {"FEDERA_ROUND", values.at("round")},
                               {"FEDERA_INPUT_MODEL", values.at("input_model")},
                               {"FEDERA_OUTPUT_MODEL", values.at("output_model")},
                               {"FEDERA_METRICS", values.at("metrics")},
                               {"FEDERA_TASK_CONFIG", values.at("task_config")},
                               {"FEDERA_WORK_DIR", values.at("work_dir")}});
  spec.cwd = opt_.working_directory;
  spec.timeout = opt_.timeout;
  spec.kill_grace = opt_.kill_grace;
  spec.stderr_tail_lines = opt_.stderr_tail_lines;
  spec.cancel = &cancelled_;
  spec.on_line = [](std::string_view line, bool) { spdlog::info("[trainer] {}", line); };
  spdlog::debug("running the trainer for a {} task in {}", task_kind_name(kind),
                dir.path().string());
  auto ran = run_process(spec);
  if (!ran) return ran.error();
  report_.outcome = describe_outcome(*ran, opt_.timeout);
  report_.seconds = ran->seconds;
  if (ran->end != ProcessOutcome::End::exited || ran->status != 0)
    return process_failure(*ran, opt_);

  Outputs out;
  if (kind == TaskKind::fit) {
    std::error_code ec;
    report_.output_bytes = fs::file_size(files.output_model, ec);
    auto w = read_trainer_model(files.output_model, model.layout);
    if (!w) return Error{w.error().code, "the trainer's model was refused: " + w.error().message};
    out.weights = std::move(*w);
  }
  auto m = read_trainer_metrics(files.metrics, opt_.max_examples);
  if (!m) return Error{m.error().code, "the trainer's metrics were refused: " + m.error().message};
  out.num_examples = m->num_examples;
  out.metrics = std::move(m->metrics);
  return out;
}

}  // namespace federa
