// The built-in trainer on CSV files (client/tabular_data.hpp): three sites whose features are on
// very different scales, standardised with the federation's statistics end to end, and a
// regression trained through the trainer against the closed-form least-squares fit.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "client/builtin_trainer.hpp"
#include "common/nn.hpp"
#include "tests/common/temp_dir.hpp"

using namespace federa;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

// area ~ N(1000, 300), ratio ~ N(0.05, 0.01), kind in {a, b}; label "malignant" when a linear
// score of the standardised features is positive. `regression` writes the score as target.
// `positive_only` keeps only rows of one class (a one-class site).
std::string table(std::size_t rows, std::uint64_t seed, bool regression,
                  bool positive_only = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> area(1000, 300), ratio(0.05, 0.01), noise(0, 0.3);
  std::ostringstream out;
  out.precision(10);
  out << "area,ratio,kind,y\n";
  for (std::size_t written = 0; written < rows;) {
    const double a = area(rng), r = ratio(rng);
    const bool kind_b = rng() % 2 == 1;
    const double score = 1.5 * (a - 1000) / 300 - 2.0 * (r - 0.05) / 0.01 + (kind_b ? 0.8 : -0.8);
    if (positive_only && score <= 0) continue;
    out << a << ',' << r << ',' << (kind_b ? "b" : "a") << ',';
    if (regression) {
      out << 20.0 + 5.0 * score + noise(rng) << '\n';
    } else {
      out << (score > 0 ? "malignant" : "benign") << '\n';
    }
    ++written;
  }
  return out.str();
}

std::unique_ptr<TabularData> open(const std::string& path, std::size_t train, std::size_t test,
                                  TabularData::Options options = {}) {
  std::vector<std::size_t> rows(train + test);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  auto t = TabularData::open(CsvSource{path, "y", ','}, rows, train, options);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
  return std::move(*t);
}

Model initial(const std::string& spec) {
  auto net = make_network(spec);
  REQUIRE(net.ok());
  Model m((*net)->layout());
  (*net)->init(m.data, 3);
  return m;
}

// What the coordinator does before round 1: merge the local schemas, sum the statistics.
TrainConfig federation_config(std::vector<std::unique_ptr<TabularData>>& sites, TaskType task,
                              Schema* out) {
  Result<Schema> merged = sites[0]->local_schema(task);
  REQUIRE(merged.ok());
  for (std::size_t i = 1; i < sites.size(); ++i) {
    auto mine = sites[i]->local_schema(task);
    REQUIRE(mine.ok());
    merged = merge_schemas(*merged, *mine);
    REQUIRE(merged.ok());
  }
  *out = *merged;
  TrainConfig config;
  config.extra[kConfigSchema] = schema_to_json(*merged);
  config.model = merged->model_spec();
  TableStatistics total;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    auto s = sites[i]->statistics(config);
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
    if (i == 0)
      total = *s;
    else
      REQUIRE(add_statistics(total, *s).ok());
  }
  auto z = make_standardization(total, *merged);
  REQUIRE(z.ok());
  config.extra[kConfigStandardization] = standardization_to_json(*z, *merged);
  return config;
}

// FedAvg over the sites' trainers for `rounds` rounds; returns the global model.
Model fedavg(std::vector<std::unique_ptr<Trainer>>& trainers, const TrainConfig& base, int rounds) {
  Model global = initial(base.model);
  for (int round = 1; round <= rounds; ++round) {
    TrainConfig config = base;
    config.seed = static_cast<std::uint64_t>(round);
    std::vector<double> sum(global.data.size(), 0.0);
    double weight = 0;
    for (auto& t : trainers) {
      auto r = t->fit(global, config);
      REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
      for (std::size_t i = 0; i < sum.size(); ++i)
        sum[i] += static_cast<double>(r->num_examples) * r->weights[i];
      weight += static_cast<double>(r->num_examples);
    }
    for (std::size_t i = 0; i < sum.size(); ++i)
      global.data[i] = static_cast<float>(sum[i] / weight);
  }
  return global;
}

}  // namespace

TEST_CASE("tabular: three sites standardised with the federation's figures learn what one would") {
  TempDir dir;
  const std::string a = dir.write("a.csv", table(300, 1, false));
  const std::string b = dir.write("b.csv", table(80, 2, false, /*positive_only=*/true));
  const std::string c = dir.write("c.csv", table(150, 3, false));
  std::vector<std::unique_ptr<TabularData>> sites;
  sites.push_back(open(a, 240, 60));
  sites.push_back(open(b, 80, 0));  // a one-class site, no held-out rows
  sites.push_back(open(c, 120, 30));
  Schema schema;
  TrainConfig config = federation_config(sites, TaskType::classification, &schema);
  CHECK(schema.classes == std::vector<std::string>{"benign", "malignant"});
  CHECK(config.model == "softmax:5,2");  // area, ratio, kind a/b + its empty-cell slot

  // Each site's rows, standardised with the global figures, pool to mean 0 and variance 1.
  double sum = 0, sum_sq = 0, n = 0;
  for (auto& s : sites) {
    auto d = s->dataset(config);
    REQUIRE(d.ok());
    for (std::size_t r = 0; r < s->train_rows(); ++r) {
      sum += (*d)->row(r)[0];
      sum_sq += (*d)->row(r)[0] * static_cast<double>((*d)->row(r)[0]);
      n += 1;
    }
    // The one-class site's rows are 'malignant', class 1 of the federation, not its own 0.
    if (s.get() == sites[1].get()) CHECK((*d)->labels == std::vector<std::int32_t>(80, 1));
  }
  CHECK(sum / n == doctest::Approx(0.0).scale(1.0).epsilon(1e-5));
  CHECK(sum_sq / n == doctest::Approx(1.0).epsilon(1e-4));

  std::vector<std::unique_ptr<Trainer>> trainers;
  for (auto& s : sites) trainers.push_back(make_tabular_trainer(std::move(s), 7));
  config.lr = 0.1f;
  config.local_epochs = 2;
  const Model global = fedavg(trainers, config, 10);
  for (std::size_t i : {0u, 2u}) {
    auto e = trainers[i]->evaluate(global, config);
    REQUIRE(e.ok());
    CHECK(e->num_examples == (i == 0 ? 60u : 30u));
    CHECK(e->accuracy >= 0.9);
  }
  auto none = trainers[1]->evaluate(global, config);
  REQUIRE(none.ok());
  CHECK(none->num_examples == 0);

  // A model that does not fit the schema's encoding is refused with the reason.
  TrainConfig wrong = config;
  wrong.model = "softmax:3,2";
  CHECK(trainers[0]->fit(initial("softmax:3,2"), wrong).error().message.find("takes 3 features") !=
        std::string::npos);
  TrainConfig reg = config;
  reg.model = "linreg:5";
  CHECK(trainers[0]->fit(initial("linreg:5"), reg).error().message.find("regression") !=
        std::string::npos);
}

TEST_CASE("tabular: linreg through the trainer reaches the closed-form least-squares fit") {
  TempDir dir;
  const std::string path = dir.write("r.csv", table(400, 9, true));
  std::vector<std::unique_ptr<TabularData>> sites;
  sites.push_back(open(path, 400, 0));
  Schema schema;
  TrainConfig config = federation_config(sites, TaskType::regression, &schema);
  CHECK(config.model == "linreg:5");
  auto data = sites[0]->dataset(config);
  REQUIRE(data.ok());
  const Dataset& d = **data;
  // Closed form on the same standardised rows: 5 encoded columns + intercept. The one-hot
  // columns are collinear with the intercept (a + b = 1) and the empty-cell slot is all 0, so
  // solve with the minimum-norm fit.
  Eigen::MatrixXd x(static_cast<Eigen::Index>(d.rows), 6);
  Eigen::VectorXd y(static_cast<Eigen::Index>(d.rows));
  for (std::size_t r = 0; r < d.rows; ++r) {
    for (std::size_t j = 0; j < 5; ++j)
      x(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j)) = d.row(r)[j];
    x(static_cast<Eigen::Index>(r), 5) = 1.0;
    y(static_cast<Eigen::Index>(r)) = d.targets[r];
  }
  const Eigen::VectorXd w = x.completeOrthogonalDecomposition().solve(y);
  const double mse_closed = (x * w - y).squaredNorm() / static_cast<double>(d.rows);

  std::vector<std::unique_ptr<Trainer>> trainers;
  for (auto& s : sites) trainers.push_back(make_tabular_trainer(std::move(s), 1));
  config.lr = 0.01f;
  config.local_epochs = 5;
  config.batch_size = 16;
  const Model global = fedavg(trainers, config, 20);
  auto net = make_network("linreg:5");
  REQUIRE(net.ok());
  const EvalResult e = (*net)->evaluate(global.data, d);
  CHECK(e.loss <= mse_closed * 1.02);
  CHECK(e.loss >= mse_closed * 0.999);  // least squares is the minimum
  CHECK(e.r2 > 0.99);
  // A site evaluating it on held-out rows: a loss and R^2, no accuracy (it sent 0 before).
  auto evaluating = make_tabular_trainer(open(path, 320, 80), 1);
  auto held_out = evaluating->evaluate(global, config);
  REQUIRE(held_out.ok());
  CHECK(held_out->num_examples == 80);
  CHECK_FALSE(held_out->accuracy);
  CHECK(held_out->metrics.at("r2") > 0.9);
}

TEST_CASE("tabular: empty cells under impute take the federation's mean") {
  TempDir dir;
  const std::string a = dir.write("a.csv", "area,kind,y\n10,a,yes\n,b,no\n30,,yes\n");
  const std::string b = dir.write("b.csv", "area,kind,y\n50,a,no\n70,b,yes\n");
  TabularData::Options impute;
  impute.impute = true;
  std::vector<std::unique_ptr<TabularData>> sites;
  sites.push_back(open(a, 3, 0, impute));
  sites.push_back(open(b, 2, 0, impute));
  // Without impute the site is refused at startup, with where and why.
  auto refused = TabularData::open(CsvSource{a, "y", ','}, {0, 1, 2}, 3, {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find(a + ":3:1: column 'area': empty cell") != std::string::npos);

  Schema schema;
  TrainConfig config = federation_config(sites, TaskType::classification, &schema);
  auto d = sites[0]->dataset(config);
  REQUIRE(d.ok());
  // Global mean of area = (10 + 30 + 50 + 70) / 4 = 40: the empty cell standardises to 0.
  CHECK((*d)->row(1)[0] == doctest::Approx(0.0));
  CHECK((*d)->row(0)[0] < 0);
  // kind: a, b, then the reserved slot for the empty cell.
  CHECK(std::vector<float>((*d)->row(2) + 1, (*d)->row(2) + 4) == std::vector<float>{0, 0, 1});

  TabularData::Options raw = impute;
  raw.standardize = false;
  auto unscaled = open(a, 3, 0, raw);
  auto u = unscaled->dataset(config);
  REQUIRE(u.ok());
  CHECK((*u)->row(1)[0] == doctest::Approx(40.0));  // the global mean, unscaled
  CHECK((*u)->row(0)[0] == doctest::Approx(10.0));
}

TEST_CASE("tabular: the join report says what the file holds, or where it does not fit") {
  TempDir dir;
  const std::string path =
      dir.write("j.csv", "age,sex,y\n30,F,yes\n40,M,no\n50,X,yes\n60,M,maybe\n");
  auto t = open(path, 4, 0);
  // While the federation derives its schema: the task only. Values held, never counted.
  TabularData::Report r = t->report(R"({"task":"classification"})");
  REQUIRE(r.refusal.empty());
  auto mine = schema_from_json(r.schema_json);
  REQUIRE(mine.ok());
  CHECK(mine->classes == std::vector<std::string>{"maybe", "no", "yes"});
  CHECK(mine->features[1].categories == std::vector<std::string>{"F", "M", "X"});
  // A regression federation hears no label values (and this text label is refused).
  r = t->report(R"({"task":"regression"})");
  CHECK(r.refusal.find(path + ":2:3: the label 'y' is a regression target") != std::string::npos);
  CHECK(t->report("{}").refusal.find("names no task") != std::string::npos);

  // Against a known schema: the first cell that does not fit, with where it is.
  Schema fed;
  fed.label = "y";
  fed.classes = {"maybe", "no", "yes"};
  fed.features = {{"age", ColumnType::numeric, {}}, {"sex", ColumnType::categorical, {"F", "M"}}};
  r = t->report(schema_to_json(fed));
  CHECK(r.refusal.find(path + ":4:2: 'X' is not one of column 'sex''s categories") !=
        std::string::npos);
  fed.features[1].categories.push_back("X");
  fed.classes = {"no", "yes"};
  r = t->report(schema_to_json(fed));
  CHECK(r.refusal.find(path + ":5:3: label 'maybe' is not in the federation's class list") !=
        std::string::npos);
  fed.classes = {"maybe", "no", "yes"};
  r = t->report(schema_to_json(fed));
  CHECK(r.refusal.empty());
  // A code column of numbers that the schema calls categorical is read as categories.
  const std::string codes = dir.write("codes.csv", "zone,y\n1,yes\n2,no\n1,no\n");
  Schema zones;
  zones.label = "y";
  zones.classes = {"no", "yes"};
  zones.features = {{"zone", ColumnType::categorical, {"1", "2", "3"}}};
  auto z = open(codes, 3, 0);
  r = z->report(schema_to_json(zones));
  CHECK(r.refusal.empty());
  CHECK(schema_from_json(r.schema_json)->features[0].type == ColumnType::categorical);
}
