// Operating a tabular federation (issue 11), over real TLS 1.3 on 127.0.0.1 in one process:
//   - an operator asks for the statistics again (Orchestrator::request_statistics, behind
//     POST /api/v1/statistics): a site that joined later counts in the new figures, which every
//     later task carries, and the outlier screen starts afresh with them;
//   - a resumed federation keeps its schema: the class list fixed before round 1 is committed
//     with each round, so a site arriving after the restart with a label value the federation
//     never had is refused at join instead of renumbering the classes.
#include <doctest/doctest.h>

#include "tests/integration/tabular_fixtures.hpp"

using namespace federa;
using namespace federa::testing::tabular;

namespace {

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string yes_no(const Row& r) { return r.score > 0 ? "yes" : "no"; }

// The pooled mean of `area` over every row of `sites`.
double pooled_area_mean(const std::vector<std::vector<Row>>& sites) {
  double n = 0, sum = 0;
  for (const auto& site : sites)
    for (const Row& r : site) {
      n += 1;
      sum += r.area;
    }
  return sum / n;
}

double area_mean_sent(const TrainConfig& task) {
  auto schema = schema_from_json(task.extra.at(kConfigSchema));
  REQUIRE(schema.ok());
  auto z = standardization_from_json(task.extra.at(kConfigStandardization), *schema);
  REQUIRE(z.ok());
  const Column* area = schema->find("area");
  REQUIRE(area);
  return z->mean[static_cast<std::size_t>(area - schema->features.data())];
}

}  // namespace

TEST_CASE("tabular federation: statistics computed again on request count a site that joined") {
  const fs::path dir = make_pki();
  std::vector<std::vector<Row>> data = {rows(60, 1), rows(80, 2), rows(70, 3), rows(200, 4)};
  for (Row& r : data[3]) r.area += 4000;  // the late site's areas are on another scale
  const std::string test_csv = write_csv(dir / "test.csv", rows(50, 9), yes_no);
  // Enough rounds before the request that the outlier screen's history has settled on small
  // changes: the new figures move every site's inputs, and honest updates must not then be
  // rejected as outliers (they were, every one, before the screen started afresh).
  OrchestratorOptions o = table_options("softmax:5,2", std::nullopt, 60);
  o.train.lr = 0.1f;
  TableCoordinator coord(dir, o, "csv:" + test_csv + ":label=y");

  Status early = coord.orch->request_statistics();
  CHECK(early.code() == ErrorCode::failed_precondition);
  CHECK(early.message().find("no table") != std::string::npos);

  Sites sites{dir, coord.port()};
  std::vector<RecordingTrainer*> trainers;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i == 3) {  // joins after round 40 committed (the job paused meanwhile: rounds are quick)
      REQUIRE(
          wait_until([&] { return coord.recorder.committed() >= 40; }, std::chrono::seconds(60)));
      coord.orch->pause();
    }
    const std::string csv = write_csv(dir / ("op" + std::to_string(i) + ".csv"), data[i], yes_no);
    auto t = table_trainer(csv, data[i].size(), data[i].size());
    trainers.push_back(t.get());
    sites.start("op-" + std::to_string(i), std::move(t));
  }
  REQUIRE(
      wait_until([&] { return coord.orch->connected_clients() == 4; }, std::chrono::seconds(30)));
  Status asked = coord.orch->request_statistics();
  REQUIRE_MESSAGE(asked.ok(), asked.message());
  coord.orch->resume();
  REQUIRE(coord.wait_finished(std::chrono::seconds(90)));
  REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());

  std::lock_guard lk(coord.recorder.mu);
  CHECK(coord.recorder.rounds.size() == 60);
  for (const RoundReport& r : coord.recorder.rounds) CHECK(r.rejected == 0);
  const auto& stats = coord.recorder.statistics;
  REQUIRE(stats.size() == 2);
  CHECK_FALSE(stats[0].requested);
  CHECK(stats[0].before_round == 1);
  CHECK(stats[0].sites == 3);
  CHECK(stats[0].rows == 60 + 80 + 70);
  CHECK(stats[1].requested);
  CHECK(stats[1].before_round >= 41);
  CHECK(stats[1].before_round <= 44);
  CHECK(stats[1].sites == 4);
  CHECK(stats[1].rows == 60 + 80 + 70 + 200);

  // The first task carried the three sites' figures, the last every site's.
  const double first = pooled_area_mean({data[0], data[1], data[2]});
  const double all = pooled_area_mean(data);
  auto first_task = trainers[0]->first_task();
  auto last_task = trainers[0]->last_task();
  REQUIRE(first_task);
  REQUIRE(last_task);
  CHECK(area_mean_sent(*first_task) == doctest::Approx(first).epsilon(1e-9));
  CHECK(area_mean_sent(*last_task) == doctest::Approx(all).epsilon(1e-9));
}

TEST_CASE("tabular federation: a resumed federation keeps the class list it committed") {
  const fs::path dir = make_pki();
  const fs::path state = temp_dir("federa_tab_state_");
  // cat and dog only: the derived class list is [cat, dog] and the model has two outputs.
  std::vector<std::vector<Row>> two(3);
  std::vector<Row> emu;
  for (const Row& r : rows(3000, 5)) {
    if (near_boundary(r.score)) continue;
    if (animal(r.score) == "emu") {
      if (emu.size() < 40) emu.push_back(r);
      continue;
    }
    for (auto& site : two)
      if (site.size() < 60) {
        site.push_back(r);
        break;
      }
  }
  for (const auto& site : two) REQUIRE(site.size() == 60);
  const auto label = [](const Row& r) { return animal(r.score); };
  const std::string test_csv = write_csv(dir / "test.csv", two[2], label);
  std::vector<std::string> csv;
  for (std::size_t i = 0; i < 3; ++i)
    csv.push_back(write_csv(dir / ("two" + std::to_string(i) + ".csv"), two[i], label));
  {
    TableCoordinator coord(dir, table_options("softmax:5,2", std::nullopt, 2),
                           "csv:" + test_csv + ":label=y", StateStore(state));
    Sites sites{dir, coord.port()};
    for (std::size_t i = 0; i < 3; ++i)
      sites.start("first-" + std::to_string(i), table_trainer(csv[i], 60, 60));
    REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
    REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());
  }
  auto committed = StateStore(state).load();
  REQUIRE(committed.ok());
  REQUIRE(committed->has_value());
  CHECK((*committed)->table.find("\"classes\":[\"cat\",\"dog\"]") != std::string::npos);

  // Restarted for a third round. A site holding emus arrives first: without the committed
  // schema it would count in a new derived one (cat, dog, emu) that the model cannot take.
  TableCoordinator coord(dir, table_options("softmax:5,2", std::nullopt, 3),
                         "csv:" + test_csv + ":label=y", StateStore(state));
  Sites sites{dir, coord.port()};
  std::vector<Row> with_emu = two[0];
  with_emu.insert(with_emu.end(), emu.begin(), emu.end());
  const std::string emu_csv = write_csv(dir / "emu.csv", with_emu, label);
  sites.start("emu-site", table_trainer(emu_csv, with_emu.size(), with_emu.size()));
  REQUIRE(wait_until([&] { return coord.recorder.refusals() == 1; }, std::chrono::seconds(30)));
  const std::string why = coord.recorder.refusal_of("emu-site");
  CHECK_MESSAGE(why.find("emu") != std::string::npos, why);
  for (std::size_t i = 0; i < 3; ++i)
    sites.start("again-" + std::to_string(i), table_trainer(csv[i], 60, 60));
  REQUIRE(coord.wait_finished(std::chrono::seconds(60)));
  REQUIRE_MESSAGE(coord.result.ok(), coord.result.message());
  std::lock_guard lk(coord.recorder.mu);
  REQUIRE(coord.recorder.rounds.size() == 1);
  CHECK(coord.recorder.rounds[0].round == 3);
  CHECK(coord.recorder.rounds[0].accepted == 3);
}
