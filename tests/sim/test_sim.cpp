// federa-sim: learning, reproducibility across thread counts and seeds, the simulated clock's
// deadlines and dropouts, and the researcher's outputs. Runs on the first few thousand
// Fashion-MNIST rows with the softmax model so the suite stays well under a minute.
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "sim/latency.hpp"
#include "sim/mpi_codec.hpp"
#include "sim/rank_group.hpp"
#include "sim/report.hpp"
#include "sim/simulation.hpp"

using namespace federa;

namespace {

bool have_fashion_mnist() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

SimOptions small() {
  spdlog::set_level(spdlog::level::warn);  // the orchestrator logs every client joining
  SimOptions o;
  o.clients = 20;
  o.per_round = 5;
  o.rounds = 3;
  o.seed = 7;
  o.train.model = "softmax:784,10";
  o.train.lr = 0.05f;
  o.train.batch_size = 16;
  o.train_limit = 3000;
  o.eval_data = "fashion-mnist";
  o.eval_limit = 1000;
  o.threads = 1;
  o.device = "cpu";
  o.print_rounds = false;
  return o;
}

SimReport run(const SimOptions& o) {
  auto group = make_local_group();
  auto r = run_simulation(o, *group);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return std::move(r.value());
}

// Metrics without the wall-clock field, which no two runs share.
std::vector<std::string> comparable(const std::vector<std::string>& lines) {
  static const std::regex duration("\"duration_ms\":[^,}]*,?");
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(std::regex_replace(l, duration, ""));
  return out;
}

}  // namespace

TEST_CASE("the simulation learns and reports every round") {
  if (!have_fashion_mnist()) {
    MESSAGE("skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  SimReport r = run(small());
  REQUIRE(r.metrics_lines.size() == 3);
  auto points = parse_metrics(r.metrics_lines);
  REQUIRE(points.size() == 3);
  for (const auto& p : points) {
    CHECK(p.clients == 5);
    CHECK(p.selected == 5);
    CHECK(p.dropped == 0);
    REQUIRE(p.accuracy.has_value());
  }
  CHECK(*points.back().accuracy > 0.55);
  CHECK(*points.back().accuracy > *points.front().accuracy);
  CHECK(r.client_updates == 15);
  CHECK(r.rounds_completed == 3);
  Summary s = summarize(r, points, 0.5);
  REQUIRE(s.best_accuracy.has_value());
  CHECK(s.rounds_to_target.has_value());
  CHECK(format_summary(s).find("best accuracy") != std::string::npos);
  std::string svg = render_svg(points, "test <run>");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("polyline") != std::string::npos);
  CHECK(svg.find("test &lt;run&gt;") != std::string::npos);
}

TEST_CASE("metrics are bit-for-bit identical with 1 and 2 threads, and repeat for a seed") {
  if (!have_fashion_mnist()) return;
  SimOptions o = small();
  o.partition = "dirichlet:0.5";
  o.train.momentum = 0.9f;
  o.train.lr = 0.01f;
  auto one = comparable(run(o).metrics_lines);
  o.threads = 2;
  auto two = comparable(run(o).metrics_lines);
  REQUIRE(one.size() == 3);
  CHECK(one == two);
  auto again = comparable(run(o).metrics_lines);
  CHECK(again == two);
  o.seed = 8;
  auto other = comparable(run(o).metrics_lines);
  CHECK(other != two);
}

TEST_CASE("federated evaluation: virtual clients evaluate each round on their held-out rows") {
  if (!have_fashion_mnist()) return;
  SimOptions o = small();
  o.test_fraction = 0.25;
  o.evaluation.fraction = 0.5;  // 10 of the 20 clients each time
  SimReport r = run(o);
  REQUIRE(r.metrics_lines.size() == 3);
  auto points = parse_metrics(r.metrics_lines);
  for (const auto& line : r.metrics_lines)
    CHECK(line.find("\"fed_clients\":10,") != std::string::npos);
  REQUIRE(points.back().fed_accuracy.has_value());
  // The clients' held-out rows come from the same distribution as the central test set.
  CHECK(*points.back().fed_accuracy > 0.5);
  CHECK(*points.back().fed_accuracy == doctest::Approx(*points.back().accuracy).epsilon(0.1));
  CHECK(*points.back().fed_accuracy > *points.front().fed_accuracy);
  CHECK(format_summary(summarize(r, points, 0)).find("final fed accuracy") != std::string::npos);
  CHECK(render_svg(points, "t").find("stroke-dasharray") != std::string::npos);
  // Reproducible across thread counts, like training.
  o.threads = 2;
  CHECK(comparable(run(o).metrics_lines) == comparable(r.metrics_lines));
  // Without held-out rows no client evaluates, and the lines say nothing of it.
  o.test_fraction = 0;
  for (const auto& line : run(o).metrics_lines) CHECK(line.find("fed_") == std::string::npos);
}

TEST_CASE("every strategy family runs in the simulation") {
  if (!have_fashion_mnist()) return;
  for (const char* name : {"fedprox", "fedadam", "median", "krum"}) {
    SimOptions o = small();
    o.rounds = 2;
    o.strategy.strategy = name;
    CAPTURE(name);
    SimReport r = run(o);
    CHECK(r.metrics_lines.size() == 2);
    CHECK(r.metrics_lines.back().find(std::string("\"strategy\":\"") + name + "\"") !=
          std::string::npos);
  }
}

TEST_CASE("dropout 1.0: no round can complete") {
  if (!have_fashion_mnist()) return;
  SimOptions o = small();
  o.dropout = 1.0;
  o.round_retries = 1;
  auto group = make_local_group();
  auto r = run_simulation(o, *group);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("round 1 failed") != std::string::npos);
}

TEST_CASE("dropouts and missed deadlines on the simulated clock are counted per round") {
  if (!have_fashion_mnist()) return;
  SimOptions o = small();
  o.rounds = 3;
  o.per_round = 10;
  o.dropout = 0.2;
  auto lat = parse_latency("lognormal:10,1");
  REQUIRE(lat.ok());
  o.latency = *lat;
  o.round_timeout_s = 8;  // below the mean latency: many miss it
  o.round_retries = 10;
  SimReport r = run(o);
  auto points = parse_metrics(r.metrics_lines);
  REQUIRE(points.size() == 3);
  double missed = 0, dropped_out = 0;
  for (const auto& p : points) {
    CHECK(p.clients + p.dropped == p.selected);
    CHECK(p.dropped == p.dropped_out + p.missed_deadline);
    missed += p.missed_deadline;
    dropped_out += p.dropped_out;
    CHECK(p.clients > 0);
  }
  CHECK(missed > 0);
  CHECK(dropped_out > 0);
  // A round that missed clients lasts exactly the deadline on the simulated clock.
  CHECK(points.back().sim_clock_s <= 3 * 8.0 + 1e-9);
  CHECK(points.back().sim_clock_s > 0);

  // No real time passes for the simulated latencies: a huge deadline changes nothing.
  o.round_timeout_s = 1e6;
  SimReport all = run(o);
  for (const auto& p : parse_metrics(all.metrics_lines)) CHECK(p.missed_deadline == 0);
  CHECK(all.wall_s < 60);
}

TEST_CASE("latency models parse and sample as documented") {
  CHECK_FALSE(parse_latency("lognormal:1").ok());
  CHECK_FALSE(parse_latency("gamma:1,2").ok());
  CHECK_FALSE(parse_latency("uniform:3,1").ok());
  auto c = parse_latency("constant:2.5");
  REQUIRE(c.ok());
  std::mt19937_64 rng(1);
  CHECK(c->sample(rng) == 2.5);
  auto ln = parse_latency("lognormal:4,0.5");
  REQUIRE(ln.ok());
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) sum += ln->sample(rng);
  CHECK(sum / n == doctest::Approx(4.0).epsilon(0.02));
  auto none = parse_latency("none");
  REQUIRE(none.ok());
  CHECK(none->sample(rng) == 0.0);
}

TEST_CASE("secure aggregation (SecAgg+) runs through the orchestrator, with dropouts") {
  if (!have_fashion_mnist()) return;
  SimOptions o = small();
  o.clients = 30;
  o.per_round = 12;
  o.secure_aggregation = true;
  o.dropout = 0.2;
  SimReport r = run(o);
  auto points = parse_metrics(r.metrics_lines);
  REQUIRE(points.size() == 3);
  double best = 0;
  for (const auto& p : points) {
    CHECK(p.clients + p.dropped == p.selected);
    // SecAgg+ may also leave out survivors whose graph neighbours dropped before the key
    // exchange; the orchestrator counts them as dropped too.
    CHECK(p.dropped >= p.dropped_out);
    CHECK(p.clients > 0);
    best = std::max(best, *p.accuracy);
  }
  CHECK(best > 0.45);
  // A strategy that needs each update cannot run under secure aggregation.
  o.strategy.strategy = "median";
  auto group = make_local_group();
  auto refused = run_simulation(o, *group);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("secure aggregation hides") != std::string::npos);
}

TEST_CASE("bad options are refused") {
  auto group = make_local_group();
  SimOptions o = small();
  o.per_round = 30;
  CHECK_FALSE(run_simulation(o, *group).ok());
  o = small();
  o.dropout = 1.5;
  CHECK_FALSE(run_simulation(o, *group).ok());
}

TEST_CASE("the MPI codec round-trips work orders and outcomes and refuses truncated bytes") {
  WorkOrder o;
  o.round = 7;
  o.config.model = "softmax:784,10";
  o.config.lr = 0.125f;
  o.global = {1.5f, -2.0f, 3.25f};
  o.clients = {2, 5, 11};
  auto back = decode_order(encode_order(o));
  REQUIRE(back.ok());
  CHECK_FALSE(back->stop);
  CHECK(back->round == 7);
  CHECK(back->config.model == "softmax:784,10");
  CHECK(back->config.lr == 0.125f);
  CHECK(back->global == o.global);
  CHECK(back->clients == o.clients);
  WorkOrder stop;
  stop.stop = true;
  auto s = decode_order(encode_order(stop));
  REQUIRE(s.ok());
  CHECK(s->stop);

  std::vector<TrainOutcome> outs(2);
  outs[0] = {3, true, "", 120, {{"train_loss", 0.5}}, {0.25f, 0.75f}};
  outs[1] = {9, false, "out of memory", 0, {}, {}};
  const std::string bytes = encode_outcomes(outs);
  auto got = decode_outcomes(bytes);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 2);
  CHECK((*got)[0].client == 3);
  CHECK((*got)[0].metrics.at("train_loss") == 0.5);
  CHECK((*got)[0].weights == outs[0].weights);
  CHECK_FALSE((*got)[1].ok);
  CHECK((*got)[1].error == "out of memory");
  for (std::size_t cut : {std::size_t(0), std::size_t(5), bytes.size() / 2, bytes.size() - 1})
    CHECK_FALSE(decode_outcomes(bytes.substr(0, cut)).ok());
  const std::string order = encode_order(o);
  CHECK_FALSE(decode_order(order.substr(0, order.size() - 3)).ok());
  // A count larger than the bytes that follow is refused before anything is allocated.
  std::string huge(8, '\xff');
  CHECK_FALSE(decode_outcomes(huge).ok());
}

TEST_CASE(
    "a client's fate depends on (seed, round, attempt, client) only, and adds up per attempt") {
  ClockOptions clock;
  clock.seed = 5;
  clock.dropout = 0.3;
  auto lat = parse_latency("exponential:4");
  REQUIRE(lat.ok());
  clock.latency = *lat;
  clock.round_timeout_s = 6;
  AttemptFigures fig;
  std::size_t trained = 0;
  double slowest = 0;
  bool missed = false;
  for (std::size_t c = 0; c < 200; ++c) {
    ClientFate f = draw_fate(clock, 3, 1, c);
    ClientFate again = draw_fate(clock, 3, 1, c);
    CHECK(f.outcome == again.outcome);
    CHECK(f.latency_s == again.latency_s);
    fig.count(f, clock);
    if (f.outcome == ClientFate::Outcome::train) {
      ++trained;
      slowest = std::max(slowest, f.latency_s);
      CHECK(f.reason(clock).empty());
    } else {
      missed = missed || f.outcome == ClientFate::Outcome::missed_deadline;
      CHECK_FALSE(f.reason(clock).empty());
    }
  }
  CHECK(fig.dropped_out + fig.missed_deadline + trained == 200);
  CHECK(fig.dropped_out > 30);
  CHECK(fig.dropped_out < 90);
  REQUIRE(missed);
  CHECK(fig.round_s == 6.0);  // someone missed the deadline: the round lasted the deadline
  CHECK(slowest <= 6.0);
  // Another attempt of the same round draws afresh.
  std::size_t same = 0;
  for (std::size_t c = 0; c < 200; ++c)
    same += draw_fate(clock, 3, 1, c).latency_s == draw_fate(clock, 3, 2, c).latency_s;
  CHECK(same < 5);
  auto m = fig.metrics();
  CHECK(m.at("dropped_out") == double(fig.dropped_out));
  CHECK(m.at("sim_round_s") == 6.0);
}
