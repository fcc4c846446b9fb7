#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/nn.hpp"

using namespace federa;

namespace {

std::unique_ptr<Network> net_for(const std::string& spec) {
  auto r = make_network(spec);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return std::move(*r);
}

struct Batch {
  std::vector<float> x;
  std::vector<std::int32_t> y;
  std::vector<float> t;  // regression targets
  Targets targets(bool regression) const {
    return regression ? Targets{nullptr, t.data()} : Targets{y.data(), nullptr};
  }
};

Batch random_batch(std::size_t rows, std::size_t features, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Batch b;
  b.x.resize(rows * features);
  for (auto& v : b.x) v = u(rng);
  b.y.resize(rows);
  for (auto& l : b.y)
    l = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(std::max(classes, 1)));
  b.t.resize(rows);
  for (auto& v : b.t) v = 4.0f * u(rng) - 2.0f;
  return b;
}

// Central finite differences against the analytic gradient on the coordinates with the largest
// gradients plus random ones from every tensor. The networks compute in float, so the tolerance
// allows for rounding in the loss (about 1e-7 relative, divided by the step).
void check_gradient(const std::string& spec, std::size_t rows, std::uint64_t seed) {
  CAPTURE(spec);
  auto net = net_for(spec);
  Model m(net->layout());
  net->init(m.data, seed);
  const Batch b = random_batch(rows, net->input_features(), net->num_classes(), seed + 100);
  const Targets targets = b.targets(net->regression());
  std::vector<float> grad(m.data.size()), scratch(m.data.size());
  const double loss = net->loss_and_gradient(m.data, b.x.data(), targets, rows, grad);
  REQUIRE(std::isfinite(loss));
  REQUIRE(loss > 0);

  std::vector<std::size_t> coords(grad.size());
  std::iota(coords.begin(), coords.end(), std::size_t{0});
  std::partial_sort(
      coords.begin(), coords.begin() + 8, coords.end(),
      [&](std::size_t a, std::size_t c) { return std::abs(grad[a]) > std::abs(grad[c]); });
  coords.resize(8);
  std::mt19937_64 rng(seed);
  for (std::size_t t = 0; t < m.layout.tensors().size(); ++t) {
    const std::size_t n = m.layout.tensors()[t].elements();
    for (int k = 0; k < 3; ++k) coords.push_back(m.layout.offset(t) + rng() % n);
  }
  const double gmax = std::abs(grad[coords[0]]);
  int bad = 0;
  for (std::size_t i : coords) {
    // A step can cross a ReLU kink or change a max-pool winner, which spoils that one difference;
    // a coordinate passes when any of three step sizes agrees with the analytic gradient.
    bool agrees = false;
    double fd = 0;
    for (const float h : {1e-3f, 3e-3f, 3e-4f}) {
      const float saved = m.data[i];
      m.data[i] = saved + h;
      const double up = net->loss_and_gradient(m.data, b.x.data(), targets, rows, scratch);
      m.data[i] = saved - h;
      const double down = net->loss_and_gradient(m.data, b.x.data(), targets, rows, scratch);
      m.data[i] = saved;
      fd = (up - down) / (2.0 * static_cast<double>(h));
      const double rounding = 1e-6 * loss / static_cast<double>(h);
      if (std::abs(fd - grad[i]) <= 2e-2 * std::abs(fd) + 1e-3 * gmax + rounding) agrees = true;
    }
    if (!agrees) {
      ++bad;
      MESSAGE("coordinate " << i << ": analytic " << grad[i] << ", finite difference " << fd);
    }
  }
  CHECK(bad == 0);
}

std::vector<std::pair<std::string, std::vector<std::uint64_t>>> shapes(const ModelLayout& l) {
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> out;
  for (const auto& t : l.tensors()) out.emplace_back(t.name, t.shape);
  return out;
}

}  // namespace

TEST_CASE("layouts use PyTorch names and shapes") {
  using S = std::vector<std::pair<std::string, std::vector<std::uint64_t>>>;
  auto softmax = net_for("softmax:784,10");
  CHECK(shapes(softmax->layout()) == S{{"fc.weight", {10, 784}}, {"fc.bias", {10}}});
  CHECK(softmax->input_features() == 784);
  CHECK(softmax->num_classes() == 10);

  auto mlp = net_for("mlp:784,128,64,10");
  CHECK(shapes(mlp->layout()) == S{{"fc1.weight", {128, 784}},
                                   {"fc1.bias", {128}},
                                   {"fc2.weight", {64, 128}},
                                   {"fc2.bias", {64}},
                                   {"fc3.weight", {10, 64}},
                                   {"fc3.bias", {10}}});
  CHECK(net_for("mlp:784,128,10")->layout().size() == 784 * 128 + 128 + 128 * 10 + 10);

  auto cnn = net_for("cnn:fmnist");
  CHECK(shapes(cnn->layout()) == S{{"conv1.weight", {6, 1, 5, 5}},
                                   {"conv1.bias", {6}},
                                   {"conv2.weight", {16, 6, 5, 5}},
                                   {"conv2.bias", {16}},
                                   {"fc1.weight", {120, 256}},
                                   {"fc1.bias", {120}},
                                   {"fc2.weight", {84, 120}},
                                   {"fc2.bias", {84}},
                                   {"fc3.weight", {10, 84}},
                                   {"fc3.bias", {10}}});
  CHECK(cnn->layout().size() == 44426);
  CHECK(cnn->input_features() == 784);
  CHECK(cnn->num_classes() == 10);
}

TEST_CASE("bad model specs are errors") {
  for (const char* spec :
       {"", "mlp", "mlp:", "mlp:784,10", "mlp:784,,10", "mlp:784,0,10", "mlp:a,b,c",
        "mlp:784,128,10,", "softmax:784", "softmax:784,10,3", "softmax:784,1", "cnn:cifar",
        "lstm:3,4", "mlp:-1,3,4", "mlp:100000,100000,100000,10", "linreg:", "linreg:3,1",
        "linreg:0", "mlp:5,1"}) {
    CAPTURE(spec);
    auto r = make_network(spec);
    REQUIRE_FALSE(r.ok());
    CHECK_FALSE(r.error().message.empty());
  }
}

TEST_CASE("init is deterministic and bounded like PyTorch's default") {
  auto net = net_for("mlp:20,30,5");
  Model a(net->layout()), b(net->layout()), c(net->layout());
  net->init(a.data, 1);
  net->init(b.data, 1);
  net->init(c.data, 2);
  CHECK(a.data == b.data);
  CHECK(a.data != c.data);
  const float bound = 1.0f / std::sqrt(20.0f);
  for (float v : a.tensor(0)) CHECK(std::abs(v) <= bound);
  float largest = 0;
  for (float v : a.tensor(0)) largest = std::max(largest, std::abs(v));
  CHECK(largest > 0.8f * bound);
}

TEST_CASE("gradients match finite differences") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    check_gradient("softmax:12,4", 5, seed);
    check_gradient("mlp:12,16,4", 5, seed);
    check_gradient("mlp:10,8,7,3", 6, seed);
    check_gradient("cnn:fmnist", 3, seed);
    check_gradient("linreg:12", 5, seed);
    check_gradient("mlp:12,16,1", 5, seed);
    check_gradient("mlp:10,8,7,1", 6, seed);
  }
}

TEST_CASE("loss is stable for huge logits and matches evaluate") {
  auto net = net_for("softmax:6,3");
  Model m(net->layout());
  net->init(m.data, 5);
  for (auto& v : m.data) v *= 1e5f;
  const Batch b = random_batch(10, 6, 3, 9);
  std::vector<float> grad(m.data.size());
  const double loss = net->loss_and_gradient(m.data, b.x.data(), b.y.data(), 10, grad);
  CHECK(std::isfinite(loss));
  for (float g : grad) CHECK(std::isfinite(g));

  net->init(m.data, 5);
  Dataset d;
  d.rows = 10;
  d.features = 6;
  d.num_classes = 3;
  d.x = b.x;
  d.labels = b.y;
  const double l2 = net->loss_and_gradient(m.data, b.x.data(), b.y.data(), 10, grad);
  const std::size_t correct = net->last_batch_correct();
  const EvalResult all = net->evaluate(m.data, d);
  CHECK(all.examples == 10);
  CHECK(all.loss == doctest::Approx(l2).epsilon(1e-6));
  CHECK(all.accuracy == doctest::Approx(static_cast<double>(correct) / 10));

  const std::vector<std::size_t> some{1, 3, 5};
  const EvalResult part = net->evaluate(m.data, d, some);
  CHECK(part.examples == 3);
  std::vector<float> xs;
  std::vector<std::int32_t> ys;
  for (auto i : some) {
    xs.insert(xs.end(), d.row(i), d.row(i) + 6);
    ys.push_back(d.labels[i]);
  }
  CHECK(
      part.loss ==
      doctest::Approx(net->loss_and_gradient(m.data, xs.data(), ys.data(), 3, grad)).epsilon(1e-6));
}

TEST_CASE("evaluate batches internally: many rows give the same answer as one pass") {
  auto net = net_for("cnn:fmnist");
  Model m(net->layout());
  net->init(m.data, 3);
  const Batch b = random_batch(600, 784, 10, 4);
  Dataset d;
  d.rows = 600;
  d.features = 784;
  d.num_classes = 10;
  d.x = b.x;
  d.labels = b.y;
  const EvalResult r = net->evaluate(m.data, d);
  double total = 0;
  std::vector<float> grad(m.data.size());
  for (std::size_t start = 0; start < 600; start += 100) {
    total += 100 * net->loss_and_gradient(m.data, d.row(start), d.labels.data() + start, 100, grad);
  }
  CHECK(r.examples == 600);
  CHECK(r.loss == doctest::Approx(total / 600).epsilon(1e-5));
}

TEST_CASE("regression networks: PyTorch layouts, no classes") {
  using S = std::vector<std::pair<std::string, std::vector<std::uint64_t>>>;
  auto lin = net_for("linreg:30");
  CHECK(shapes(lin->layout()) == S{{"fc.weight", {1, 30}}, {"fc.bias", {1}}});
  CHECK(lin->regression());
  CHECK(lin->num_classes() == 0);
  auto mlp = net_for("mlp:10,8,1");
  CHECK(mlp->regression());
  CHECK(shapes(mlp->layout()) ==
        S{{"fc1.weight", {8, 10}}, {"fc1.bias", {8}}, {"fc2.weight", {1, 8}}, {"fc2.bias", {1}}});
  CHECK_FALSE(net_for("mlp:10,8,2")->regression());
  // Targets of the wrong kind are not silently used.
  Model m(lin->layout());
  std::vector<float> x(30, 1.0f), grad(m.data.size());
  const std::int32_t label = 0;
  CHECK(std::isnan(lin->loss_and_gradient(m.data, x.data(), &label, 1, grad)));
  auto soft = net_for("softmax:30,2");
  const float target = 1.0f;
  CHECK(std::isnan(soft->loss_and_gradient(m.data, x.data(), Targets{nullptr, &target}, 1, grad)));
}

TEST_CASE("regression: evaluate gives MSE, RMSE, MAE and R^2 as computed by hand") {
  auto net = net_for("linreg:2");
  Model m(net->layout());
  // prediction = 2 x0 - x1 + 0.5
  m.data = {2.0f, -1.0f, 0.5f};
  Dataset d;
  d.rows = 4;
  d.features = 2;
  d.x = {1, 0, 0, 1, 2, 2, -1, 3};
  d.targets = {3.0f, 0.0f, 2.0f, -5.0f};  // predictions 2.5, -0.5, 2.5, -4.5
  const EvalResult r = net->evaluate(m.data, d);
  REQUIRE(r.examples == 4);
  const double errors[] = {-0.5, -0.5, 0.5, 0.5};
  double sse = 0, sae = 0;
  for (double e : errors) {
    sse += e * e;
    sae += std::abs(e);
  }
  const double mean = 0.0, sst = 9 + 0 + 4 + 25 - 4 * mean * mean;
  CHECK(r.loss == doctest::Approx(sse / 4));
  CHECK(r.rmse == doctest::Approx(std::sqrt(sse / 4)));
  CHECK(r.mae == doctest::Approx(sae / 4));
  CHECK(r.r2 == doctest::Approx(1 - sse / sst));
  CHECK(r.accuracy == 0);
  CHECK(r.sum_target == doctest::Approx(0.0));
  CHECK(r.sum_target_sq == doctest::Approx(38.0));
  const std::vector<std::size_t> some{0, 2};
  const EvalResult part = net->evaluate(m.data, d, some);
  CHECK(part.examples == 2);
  CHECK(part.r2 == doctest::Approx(1 - 0.5 / 0.5));  // targets 3, 2: SST 0.5, SSE 0.5
  Dataset no_targets = d;
  no_targets.targets.clear();
  CHECK(net->evaluate(m.data, no_targets).examples == 0);
}

TEST_CASE("regression: gradient descent on linreg reaches the least-squares solution") {
  // y = X w* + b* + noise; the closed form solves the normal equations with an intercept.
  constexpr std::size_t kRows = 200, kFeatures = 4;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> g(0.0, 1.0);
  Eigen::MatrixXd a(kRows, kFeatures + 1);
  Eigen::VectorXd y(kRows);
  Dataset d;
  d.rows = kRows;
  d.features = kFeatures;
  const double w_true[kFeatures] = {1.5, -2.0, 0.25, 3.0};
  for (std::size_t i = 0; i < kRows; ++i) {
    double t = 4.0 + 0.3 * g(rng);
    for (std::size_t j = 0; j < kFeatures; ++j) {
      const double v = g(rng) * (j + 1);
      a(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = v;
      d.x.push_back(static_cast<float>(v));
      t += w_true[j] * v;
    }
    a(static_cast<Eigen::Index>(i), kFeatures) = 1.0;
    y(static_cast<Eigen::Index>(i)) = t;
    d.targets.push_back(static_cast<float>(t));
  }
  const Eigen::VectorXd closed = (a.transpose() * a).ldlt().solve(a.transpose() * y);

  auto net = net_for("linreg:4");
  Model m(net->layout());
  net->init(m.data, 1);
  std::vector<float> grad(m.data.size());
  for (int step = 0; step < 3000; ++step) {
    net->loss_and_gradient(m.data, d.x.data(), Targets{nullptr, d.targets.data()}, kRows, grad);
    for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] -= 0.02f * grad[i];
  }
  for (std::size_t j = 0; j < kFeatures; ++j)
    CHECK(m.data[j] == doctest::Approx(closed(j)).epsilon(1e-3));
  CHECK(m.data[kFeatures] == doctest::Approx(closed(kFeatures)).epsilon(1e-3));
  const EvalResult r = net->evaluate(m.data, d);
  const double sse_closed = (a * closed - y).squaredNorm();
  CHECK(r.loss == doctest::Approx(sse_closed / kRows).epsilon(1e-3));
  CHECK(r.r2 > 0.99);
}
