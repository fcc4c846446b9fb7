// Built-in models: forward, backward and evaluation on Eigen. The client trains with them, the
// coordinator evaluates with them, so both sides build the same network from one spec string.
//
//   Result<std::unique_ptr<Network>> net = make_network("mlp:784,128,10");
//   Model m((*net)->layout());
//   (*net)->init(m.data, /*seed=*/1);
//   double loss = (*net)->loss_and_gradient(m.data, x, y, rows, grad);
//
// Regression networks ("linreg:IN", "mlp:IN,H1[,H2...],1") predict one value per row and train
// on float targets with mean squared error: loss_and_gradient(m.data, x, Targets{.values = t},
// ...).
//
// A Network keeps scratch buffers: use one instance per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/dataset.hpp"
#include "common/model.hpp"
#include "common/result.hpp"

namespace federa {

struct EvalResult {
  double loss = 0;      // mean cross-entropy; regression: mean squared error
  double accuracy = 0;  // fraction correct (classifiers)
  std::size_t examples = 0;
  // Regression: root mean squared error, mean absolute error and R^2 = 1 - SSE / SST over the
  // evaluated rows (0 when the targets are all equal). sum_target and sum_target_sq let a caller
  // pool R^2 over several evaluations: SST = sum_target_sq - sum_target^2 / examples.
  double rmse = 0, mae = 0, r2 = 0;
  double sum_target = 0, sum_target_sq = 0;
};

// What a batch is scored against: class indices for classifiers, values for regression.
struct Targets {
  const std::int32_t* classes = nullptr;
  const float* values = nullptr;
};

class Network {
 public:
  virtual ~Network() = default;
  virtual const ModelLayout& layout() const = 0;
  virtual std::size_t input_features() const = 0;
  virtual int num_classes() const = 0;  // 0 for a regression network
  // One output trained with mean squared error on Dataset::targets.
  virtual bool regression() const = 0;
  // Deterministic initialisation (He/Glorot-style) from `seed`.
  virtual void init(std::span<float> params, std::uint64_t seed) = 0;
  // Mean cross-entropy (classifiers) or mean squared error (regression) over `rows` examples
  // (x row-major rows*features); writes d loss/d params. Targets of the wrong kind give NaN.
  virtual double loss_and_gradient(std::span<const float> params, const float* x, Targets targets,
                                   std::size_t rows, std::span<float> grad) = 0;
  double loss_and_gradient(std::span<const float> params, const float* x,
                           const std::int32_t* labels, std::size_t rows, std::span<float> grad) {
    return loss_and_gradient(params, x, Targets{labels, nullptr}, rows, grad);
  }
  // Loss and accuracy (regression: rmse, mae, r2) on the examples `indices` of `data` (all of
  // them when empty), in batches. Gives examples = 0 when the data's feature count is not the
  // network's input size or the data has no targets of the network's kind.
  virtual EvalResult evaluate(std::span<const float> params, const Dataset& data,
                              std::span<const std::size_t> indices = {}) = 0;
  // How many examples of the last loss_and_gradient call the network classified correctly
  // (their highest logit was the true label); lets a trainer report accuracy for free.
  virtual std::size_t last_batch_correct() const = 0;
};

// spec: "softmax:IN,CLASSES", "mlp:IN,H1[,H2...],CLASSES", "cnn:fmnist"; regression:
// "linreg:IN" (one linear layer "fc"), "mlp:IN,H1[,H2...],1".
Result<std::unique_ptr<Network>> make_network(std::string_view spec);

}  // namespace federa
