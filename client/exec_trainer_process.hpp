// Runs an agency's trainer program as a child of federa-client: its own process group, no
// inherited descriptors, stdin from /dev/null, stdout and stderr relayed line by line, a
// deadline (SIGTERM to the group, then SIGKILL after a grace period), cancellation from another
// thread, and death with the client (PR_SET_PDEATHSIG, and every live group is killed when the
// client exits or is stopped).
//
//   ProcessSpec spec{.argv = {"/usr/bin/python3", "train.py"}, .env = environ_with_extras,
//                    .timeout = std::chrono::minutes(30)};
//   spec.on_line = [](std::string_view line, bool err) { spdlog::info("[trainer] {}", line); };
//   Result<ProcessOutcome> r = run_process(spec);     // an Error only when it could not start
//   if (r && r->end == ProcessOutcome::End::exited && r->status == 0) ...
//
// Why fork+exec and not posix_spawn: the child must set PR_SET_PDEATHSIG before exec, which
// posix_spawn cannot do. Between fork and exec the child calls only async-signal-safe system
// calls on memory prepared before the fork.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace federa {

struct ProcessSpec {
  // argv[0] is looked up in the PATH of `env` when it has no '/'.
  std::vector<std::string> argv;
  std::vector<std::string> env;          // the child's whole environment, "NAME=value"
  std::filesystem::path cwd;             // empty: the client's working directory
  std::chrono::milliseconds timeout{0};  // 0: no deadline
  std::chrono::milliseconds kill_grace{std::chrono::seconds(10)};  // SIGTERM -> SIGKILL
  std::size_t stderr_tail_lines = 50;
  // Each line the program prints (without its newline; very long lines come in pieces).
  std::function<void(std::string_view line, bool is_stderr)> on_line;
  // Set by another thread to end the program early (SIGTERM, then SIGKILL after kill_grace).
  const std::atomic<bool>* cancel = nullptr;
};

struct ProcessOutcome {
  enum class End {
    exited,     // status is its exit code
    signalled,  // status is the signal that killed it
    timed_out,  // the deadline passed; it was terminated
    cancelled,  // `cancel` was set; it was terminated
  };
  End end = End::exited;
  int status = 0;
  std::deque<std::string> stderr_tail;  // its last stderr_tail_lines lines
  double seconds = 0;
};

Result<ProcessOutcome> run_process(const ProcessSpec& spec);

// The executable run_process would start for `name`: itself when it has a '/', else the first
// match in the PATH of `env` ("NAME=value" strings; the default PATH without one).
Result<std::string> resolve_program(const std::string& name, const std::vector<std::string>& env);

// SIGKILLs the process group of every program run_process is running. Thread-safe; for the
// client's stop and exit paths (it is also registered with atexit on first use).
void kill_all_trainer_groups();

// "exit status 3", "killed by signal 9 (SIGKILL)", "did not finish within 30 s", ...
std::string describe_outcome(const ProcessOutcome& outcome, std::chrono::milliseconds timeout);

}  // namespace federa
