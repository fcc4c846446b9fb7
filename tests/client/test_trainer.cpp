#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "client/builtin_trainer.hpp"
#include "client/task.hpp"
#include "common/nn.hpp"

using namespace federa;

namespace {

// Linearly separable: the label is the argmax of a fixed random linear map of the features.
std::shared_ptr<const Dataset> separable(std::size_t rows, std::size_t features, int classes,
                                         std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(classes) * features);
  for (auto& v : w) v = n(rng);
  auto d = std::make_shared<Dataset>();
  d->rows = rows;
  d->features = features;
  d->num_classes = classes;
  d->x.resize(rows * features);
  for (auto& v : d->x) v = n(rng);
  d->labels.resize(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    int best = 0;
    float best_score = -1e30f;
    for (int c = 0; c < classes; ++c) {
      float s = 0;
      for (std::size_t f = 0; f < features; ++f) {
        s += w[static_cast<std::size_t>(c) * features + f] * d->x[i * features + f];
      }
      if (s > best_score) best_score = s, best = c;
    }
    d->labels[i] = best;
  }
  return d;
}

std::vector<std::size_t> range(std::size_t begin, std::size_t end) {
  std::vector<std::size_t> v;
  for (std::size_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

Model initial(const std::string& spec, std::uint64_t seed) {
  auto net = make_network(spec);
  REQUIRE(net.ok());
  Model m((*net)->layout());
  (*net)->init(m.data, seed);
  return m;
}

double distance(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("trainer drives the loss down on separable data") {
  auto data = separable(1200, 8, 3, 1);
  for (const std::string spec : {"softmax:8,3", "mlp:8,32,3"}) {
    CAPTURE(spec);
    auto trainer = make_builtin_trainer(data, range(0, 1000), range(1000, 1200), 7);
    CHECK(trainer->num_train_examples() == 1000);
    TrainConfig cfg;
    cfg.model = spec;
    cfg.local_epochs = 5;
    cfg.batch_size = 32;
    cfg.lr = 0.1f;
    cfg.momentum = 0.5f;
    Model global = initial(spec, 3);
    auto before = trainer->evaluate(global, cfg);
    REQUIRE(before.ok());
    CHECK(before->num_examples == 200);
    auto fit = trainer->fit(global, cfg);
    REQUIRE_MESSAGE(fit.ok(), (fit.ok() ? "" : fit.error().message));
    CHECK(fit->num_examples == 1000);
    REQUIRE(fit->weights.size() == global.data.size());
    REQUIRE(fit->metrics.count("train_loss") == 1);
    REQUIRE(fit->metrics.count("train_accuracy") == 1);
    CHECK(fit->metrics["train_accuracy"] > 0.85);
    Model trained = global;
    trained.data = fit->weights;
    auto after = trainer->evaluate(trained, cfg);
    REQUIRE(after.ok());
    MESSAGE("test loss " << before->loss << " -> " << after->loss << ", accuracy "
                         << before->accuracy.value_or(-1) << " -> "
                         << after->accuracy.value_or(-1));
    CHECK(after->loss < 0.5 * before->loss);
    CHECK(after->accuracy > 0.9);
    CHECK(fit->metrics["train_loss"] < before->loss);
  }
}

TEST_CASE("trainer is deterministic and mixes in the client seed") {
  auto data = separable(300, 5, 3, 2);
  TrainConfig cfg;
  cfg.model = "mlp:5,8,3";
  cfg.local_epochs = 2;
  cfg.batch_size = 16;
  cfg.lr = 0.05f;
  cfg.momentum = 0.9f;
  cfg.weight_decay = 1e-4f;
  cfg.seed = 11;
  const Model global = initial(cfg.model, 1);
  auto a = make_builtin_trainer(data, range(0, 300), {}, 1)->fit(global, cfg);
  auto b = make_builtin_trainer(data, range(0, 300), {}, 1)->fit(global, cfg);
  auto c = make_builtin_trainer(data, range(0, 300), {}, 2)->fit(global, cfg);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  CHECK(a->weights == b->weights);
  CHECK(a->metrics == b->metrics);
  CHECK(a->weights != c->weights);
  // The same trainer gives the same answer when asked twice (no state leaks between rounds).
  auto trainer = make_builtin_trainer(data, range(0, 300), {}, 1);
  auto first = trainer->fit(global, cfg);
  auto second = trainer->fit(global, cfg);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->weights == a->weights);
  CHECK(second->weights == a->weights);
  cfg.seed = 12;
  auto other_round = trainer->fit(global, cfg);
  REQUIRE(other_round.ok());
  CHECK(other_round->weights != a->weights);
}

TEST_CASE("the proximal term pulls the local model towards the global one") {
  auto data = separable(400, 6, 3, 3);
  TrainConfig cfg;
  cfg.model = "softmax:6,3";
  cfg.local_epochs = 5;
  cfg.batch_size = 20;
  cfg.lr = 0.1f;
  const Model global = initial(cfg.model, 2);
  auto trainer = make_builtin_trainer(data, range(0, 400), {}, 5);
  auto plain = trainer->fit(global, cfg);
  cfg.proximal_mu = 1.0f;
  auto prox = trainer->fit(global, cfg);
  cfg.proximal_mu = 5.0f;
  auto strong = trainer->fit(global, cfg);
  REQUIRE(plain.ok());
  REQUIRE(prox.ok());
  REQUIRE(strong.ok());
  const double d0 = distance(plain->weights, global.data);
  const double d1 = distance(prox->weights, global.data);
  const double d5 = distance(strong->weights, global.data);
  MESSAGE("distance from global: mu 0 " << d0 << ", mu 1 " << d1 << ", mu 5 " << d5);
  CHECK(d1 < 0.8 * d0);
  CHECK(d5 < d1);
  CHECK(d5 > 0);
}

TEST_CASE("weight decay shrinks the weights") {
  auto data = separable(400, 6, 3, 4);
  TrainConfig cfg;
  cfg.model = "softmax:6,3";
  cfg.local_epochs = 3;
  cfg.lr = 0.1f;
  const Model global = initial(cfg.model, 2);
  auto trainer = make_builtin_trainer(data, range(0, 400), {}, 5);
  auto plain = trainer->fit(global, cfg);
  cfg.weight_decay = 0.5f;
  auto decayed = trainer->fit(global, cfg);
  REQUIRE(plain.ok());
  REQUIRE(decayed.ok());
  const std::vector<float> zero(global.data.size(), 0.0f);
  CHECK(distance(decayed->weights, zero) < distance(plain->weights, zero));
}

TEST_CASE("trainer errors: wrong layout, wrong features, bad config") {
  auto data = separable(100, 6, 3, 5);
  auto trainer = make_builtin_trainer(data, range(0, 100), range(0, 10), 1);
  TrainConfig cfg;
  cfg.model = "softmax:6,3";
  Model other = initial("mlp:6,4,3", 1);
  auto r = trainer->fit(other, cfg);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("layout") != std::string::npos);
  CHECK_FALSE(trainer->evaluate(other, cfg).ok());

  cfg.model = "softmax:7,3";
  auto wrong_features = trainer->fit(initial(cfg.model, 1), cfg);
  REQUIRE_FALSE(wrong_features.ok());
  CHECK(wrong_features.error().message.find("features") != std::string::npos);

  cfg.model = "softmax:6,2";
  CHECK_FALSE(trainer->fit(initial(cfg.model, 1), cfg).ok());  // data has 3 classes

  cfg.model = "nonsense";
  CHECK_FALSE(trainer->fit(initial("softmax:6,3", 1), cfg).ok());

  cfg.model = "softmax:6,3";
  cfg.batch_size = 0;
  CHECK_FALSE(trainer->fit(initial(cfg.model, 1), cfg).ok());
  cfg.batch_size = 8;
  cfg.momentum = 1.5f;
  CHECK_FALSE(trainer->fit(initial(cfg.model, 1), cfg).ok());
  cfg.momentum = 0;
  cfg.lr = 1e30f;
  cfg.model = "mlp:6,4,3";
  auto diverged = trainer->fit(initial(cfg.model, 1), cfg);
  REQUIRE_FALSE(diverged.ok());
  CHECK(diverged.error().message.find("diverged") != std::string::npos);

  auto out_of_range = make_builtin_trainer(data, {0, 5, 100}, {}, 1);
  cfg.lr = 0.1f;
  cfg.model = "softmax:6,3";
  CHECK_FALSE(out_of_range->fit(initial(cfg.model, 1), cfg).ok());
}

TEST_CASE("a trainer without a test split evaluates to zero examples") {
  auto data = separable(50, 4, 2, 6);
  auto trainer = make_builtin_trainer(data, range(0, 50), {}, 1);
  TrainConfig cfg;
  cfg.model = "softmax:4,2";
  auto r = trainer->evaluate(initial(cfg.model, 1), cfg);
  REQUIRE(r.ok());
  CHECK(r->num_examples == 0);
}

TEST_CASE("a built-in trainer announces its test split, and run_task evaluates with it") {
  auto data = separable(60, 4, 2, 9);
  auto without = make_builtin_trainer(data, range(0, 60), {}, 1);
  CHECK(without->num_test_examples() == 0);
  CHECK_FALSE(without->can_evaluate());
  auto trainer = make_builtin_trainer(data, range(0, 40), range(40, 60), 1);
  CHECK(trainer->num_test_examples() == 20);
  CHECK(trainer->can_evaluate());
  Task task;
  task.kind = Task::Kind::evaluate;
  task.round = 4;
  task.config.model = "softmax:4,2";
  task.model = std::make_shared<const Model>(initial(task.config.model, 3));
  TaskResult r = run_task(*trainer, task);
  CHECK(r.kind == Task::Kind::evaluate);
  CHECK(r.round == 4);
  REQUIRE(r.output.ok());
  const auto* eval = std::get_if<EvaluateResult>(&r.output.value());
  REQUIRE(eval);
  auto direct = trainer->evaluate(*task.model, task.config);
  REQUIRE(direct.ok());
  CHECK(eval->num_examples == 20);
  CHECK(eval->loss == direct->loss);
  CHECK(eval->accuracy == direct->accuracy);
  CHECK(eval->loss > 0);
}

TEST_CASE("the built-in trainer says what to do with a model from a file") {
  auto data = separable(20, 4, 2, 9);
  auto trainer = make_builtin_trainer(data, range(0, 20), {}, 1);
  TrainConfig cfg;
  cfg.model = "safetensors:resnet.safetensors";
  auto r = trainer->fit(initial("softmax:4,2", 1), cfg);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("external trainer") != std::string::npos);
}
