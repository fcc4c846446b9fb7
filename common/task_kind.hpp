// What a task asks of a client, shared by both sides of the wire and the simulator.
//
//   if (task.kind == TaskKind::evaluate) ...;   log("{} task", task_kind_name(task.kind));
#pragma once

#include <string_view>

namespace federa {

enum class TaskKind {
  fit,         // train from the global model, send back an update
  evaluate,    // evaluate the global model on the client's held-out data, send back metrics
  statistics,  // per-feature statistics of a table's training rows (tabular federations)
};

constexpr std::string_view task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::fit:
      return "fit";
    case TaskKind::evaluate:
      return "evaluate";
    case TaskKind::statistics:
      return "statistics";
  }
  return "?";
}

}  // namespace federa
