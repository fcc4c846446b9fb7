#include "client/task.hpp"

#include <chrono>

#include "client/tabular_data.hpp"

namespace federa {

std::string_view task_name(Task::Kind kind) {
  switch (kind) {
    case Task::Kind::fit:
      return "training";
    case Task::Kind::evaluate:
      return "evaluation";
    case Task::Kind::statistics:
      return "statistics";
  }
  return "task";
}

namespace {

Result<TaskOutput> table_statistics(Trainer& trainer, const Task& task) {
  TabularData* table = trainer.table();
  if (table == nullptr)
    return Error{ErrorCode::failed_precondition, "this client's data is not a table"};
  auto schema = schema_from_json(
      task.config.extra.count(kConfigSchema) ? task.config.extra.at(kConfigSchema) : std::string());
  if (!schema)
    return Error{ErrorCode::invalid_argument, "the statistics task's " + schema.error().message};
  auto s = table->statistics(task.config);
  if (!s) return s.error();
  StatisticsOutput out;
  out.json = statistics_to_json(*s, *schema);
  if (task.limb_bits > 0) {
    auto limbs = encode_secure_sum(*s, *schema, task.limb_bits);
    if (!limbs) return limbs.error();
    out.limbs = std::move(*limbs);
  }
  return TaskOutput(std::move(out));
}

}  // namespace

TaskResult run_task(Trainer& trainer, const Task& task) {
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  if (task.kind == Task::Kind::statistics) {
    const auto started = std::chrono::steady_clock::now();
    r.output = table_statistics(trainer, task);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return r;
  }
  if (!task.model) {
    r.output = Error{ErrorCode::invalid_argument, "the task carries no model"};
    return r;
  }
  const auto started = std::chrono::steady_clock::now();
  trainer.begin_task(task.round, task.attempt);
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
    case Task::Kind::evaluate: {
      Result<EvaluateResult> eval = trainer.evaluate(*task.model, task.config);
      if (eval) {
        r.output = TaskOutput(std::move(eval.value()));
      } else {
        r.output = eval.error();
      }
      break;
    }
    case Task::Kind::statistics:
      break;  // above
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
