// A task the coordinator asks of a client, as the session hands it to its host, and what the
// host hands back. Kinds grow with the protocol (fit and evaluate; statistics next): a host runs
// any of them with run_task(), so the TLS client and the simulator need no switch of their own.
//
//   Task t = ...;                                   // from TaskRunner::run
//   TaskResult r = run_task(trainer, t);            // on a worker thread
//   session.on_task_done(std::move(r));             // back on the session's thread
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "client/trainer.hpp"
#include "common/model.hpp"
#include "common/result.hpp"
#include "common/task_kind.hpp"
#include "common/train_config.hpp"

namespace federa {

struct Task {
  using Kind = TaskKind;  // common/task_kind.hpp, shared with the coordinator
  Kind kind = Kind::fit;
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;  // 1 for a round's first try, 2 for its first retry, ...
  TrainConfig config;
  // The global model, reassembled and checked by the session. Shared and immutable, so a host
  // may keep one copy for every client that received the same bytes.
  std::shared_ptr<const Model> model;
  int limb_bits = 0;  // statistics under secure aggregation: the limbs' width
};

// What a log line calls the work of `kind` ("training", "evaluation").
std::string_view task_name(Task::Kind kind);

// A statistics task's answer: common/statistics.hpp's JSON of the training rows' figures, and
// the same figures as fixed-point limbs for a secure sum (when the task asked for limb_bits).
struct StatisticsOutput {
  std::string json;
  std::vector<float> limbs;
};

// One alternative per Task::Kind: FitResult for fit, EvaluateResult for evaluate,
// StatisticsOutput for statistics.
using TaskOutput = std::variant<FitResult, EvaluateResult, StatisticsOutput>;

struct TaskResult {
  Task::Kind kind = Task::Kind::fit;
  std::uint64_t round = 0;
  Result<TaskOutput> output = Error{ErrorCode::internal, "task not run"};
  double seconds = 0;  // wall time the host spent on it, for the log
};

// Runs `task` with `trainer`, timing it. Not thread-safe for one trainer.
TaskResult run_task(Trainer& trainer, const Task& task);

// A result the host did not get from a trainer: the task failed before or instead of running
// (a simulated dropout, a deadline the host enforces).
TaskResult failed_task(const Task& task, Error error);

}  // namespace federa
