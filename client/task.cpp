#include "client/task.hpp"

#include <chrono>

namespace federa {

std::string_view task_name(Task::Kind kind) {
  switch (kind) {
    case Task::Kind::fit:
      return "training";
    case Task::Kind::evaluate:
      return "evaluation";
  }
  return "task";
}

TaskResult run_task(Trainer& trainer, const Task& task) {
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  if (!task.model) {
    r.output = Error{ErrorCode::invalid_argument, "the task carries no model"};
    return r;
  }
  const auto started = std::chrono::steady_clock::now();
  switch (task.kind) {
    case Task::Kind::fit: {
      Result<FitResult> fit = trainer.fit(*task.model, task.config);
      if (fit) {
        r.output = TaskOutput(std::move(fit.value()));
      } else {
        r.output = fit.error();
      }
      break;
    }
    case Task::Kind::evaluate:
      r.output = Error{ErrorCode::failed_precondition, "this client cannot run evaluate tasks yet"};
      break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

TaskResult failed_task(const Task& task, Error error) {
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  r.output = std::move(error);
  return r;
}

}  // namespace federa
