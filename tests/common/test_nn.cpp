#include <doctest/doctest.h>

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
};

Batch random_batch(std::size_t rows, std::size_t features, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Batch b;
  b.x.resize(rows * features);
  for (auto& v : b.x) v = u(rng);
  b.y.resize(rows);
  for (auto& l : b.y) l = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes));
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
  std::vector<float> grad(m.data.size()), scratch(m.data.size());
  const double loss = net->loss_and_gradient(m.data, b.x.data(), b.y.data(), rows, grad);
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
      const double up = net->loss_and_gradient(m.data, b.x.data(), b.y.data(), rows, scratch);
      m.data[i] = saved - h;
      const double down = net->loss_and_gradient(m.data, b.x.data(), b.y.data(), rows, scratch);
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
        "lstm:3,4", "mlp:-1,3,4", "mlp:100000,100000,100000,10"}) {
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
