// The Trainer seam: what a client runs on its private data. Built-in trainers (softmax, mlp, cnn
// on common/nn.hpp) implement it; so can a C++ user's own class or an external command.
//
//   auto trainer = make_builtin_trainer(std::move(train), std::move(test), client_seed);
//   Result<FitResult> r = trainer->fit(global, config);   // new local weights + num_examples
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dataset.hpp"
#include "common/model.hpp"
#include "common/result.hpp"
#include "common/train_config.hpp"

namespace federa {

struct FitResult {
  std::vector<float> weights;             // the locally trained model, same layout as the global
  std::uint64_t num_examples = 0;         // examples seen per epoch (the FedAvg weight)
  std::map<std::string, double> metrics;  // e.g. train_loss, train_accuracy
};

struct EvaluateResult {
  double loss = 0;
  double accuracy = 0;
  std::uint64_t num_examples = 0;
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
};

}  // namespace federa
