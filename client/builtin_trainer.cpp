#include "client/builtin_trainer.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "common/nn.hpp"
#include "common/seeds.hpp"

namespace federa {

namespace {

std::string describe(const ModelLayout& l) {
  std::string s;
  for (const auto& t : l.tensors()) {
    if (!s.empty()) s += ", ";
    s += t.name + "[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) s += ',';
      s += std::to_string(t.shape[i]);
    }
    s += "]";
  }
  return s.empty() ? "(empty)" : s;
}

class BuiltinTrainer final : public Trainer {
 public:
  BuiltinTrainer(std::shared_ptr<const Dataset> data, std::vector<std::size_t> train,
                 std::vector<std::size_t> test, std::uint64_t client_seed)
      : data_(std::move(data)),
        train_(std::move(train)),
        test_(std::move(test)),
        client_seed_(client_seed) {}

  BuiltinTrainer(std::unique_ptr<TabularData> tabular, std::uint64_t client_seed)
      : tabular_(std::move(tabular)), client_seed_(client_seed) {
    train_.resize(tabular_->train_rows());
    test_.resize(tabular_->test_rows());
    std::iota(train_.begin(), train_.end(), std::size_t{0});
    std::iota(test_.begin(), test_.end(), train_.size());
  }

  std::uint64_t num_train_examples() const override { return train_.size(); }
  std::uint64_t num_test_examples() const override { return test_.size(); }
  TabularData* table() override { return tabular_.get(); }

  Result<FitResult> fit(const Model& global, const TrainConfig& config) override {
    if (auto s = prepare(global, config); !s) return s.error();
    if (auto s = check_fit_config(config); !s) return s.error();
    const std::size_t p = global.data.size();
    const std::size_t f = data_->features;
    FitResult out;
    out.weights = global.data;
    out.num_examples = train_.size();
    grad_.assign(p, 0.0f);
    velocity_.assign(p, 0.0f);  // momentum restarts every round, like a fresh torch optimizer
    const std::size_t batch =
        std::min<std::size_t>(config.batch_size, std::max<std::size_t>(train_.size(), 1));
    batch_x_.resize(batch * f);
    batch_y_.resize(batch);
    batch_t_.resize(batch);
    const bool regression = net_->regression();
    order_ = train_;

    std::mt19937_64 rng(splitmix64(config.seed ^ splitmix64(client_seed_)));
    const float lr = config.lr, m = config.momentum, wd = config.weight_decay,
                mu = config.proximal_mu;
    const float* w0 = global.data.data();
    float* w = out.weights.data();
    double epoch_loss = 0;
    std::size_t epoch_correct = 0;
    for (std::uint32_t epoch = 0; epoch < config.local_epochs; ++epoch) {
      shuffle(rng);
      epoch_loss = 0;
      epoch_correct = 0;
      for (std::size_t start = 0; start < order_.size(); start += batch) {
        const std::size_t rows = std::min(batch, order_.size() - start);
        fill_batch(start, rows, regression);
        const Targets targets{batch_y_.data(), regression ? batch_t_.data() : nullptr};
        const double loss =
            net_->loss_and_gradient(out.weights, batch_x_.data(), targets, rows, grad_);
        if (!std::isfinite(loss)) {
          return make_error("fit: training diverged (loss is not finite) in epoch " +
                            std::to_string(epoch + 1) + "; try a smaller learning rate");
        }
        epoch_loss += loss * static_cast<double>(rows);
        epoch_correct += net_->last_batch_correct();
        const float* g = grad_.data();
        float* v = velocity_.data();
        // torch.optim.SGD semantics: weight decay and the proximal term join the gradient, then
        // v = m v + g and w -= lr v (no dampening).
        if (m > 0) {
          for (std::size_t i = 0; i < p; ++i) {
            const float gi = g[i] + wd * w[i] + mu * (w[i] - w0[i]);
            v[i] = m * v[i] + gi;
            w[i] -= lr * v[i];
          }
        } else {
          for (std::size_t i = 0; i < p; ++i) {
            w[i] -= lr * (g[i] + wd * w[i] + mu * (w[i] - w0[i]));
          }
        }
      }
    }
    for (float v : out.weights) {
      if (!std::isfinite(v)) {
        return make_error(
            "fit: training diverged (non-finite weights); try a smaller learning rate");
      }
    }
    if (config.local_epochs > 0 && !order_.empty()) {
      const auto n = static_cast<double>(order_.size());
      out.metrics["train_loss"] = epoch_loss / n;
      // Measured on the fly while the weights move, as training loops usually report it.
      if (regression) {
        out.metrics["train_rmse"] = std::sqrt(epoch_loss / n);
      } else {
        out.metrics["train_accuracy"] = static_cast<double>(epoch_correct) / n;
      }
    }
    return out;
  }

  Result<EvaluateResult> evaluate(const Model& model, const TrainConfig& config) override {
    if (auto s = prepare(model, config); !s) return s.error();
    EvaluateResult r;
    if (test_.empty()) return r;  // no local test split: nothing to report
    const EvalResult e = net_->evaluate(model.data, *data_, test_);
    r.loss = e.loss;
    r.num_examples = e.examples;
    if (net_->regression()) {  // no accuracy; the metrics line's fed_rmse, fed_mae, fed_r2
      r.metrics["rmse"] = e.rmse;
      r.metrics["mae"] = e.mae;
      r.metrics["r2"] = e.r2;
    } else {
      r.accuracy = e.accuracy;
    }
    return r;
  }

 private:
  static Status check_fit_config(const TrainConfig& config) {
    if (config.batch_size == 0) return make_error("fit: batch_size must be positive");
    if (!(config.lr >= 0) || !std::isfinite(config.lr)) return make_error("fit: bad learning rate");
    if (!(config.momentum >= 0 && config.momentum < 1))
      return make_error("fit: momentum must be in [0, 1)");
    if (!std::isfinite(config.weight_decay) || !std::isfinite(config.proximal_mu) ||
        config.weight_decay < 0 || config.proximal_mu < 0)
      return make_error("fit: weight_decay and proximal_mu must be finite and non-negative");
    return Status::success();
  }

  // Copies the rows order_[start, start + rows) into the batch buffers.
  void fill_batch(std::size_t start, std::size_t rows, bool regression) {
    const std::size_t f = data_->features;
    for (std::size_t i = 0; i < rows; ++i) {
      const std::size_t r = order_[start + i];
      std::copy_n(data_->row(r), f, batch_x_.data() + i * f);
      if (regression) {
        batch_t_[i] = data_->targets[r];
      } else {
        batch_y_[i] = data_->labels[r];
      }
    }
  }

  // Builds (or reuses) the network for the config's model spec, brings a table's encoding up to
  // the config's schema and figures, and checks that `model` and the data fit the network.
  Status prepare(const Model& model, const TrainConfig& config) {
    const std::string& spec = config.model;
    if (tabular_) {
      auto d = tabular_->dataset(config);
      if (!d) return d.error();
      data_ = std::move(*d);
    }
    if (!net_ || spec != spec_) {
      if (spec.rfind("safetensors:", 0) == 0)
        return make_error(ErrorCode::failed_precondition,
                          "this federation trains a model from a file (" + spec +
                              "); the built-in trainer takes built-in models only (softmax, mlp, "
                              "cnn): join with an external trainer");
      auto net = make_network(spec);
      if (!net) return net.error();
      net_ = std::move(*net);
      spec_ = spec;
    }
    if (!(model.layout == net_->layout())) {
      return make_error("the global model's layout (" + describe(model.layout) +
                        ") does not match model '" + spec + "' (" + describe(net_->layout()) + ")");
    }
    if (model.data.size() != model.layout.size()) {
      return make_error("the global model holds " + std::to_string(model.data.size()) +
                        " values, its layout needs " + std::to_string(model.layout.size()));
    }
    if (data_->features != net_->input_features()) {
      return make_error("model '" + spec + "' takes " + std::to_string(net_->input_features()) +
                        " features but the local data has " + std::to_string(data_->features));
    }
    if (net_->regression() != (data_->num_classes == 0)) {
      return make_error("model '" + spec + "' is a " +
                        (net_->regression() ? "regression" : "classification") +
                        " model but the local data was read for " +
                        (net_->regression() ? "classification" : "regression"));
    }
    if (data_->num_classes > net_->num_classes()) {
      return make_error("model '" + spec + "' has " + std::to_string(net_->num_classes()) +
                        " classes but the local data has " + std::to_string(data_->num_classes));
    }
    if (!indices_checked_) {
      for (const auto* v : {&train_, &test_}) {
        for (std::size_t i : *v) {
          if (i >= data_->rows) {
            return make_error("example index " + std::to_string(i) + " is outside the dataset (" +
                              std::to_string(data_->rows) + " rows)");
          }
        }
      }
      indices_checked_ = true;
    }
    return Status::success();
  }

  void shuffle(std::mt19937_64& rng) {
    for (std::size_t i = order_.size(); i > 1; --i) {
      // Multiply-shift maps a 64-bit draw onto [0, i) with negligible bias for our sizes.
      const auto j = static_cast<std::size_t>(
          (static_cast<unsigned __int128>(rng()) * static_cast<unsigned __int128>(i)) >> 64);
      std::swap(order_[i - 1], order_[j]);
    }
  }

  std::unique_ptr<TabularData> tabular_;  // set: data_ follows each task's schema
  std::shared_ptr<const Dataset> data_;
  std::vector<std::size_t> train_, test_;
  std::uint64_t client_seed_;
  bool indices_checked_ = false;
  std::string spec_;
  std::unique_ptr<Network> net_;
  std::vector<float> grad_, velocity_, batch_x_;
  std::vector<std::int32_t> batch_y_;
  std::vector<float> batch_t_;
  std::vector<std::size_t> order_;
};

}  // namespace

std::unique_ptr<Trainer> make_builtin_trainer(std::shared_ptr<const Dataset> data,
                                              std::vector<std::size_t> train_indices,
                                              std::vector<std::size_t> test_indices,
                                              std::uint64_t client_seed) {
  return std::make_unique<BuiltinTrainer>(std::move(data), std::move(train_indices),
                                          std::move(test_indices), client_seed);
}

}  // namespace federa

namespace federa {

std::unique_ptr<Trainer> make_tabular_trainer(std::unique_ptr<TabularData> data,
                                              std::uint64_t client_seed) {
  return std::make_unique<BuiltinTrainer>(std::move(data), client_seed);
}

}  // namespace federa
