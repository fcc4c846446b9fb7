// Tabular federations through the protocol (issue 11): the coordinator and its sites over real
// TLS 1.3 on 127.0.0.1, in one process, each site a FederatedClient with the built-in trainer on
// its own CSV file. The schema derived at join (class list = sorted union of disjoint label
// sets), the statistics phase against a pooled computation, standardisation end to end,
// regression against the closed-form fit, and bad files refused at join with FILE:LINE:COLUMN
// while the coordinator goes on with the others.
#include <doctest/doctest.h>

#include <Eigen/Dense>

#include "tests/integration/tabular_fixtures.hpp"

using namespace federa;
using namespace federa::testing::tabular;

TEST_CASE(
    "tabular federation: disjoint label sets share one class list; statistics equal the pooled "
    "ones") {
  const fs::path dir = make_pki();
  // Each site holds one animal only: alone, each would call its label class 0.
  std::vector<std::vector<Row>> site_rows(3);
  std::vector<Row> test;
  std::size_t eligible = 0;
  for (const Row& r : rows(6000, 11)) {
    if (near_boundary(r.score)) continue;
    if (++eligible % 6 == 0) {
      if (test.size() < 300) test.push_back(r);
      continue;
    }
    const std::string a = animal(r.score);
    auto& site = site_rows[a == "emu"   ? 0
                           : a == "cat" ? 1
                                        : 2];  // site-a: emu, site-b: cat, site-c: dog
    if (site.size() < 250) site.push_back(r);
  }
  const auto label = [](const Row& r) { return animal(r.score); };
  const std::string test_csv = write_csv(dir / "test.csv", test, label);
  TableCoordinator coord(dir, table_options("softmax:5,3", std::nullopt, 15),
                         "csv:" + test_csv + ":label=y");
  Sites sites{dir, coord.port()};
  const char* names[] = {"site-a", "site-b", "site-c"};
  std::vector<RecordingTrainer*> recorders;
  for (int i = 0; i < 3; ++i) {
    // site-b exports from a spreadsheet: BOM and CRLF line ends.
    const std::string csv = write_csv(dir / (std::string(names[i]) + ".csv"), site_rows[i], label,
                                      i == 1 ? "\r\n" : "\n", i == 1);
    auto t = table_trainer(csv, site_rows[i].size(), site_rows[i].size() - 20);
    recorders.push_back(t.get());
    sites.start(names[i], std::move(t));
  }
  REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
  REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());

  // Every site was sent the same class list, the sorted union.
  for (auto* r : recorders) {
    auto task = r->first_task();
    REQUIRE(task);
    auto schema = schema_from_json(task->extra.at(kConfigSchema));
    REQUIRE(schema.ok());
    CHECK(schema->classes == std::vector<std::string>{"cat", "dog", "emu"});
    CHECK(schema->input_width() == 5);  // area, ratio, kind a/b + the empty-cell slot

    // The global means and stds are the pooled ones over every site's training rows.
    auto z = standardization_from_json(task->extra.at(kConfigStandardization), *schema);
    REQUIRE(z.ok());
    const Column* area = schema->find("area");
    const Column* ratio = schema->find("ratio");
    REQUIRE(area);
    REQUIRE(ratio);
    for (const auto& [col, get] : std::vector<std::pair<const Column*, double (*)(const Row&)>>{
             {area, [](const Row& r) { return r.area; }},
             {ratio, [](const Row& r) { return r.ratio; }}}) {
      double n = 0, sum = 0, sq = 0;
      for (const auto& site : site_rows)
        for (std::size_t k = 0; k + 20 < site.size(); ++k) {
          const double v = get(site[k]);
          n += 1;
          sum += v;
          sq += v * v;
        }
      const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
      const auto j = static_cast<std::size_t>(col - schema->features.data());
      CHECK(z->mean[j] == doctest::Approx(mean).epsilon(1e-9));
      CHECK(z->std[j] == doctest::Approx(sd).epsilon(1e-6));
    }
  }
  // Mapped the same way everywhere, the federation learns all three classes (a site that
  // numbered its own single label 0 would leave the global model near a third).
  std::lock_guard lk(coord.recorder.mu);
  REQUIRE(coord.recorder.rounds.size() == 15);
  REQUIRE(coord.recorder.rounds.back().accuracy);
  CHECK(*coord.recorder.rounds.back().accuracy > 0.9);
}

TEST_CASE(
    "tabular federation: bad files are refused at join with FILE:LINE:COLUMN; the others train") {
  const fs::path dir = make_pki();
  const auto label = [](const Row& r) {
    return r.score > 0 ? std::string("malignant") : std::string("benign");
  };
  auto schema = schema_from_json(
      R"({"label":"y","task":"classification","classes":["benign","malignant"],
          "features":[{"name":"area","type":"numeric"},{"name":"ratio","type":"numeric"},
                      {"name":"kind","type":"categorical","categories":["a","b"]}]})");
  REQUIRE(schema.ok());
  const std::vector<Row> test = rows(300, 99);
  const std::string test_csv = write_csv(dir / "test.csv", test, label);
  TableCoordinator coord(dir, table_options("softmax:5,2", *schema, 5),
                         "csv:" + test_csv + ":label=y");
  Sites sites{dir, coord.port()};

  // Each bad file: its name, its text, the reason the coordinator must give.
  const std::string header = "area,ratio,kind,y\n";
  std::string good_rows;
  for (int i = 0; i < 30; ++i) good_rows += std::to_string(900 + i) + ",0.05,a,benign\n";
  struct Bad {
    std::string name, text, reason;
    bool at_start = false;  // the client finds it reading its file, before it connects
  };
  const std::vector<Bad> bad = {
      {"unknown-label", header + good_rows + "950,0.04,b,unsure\n", "unknown-label.csv:32:4"},
      {"unknown-category", header + "950,0.04,c,benign\n" + good_rows, "unknown-category.csv:2:3"},
      {"text-in-number", header + good_rows + "many,0.04,b,benign\n", "text-in-number.csv:32:1",
       true},
      {"empty-cell", header + good_rows + "950,,b,benign\n", "empty-cell.csv:32:2", true},
      {"missing-column",
       "area,kind,y\n" + std::string("900,a,benign\n") + "901,b,malignant\n" +
           [] {
             std::string s;
             for (int i = 0; i < 30; ++i) s += "1000,a,benign\n";
             return s;
           }(),
       "'ratio'"},
      {"too-few-rows", header + "950,0.04,b,benign\n951,0.05,a,malignant\n", "at least 10"},
  };
  std::size_t at_join = 0;
  for (const auto& b : bad) {
    const fs::path p = dir / (b.name + ".csv");
    std::ofstream(p, std::ios::binary) << b.text;
    const std::size_t n =
        static_cast<std::size_t>(std::count(b.text.begin(), b.text.end(), '\n')) - 1;
    if (b.at_start) {
      std::vector<std::size_t> idx(n);
      for (std::size_t i = 0; i < n; ++i) idx[i] = i;
      auto t = TabularData::open(CsvSource{p.string(), "y", ','}, idx, n, {});
      REQUIRE_FALSE(t.ok());
      CHECK_MESSAGE(t.error().message.find(b.reason) != std::string::npos, t.error().message);
      continue;
    }
    ++at_join;
    sites.start(b.name, table_trainer(p.string(), n, n));
  }
  // A site whose data is not a table at all.
  auto images = std::make_shared<Dataset>();
  images->features = 5;
  images->num_classes = 2;
  images->rows = 20;
  images->x.assign(100, 0.5f);
  images->labels.assign(20, 1);
  std::vector<std::size_t> all(20);
  for (std::size_t i = 0; i < 20; ++i) all[i] = i;
  sites.start("no-table", make_builtin_trainer(images, all, {}, 1));

  // Every bad site is refused at join (the federation has not started: 0 good sites yet) ...
  for (int i = 0; i < 400 && coord.recorder.refusals() < at_join + 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (const auto& b : bad) {
    if (b.at_start) continue;
    const std::string why = coord.recorder.refusal_of(b.name);
    CHECK_MESSAGE(why.find(b.reason) != std::string::npos, b.name, ": ", why);
  }
  CHECK(coord.recorder.refusal_of("no-table").find("has none") != std::string::npos);

  // ... and the coordinator goes on with the good ones: one holds one class only (it must map
  // it as class 1), one exports with a BOM and CRLF line ends.
  std::vector<Row> all_rows = rows(900, 5);
  std::vector<Row> pos;
  for (const Row& r : all_rows)
    if (r.score > 0 && pos.size() < 150) pos.push_back(r);
  const std::vector<std::vector<Row>> good = {pos,
                                              {all_rows.begin(), all_rows.begin() + 300},
                                              {all_rows.begin() + 300, all_rows.begin() + 600}};
  for (int i = 0; i < 3; ++i) {
    const std::string name = "good-" + std::to_string(i);
    const std::string csv = write_csv(dir / (name + ".csv"), good[std::size_t(i)], label,
                                      i == 2 ? "\r\n" : "\n", i == 2);
    sites.start(name, table_trainer(csv, good[std::size_t(i)].size(), good[std::size_t(i)].size()));
  }
  REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
  REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());
  for (const auto& b : bad)
    if (!b.at_start)
      CHECK_MESSAGE(sites.code(b.name) == exit_error, b.name);  // DATA_MISMATCH is final
  CHECK(sites.code("no-table") == exit_error);
  for (int i = 0; i < 3; ++i) CHECK(sites.code("good-" + std::to_string(i)) == exit_complete);
  std::lock_guard lk(coord.recorder.mu);
  REQUIRE(coord.recorder.rounds.size() == 5);
  CHECK(coord.recorder.rounds.back().accepted == 3);
  REQUIRE(coord.recorder.rounds.back().accuracy);
  CHECK(*coord.recorder.rounds.back().accuracy > 0.9);
}

TEST_CASE("tabular federation: linreg over three sites reaches the closed-form least-squares R^2") {
  const fs::path dir = make_pki();
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0, 2.0);
  // Targets around 150 (as a clinical score): the first round's updates are large.
  std::vector<Row> all = rows(1000, 21);
  std::vector<double> y(all.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i].target = y[i] = 150 + 40 * all[i].score + noise(rng);
  const auto label = [](const Row& r) {
    std::ostringstream s;
    s.precision(12);
    s << r.target;
    return s.str();
  };
  const std::vector<Row> test(all.begin() + 700, all.end());
  const std::string test_csv = write_csv(dir / "test.csv", test, label);
  TableCoordinator coord(dir, table_options("linreg:5", std::nullopt, 30),
                         "csv:" + test_csv + ":label=y");
  Sites sites{dir, coord.port()};
  const std::size_t bounds[] = {0, 120, 350, 700};  // 120, 230 and 350 rows
  for (int i = 0; i < 3; ++i) {
    const std::vector<Row> mine(all.begin() + long(bounds[i]), all.begin() + long(bounds[i + 1]));
    const std::string csv = write_csv(dir / ("r" + std::to_string(i) + ".csv"), mine, label);
    sites.start("site-" + std::to_string(i), table_trainer(csv, mine.size(), mine.size()));
  }
  REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
  REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());

  // Least squares on the pooled training rows (area, ratio, kind b, intercept), scored on the test
  // rows.
  const auto design = [&](std::size_t from, std::size_t to) {
    Eigen::MatrixXd x(long(to - from), 4);
    for (std::size_t i = from; i < to; ++i) {
      const auto r = long(i - from);
      x(r, 0) = all[i].area;
      x(r, 1) = all[i].ratio;
      x(r, 2) = all[i].kind == "b" ? 1 : 0;
      x(r, 3) = 1;
    }
    return x;
  };
  const Eigen::VectorXd ytrain = Eigen::Map<const Eigen::VectorXd>(y.data(), 700);
  const Eigen::VectorXd ytest = Eigen::Map<const Eigen::VectorXd>(y.data() + 700, 300);
  const Eigen::VectorXd w = design(0, 700).colPivHouseholderQr().solve(ytrain);
  const double sse = (design(700, 1000) * w - ytest).squaredNorm();
  const double sst = (ytest.array() - ytest.mean()).matrix().squaredNorm();
  const double r2_closed = 1 - sse / sst;
  CHECK(r2_closed > 0.9);

  std::lock_guard lk(coord.recorder.mu);
  REQUIRE(coord.recorder.rounds.size() == 30);
  const RoundReport& last = coord.recorder.rounds.back();
  REQUIRE(last.loss);
  REQUIRE(last.r2);
  REQUIRE(last.rmse);
  CHECK(*last.r2 == doctest::Approx(1 - *last.loss * 300 / sst));  // loss: the mean squared error
  CHECK(*last.rmse == doctest::Approx(std::sqrt(*last.loss)));
  CHECK(*last.r2 > r2_closed - 0.02);
  CHECK(last.metrics_line.find("\"r2\":") != std::string::npos);
}

TEST_CASE("tabular federation: statistics summed with SecAgg+ equal the plain ones") {
  const fs::path dir = make_pki();
  const auto label = [](const Row& r) {
    return r.score > 0 ? std::string("yes") : std::string("no");
  };
  std::vector<std::string> csv;
  std::vector<std::size_t> sizes = {40, 75, 130};
  for (std::size_t i = 0; i < 3; ++i)
    csv.push_back(
        write_csv(dir / ("s" + std::to_string(i) + ".csv"), rows(sizes[i], 40 + i), label));
  const std::string test_csv = write_csv(dir / "test.csv", rows(50, 7), label);
  // One round each: the standardisation every site is sent, plain and secure.
  std::vector<std::string> sent;
  for (const std::string mode : {"", "secagg+"}) {
    OrchestratorOptions o = table_options("softmax:5,2", std::nullopt, 1);
    o.secure_aggregation = mode;
    TableCoordinator coord(dir, o, "csv:" + test_csv + ":label=y");
    Sites sites{dir, coord.port()};
    RecordingTrainer* first = nullptr;
    for (std::size_t i = 0; i < 3; ++i) {
      auto t = table_trainer(csv[i], sizes[i], sizes[i]);
      if (i == 0) first = t.get();
      sites.start((mode.empty() ? "plain-" : "secure-") + std::to_string(i), std::move(t));
    }
    REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
    REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());
    auto task = first->first_task();
    REQUIRE(task);
    sent.push_back(task->extra.at(kConfigStandardization));
    if (mode.empty()) sent.push_back(task->extra.at(kConfigSchema));
  }
  auto schema = schema_from_json(sent[1]);
  REQUIRE(schema.ok());
  auto plain = standardization_from_json(sent[0], *schema);
  auto secure = standardization_from_json(sent[2], *schema);
  REQUIRE(plain.ok());
  REQUIRE(secure.ok());
  REQUIRE(plain->mean.size() == secure->mean.size());
  for (std::size_t j = 0; j < plain->mean.size(); ++j) {
    // The only error: each site's rounding of its sums to 2^-40.
    CHECK(secure->mean[j] == doctest::Approx(plain->mean[j]).epsilon(1e-9));
    CHECK(secure->std[j] == doctest::Approx(plain->std[j]).epsilon(1e-9));
  }
  CHECK(plain->mean[0] != doctest::Approx(0.0));  // area: a real figure, ~1000
}
