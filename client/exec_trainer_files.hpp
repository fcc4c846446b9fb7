// The files an external trainer exchanges with federa-client (docs/external-trainer.md):
// global.safetensors and task.json going in, model.safetensors and metrics.json coming back.
// What comes back is untrusted: each reader checks it against what the task expects and says
// exactly what is wrong, before anything of it can leave the site.
//
//   write_model_file(dir / "global.safetensors", global);  // streamed in its dtypes, mode 0600
//   auto w = read_trainer_model(dir / "model.safetensors", global.layout);   // names, shapes,
//   if (!w) fail(w.error().message);                                  // dtypes, sizes, finite
//   auto m = read_trainer_metrics(dir / "metrics.json", max_examples);
//
// Memory: the model is read straight into the returned buffer and written straight from the
// caller's, so a task holds the global model and one update, never a file-sized copy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/model.hpp"
#include "common/result.hpp"
#include "common/task_kind.hpp"
#include "common/train_config.hpp"

namespace federa {

// The dtype the trainer must return for tensor `i` of `layout`: the global model's own, as
// safetensors spells it ("F32", "BF16", "I64", ...). A tensor returned in another dtype is
// refused, not converted: a trainer that widened a BF16 model to F32 would otherwise double the
// bytes it believes it sends, and a silent narrowing would hide its bug.
std::string expected_dtype(const ModelLayout& layout, std::size_t i);

Status write_model_file(const std::filesystem::path& path, const Model& model);

// The trainer's float tensors as float32, in `expected`'s order (F16/BF16 widened exactly).
// Integer and boolean tensors (carried, never averaged) must be present with the global's
// shape and dtype, but their values are not read: the global keeps its own. Fails, naming the
// tensor and the difference, on: no file, not a regular file, truncated or oversized, a header
// that is not safetensors JSON, a missing or extra tensor, a wrong dtype or shape, overlapping or
// out-of-bounds data, a non-finite value.
Result<std::vector<float>> read_trainer_model(const std::filesystem::path& path,
                                              const ModelLayout& expected);

struct TrainerMetrics {
  std::uint64_t num_examples = 0;
  std::map<std::string, double> metrics;  // finite numbers with names [A-Za-z0-9_.-]
};

// {"num_examples": N, "metrics": {"name": number, ...}}; N must be in [1, max_examples].
// Metrics that are null or not numbers are left out; a metric name the coordinator could not
// carry fails the task.
Result<TrainerMetrics> read_trainer_metrics(const std::filesystem::path& path,
                                            std::uint64_t max_examples);

// What task.json tells the trainer.
struct TaskFiles {
  TaskKind kind = TaskKind::fit;
  std::uint64_t round = 0;
  std::uint32_t attempt = 1;
  std::filesystem::path input_model, output_model, metrics, work_dir;
  std::uint64_t max_examples = 0;
};
std::string task_json(const TaskFiles& files, const TrainConfig& config, const ModelLayout& layout);

}  // namespace federa
