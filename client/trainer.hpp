// The Trainer seam: what a client runs on its private data. Built-in trainers (softmax, mlp, cnn
// on common/nn.hpp) implement it; so can a C++ user's own class or an external command.
//
//   auto trainer = make_builtin_trainer(std::move(train), std::move(test), client_seed);
//   Result<FitResult> r = trainer->fit(global, config);   // new local weights + num_examples
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/dataset.hpp"
#include "common/model.hpp"
#include "common/result.hpp"
#include "common/train_config.hpp"

namespace federa {

class TabularData;  // client/tabular_data.hpp

struct FitResult {
  std::vector<float> weights;             // the locally trained model, same layout as the global
  std::uint64_t num_examples = 0;         // examples seen per epoch (the FedAvg weight)
  std::map<std::string, double> metrics;  // e.g. train_loss, train_accuracy
};

struct EvaluateResult {
  double loss = 0;
  std::optional<double> accuracy;         // a fraction in [0, 1]; none for a regression model
  std::uint64_t num_examples = 0;         // held-out examples evaluated on; 0 = none here
  std::map<std::string, double> metrics;  // other figures (f1, auc, ...), averaged by num_examples
  // Ask the coordinator to keep this client's own values out of its logs and files (they still
  // count in the federation's weighted means).
  bool keep_private = false;
};

class Trainer {
 public:
  virtual ~Trainer() = default;
  // Train starting from `global` (whose layout the config's model must produce).
  virtual Result<FitResult> fit(const Model& global, const TrainConfig& config) = 0;
  // Evaluate `model` on this client's local test split.
  virtual Result<EvaluateResult> evaluate(const Model& model, const TrainConfig& config) = 0;
  // Number of local training examples (reported in Hello).
  virtual std::uint64_t num_train_examples() const = 0;
  // Held-out examples evaluate() uses, as far as known (reported in Hello); 0 = none or unknown.
  virtual std::uint64_t num_test_examples() const { return 0; }
  // Whether this client takes evaluate tasks (reported in Hello; the coordinator sends them only
  // to clients that do). By default, when it holds held-out examples; a trainer that learns its
  // count only when it evaluates (an external program) says true.
  virtual bool can_evaluate() const { return num_test_examples() > 0; }
  // Called by run_task before fit or evaluate with the task's place in the federation, for
  // trainers that pass it on (the external trainer's FEDERA_ROUND).
  virtual void begin_task(std::uint64_t round, std::uint32_t attempt) {
    (void)round;
    (void)attempt;
  }
  // The table a trainer reads (a CSV file), so the client can report its schema at join and
  // answer statistics tasks; null for other data.
  virtual TabularData* table() { return nullptr; }
};

}  // namespace federa
