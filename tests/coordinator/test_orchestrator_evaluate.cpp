// Federated evaluation (issue 10, item 5) over fake links: weighted means against a hand
// computation, the per-client privacy flag, --evaluate-only, --keep-best, answers that fail or
// never come, --evaluate-every.
#include <doctest/doctest.h>

#include <fstream>

#include "common/safetensors.hpp"
#include "tests/coordinator/orchestrator_harness.hpp"

using namespace federa;
using namespace federa::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const ModelLayout model_layout{{{"w", {4}}, {"b", {2}}}};

OrchestratorOptions options(std::uint64_t rounds, std::size_t min_clients) {
  OrchestratorOptions o;
  o.rounds = rounds;
  o.min_clients = min_clients;
  o.round_timeout = 5s;
  o.round_retries = 1;
  o.chunk_elements = 3;
  return o;
}

Model model(float v) {
  Model m(model_layout);
  std::fill(m.data.begin(), m.data.end(), v);
  return m;
}

std::vector<float> filled(float v) { return std::vector<float>(model_layout.size(), v); }

// A client that announces held-out data and takes evaluate tasks.
Status join_evaluating(FakeClient& c, std::uint64_t test_examples = 10) {
  wire::Envelope h;
  h.mutable_hello()->set_protocol_version(kProtocolVersion);
  h.mutable_hello()->set_software("fake-client");
  h.mutable_hello()->set_num_train_examples(100);
  h.mutable_hello()->set_num_test_examples(test_examples);
  h.mutable_hello()->set_evaluates(true);
  return c.join_with(h);
}

struct Answer {
  Answer(std::uint64_t n, double loss, double accuracy, bool keep_private = false,
         std::map<std::string, double> metrics = {})
      : n(n),
        loss(loss),
        accuracy(accuracy),
        keep_private(keep_private),
        metrics(std::move(metrics)) {}
  std::uint64_t n = 0;
  double loss = 0, accuracy = 0;
  bool keep_private = false;
  std::map<std::string, double> metrics;
};

// Waits for the next EvaluateTask and its model (returned), then answers with `a`.
std::vector<float> evaluate(FakeClient& c, const Answer& a) {
  auto t = c.link().wait_for(wire::Envelope::kEvaluateTask);
  REQUIRE(t);
  const auto& task = t->evaluate_task();
  std::vector<float> global(task.total_elements());
  ChunkAssembler in;
  REQUIRE(in.begin(task.round(), task.total_elements(), task.num_chunks(), task.chunk_elements(),
                   global));
  while (!in.complete()) {
    auto chunk = c.link().wait_for(wire::Envelope::kChunk);
    REQUIRE(chunk);
    REQUIRE(in.add(chunk->chunk()));
  }
  wire::Envelope e;
  auto* r = e.mutable_evaluate_result();
  r->set_round(task.round());
  r->set_num_examples(a.n);
  r->set_loss(a.loss);
  r->set_accuracy(a.accuracy);
  r->set_private_(a.keep_private);
  for (const auto& [k, v] : a.metrics) (*r->mutable_metrics())[k] = v;
  REQUIRE(c.send(e));
  return global;
}

void train(FakeClient& c, float value) {
  auto t = c.wait_for_task();
  REQUIRE(t);
  REQUIRE(c.upload(t->task.round(), filled(value), 10, model_layout.hash(), 3));
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE(
    "evaluation: weighted means, min and max as by hand; only clients that evaluate are asked") {
  OrchestratorHarness h(options(1, 2), model(0.0f));
  FakeClient a(*h.orch, "a"), b(*h.orch, "b"), c(*h.orch, "c"), d(*h.orch, "d"),
      old(*h.orch, "old");
  for (FakeClient* x : {&a, &b, &c, &d}) REQUIRE(join_evaluating(*x));
  REQUIRE(old.join(100));  // a client from before evaluate tasks: never sent one
  h.start();
  for (FakeClient* x : {&a, &b, &c, &d, &old}) train(*x, 2.0f);
  const auto evaluated = evaluate(a, {10, 1.0, 0.5, false, {{"f1", 0.4}}});
  evaluate(b, {30, 2.0, 0.8, false, {{"f1", 0.6}}});
  evaluate(c, {60, 0.5, 0.9, false, {{"f1", 0.9}}});
  evaluate(d, {0, 0.0, 0.0});  // no held-out data: counts in no mean
  REQUIRE(h.finish());
  CHECK(evaluated == h.orch->global().data);  // the round's new model is what was evaluated
  CHECK(old.link().received(wire::Envelope::kEvaluateTask) == 0);

  auto started = h.events.started();
  REQUIRE(started.size() == 2);
  CHECK(started[0].kind == TaskKind::fit);
  CHECK(started[1].kind == TaskKind::evaluate);
  CHECK(started[1].selected == std::vector<std::string>{"a", "b", "c", "d"});

  const RoundReport r = h.events.reports().at(0);
  REQUIRE(r.evaluation);
  const FederatedEvaluation& e = *r.evaluation;
  // By hand: loss (10*1.0 + 30*2.0 + 60*0.5) / 100 = 1.0; accuracy (5 + 24 + 54) / 100 = 0.83;
  // f1 (4 + 18 + 54) / 100 = 0.76.
  CHECK(e.selected == 4);
  CHECK(e.clients == 3);
  CHECK(*e.loss == doctest::Approx(1.0));
  CHECK(*e.accuracy == doctest::Approx(0.83));
  CHECK(e.metrics.at("f1") == doctest::Approx(0.76));
  CHECK(*e.loss_min == 0.5);
  CHECK(*e.loss_max == 2.0);
  CHECK(*e.accuracy_min == 0.5);
  CHECK(*e.accuracy_max == 0.9);
  REQUIRE(e.per_client.size() == 4);
  CHECK(e.per_client[3].client == "d");
  CHECK(e.per_client[3].num_examples == 0);
  CHECK(*metrics_line_value(r.metrics_line, "fed_loss") == doctest::Approx(1.0));
  CHECK(*metrics_line_value(r.metrics_line, "fed_accuracy") == doctest::Approx(0.83));
  CHECK(*metrics_line_value(r.metrics_line, "fed_accuracy_min") == 0.5);
  CHECK(*metrics_line_value(r.metrics_line, "fed_loss_max") == 2.0);
  CHECK(*metrics_line_value(r.metrics_line, "fed_clients") == 3);
  CHECK(*metrics_line_value(r.metrics_line, "fed_f1") == doctest::Approx(0.76));
}

TEST_CASE("evaluation: a private client's values count in the means and nowhere else") {
  const fs::path dir = fresh_test_dir("federa_eval_private_");
  fs::create_directories(dir);
  OrchestratorHarness h(options(1, 2), model(0.0f));
  ClientMetricsWriter per_client;
  REQUIRE(per_client.open(dir / "clients.jsonl", 0));
  h.orch->add_observer(&per_client);
  FakeClient a(*h.orch, "a"), b(*h.orch, "b");
  REQUIRE(join_evaluating(a));
  REQUIRE(join_evaluating(b));
  h.start();
  train(a, 1.0f);
  train(b, 1.0f);
  evaluate(a, {50, 3.25, 0.125, true, {{"f1", 0.375}}});
  evaluate(b, {50, 1.0, 0.625, false});
  REQUIRE(h.finish());
  const RoundReport r = h.events.reports().at(0);
  REQUIRE(r.evaluation);
  CHECK(*r.evaluation->loss == doctest::Approx(2.125));  // (50*3.25 + 50*1.0) / 100
  CHECK(*r.evaluation->accuracy == doctest::Approx(0.375));
  CHECK(r.evaluation->metrics.at("f1") == doctest::Approx(0.375));  // a's alone, in a mean
  // min and max are per-client values: the private client's are not among them.
  CHECK(*r.evaluation->loss_min == 1.0);
  CHECK(*r.evaluation->loss_max == 1.0);
  const ClientEvaluation& pa = r.evaluation->per_client.at(0);
  CHECK(pa.client == "a");
  CHECK(pa.keep_private);
  CHECK_FALSE(pa.loss);
  CHECK_FALSE(pa.accuracy);
  CHECK(pa.num_examples == 0);
  CHECK(pa.metrics.empty());
  for (const auto& c : r.clients) CHECK(c.metrics.count("loss") == 0);
  const auto lines = read_lines(dir / "clients.jsonl");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("\"client\":\"b\"") != std::string::npos);
  CHECK(
      lines[0] ==
      R"({"round":1,"client":"b","outcome":"accepted","num_examples":50,"loss":1,"accuracy":0.625})");
  for (const auto& line : {r.metrics_line, lines[0]}) {
    CHECK(line.find("3.25") == std::string::npos);
    CHECK(line.find("0.125") == std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("evaluation: a regression model's answers have a loss and no accuracy") {
  // Before, a client without an accuracy was left out of the means altogether, and the built-in
  // trainer sent 0 for a regression model, so the metrics line said fed_accuracy 0.
  std::vector<ClientEvaluation> answers{
      {"a", UpdateOutcome::accepted, "", false, 30, 2.0, std::nullopt, {{"r2", 0.4}}},
      {"b", UpdateOutcome::accepted, "", false, 10, 6.0, std::nullopt, {{"r2", 0.8}}}};
  FederatedEvaluation f = combine_evaluations(4, 2, answers, 2);
  CHECK(f.clients == 2);
  REQUIRE(f.loss);
  CHECK(*f.loss == doctest::Approx(3.0));
  CHECK_FALSE(f.accuracy);
  CHECK_FALSE(f.accuracy_min);
  CHECK(f.metrics.at("r2") == doctest::Approx(0.5));
  RoundReport report;
  report.round = 4;
  report.evaluation = f;
  const std::string line = format_metrics_line(report, {});
  CHECK(line.find("\"fed_loss\":3") != std::string::npos);
  CHECK(line.find("\"fed_r2\":0.5") != std::string::npos);
  CHECK(line.find("fed_accuracy") == std::string::npos);
  CHECK(line.find("\"accuracy\":null") != std::string::npos);  // no test set of its own
  // The centralised evaluation of a regression model: R^2 and errors, no accuracy.
  report.loss = 2.5;
  report.r2 = 0.41;
  report.rmse = 1.6;
  report.mae = 1.2;
  const std::string centralised = format_metrics_line(report, {});
  CHECK(centralised.find("\"r2\":0.41") != std::string::npos);
  CHECK(centralised.find("accuracy") == std::string::npos);
  // Mixed answers: the accuracy is the mean over those that have one, the loss over all.
  answers[1].accuracy = 0.9;
  f = combine_evaluations(4, 2, answers, 2);
  CHECK(*f.accuracy == doctest::Approx(0.9));
  CHECK(*f.loss == doctest::Approx(3.0));
}

TEST_CASE("evaluation: one private answer alone gives no mean (it would be its value)") {
  std::vector<ClientEvaluation> answers{
      {"a", UpdateOutcome::accepted, "", true, 20, 0.7, 0.6, {}},
      {"b", UpdateOutcome::accepted, "", false, 0, std::nullopt, std::nullopt, {}}};
  FederatedEvaluation f = combine_evaluations(3, 2, answers, 1);
  CHECK(f.clients == 1);
  CHECK_FALSE(f.loss);
  CHECK_FALSE(f.accuracy);
  answers[1] = {"b", UpdateOutcome::accepted, "", false, 20, 0.3, 0.8, {}};
  f = combine_evaluations(3, 2, answers, 1);
  CHECK(*f.loss == doctest::Approx(0.5));
  CHECK(*f.accuracy == doctest::Approx(0.7));
  CHECK(combine_evaluations(3, 2, answers, 3).clients == 2);
  CHECK_FALSE(combine_evaluations(3, 2, answers, 3).loss);  // below --min-evaluate-clients
}

TEST_CASE(
    "evaluation: answers that fail, lie or never come leave the round to commit without them") {
  OrchestratorOptions o = options(1, 1);
  o.evaluation.timeout = 500ms;
  OrchestratorHarness h(o, model(0.0f));
  FakeClient a(*h.orch, "a"), b(*h.orch, "b"), c(*h.orch, "c"), d(*h.orch, "d");
  for (FakeClient* x : {&a, &b, &c, &d}) REQUIRE(join_evaluating(*x));
  h.start();
  for (FakeClient* x : {&a, &b, &c, &d}) train(*x, 1.0f);
  evaluate(a, {10, 0.25, 0.75});
  REQUIRE(b.link().wait_for(wire::Envelope::kEvaluateTask));
  REQUIRE(b.send(make_error_envelope(wire::Error::UNKNOWN, "evaluation failed: disk full")));
  evaluate(c, {10, 0.25, 1.5});                               // not a fraction
  REQUIRE(d.link().wait_for(wire::Envelope::kEvaluateTask));  // and never answers
  REQUIRE(h.finish());
  const RoundReport r = h.events.reports().at(0);
  REQUIRE(r.evaluation);
  CHECK(r.evaluation->clients == 1);
  CHECK(*r.evaluation->accuracy == doctest::Approx(0.75));
  const auto& pc = r.evaluation->per_client;
  CHECK(pc[1].outcome == UpdateOutcome::dropped);
  CHECK(pc[1].reason == "client reported: evaluation failed: disk full");
  CHECK(pc[2].outcome == UpdateOutcome::rejected);
  CHECK(pc[2].reason == "accuracy is not a fraction in [0, 1]");
  CHECK(pc[3].outcome == UpdateOutcome::dropped);
  CHECK(pc[3].reason == "missed the 0.5 s evaluation deadline");
  CHECK_FALSE(c.link().close_code());  // a bad answer is left out; the session is not closed for it
}

TEST_CASE("evaluation: --evaluate-every 2 evaluates after rounds 2 and 3 (the last), not 1") {
  OrchestratorOptions o = options(3, 1);
  o.evaluation.every = 2;
  OrchestratorHarness h(o, model(0.0f));
  FakeClient a(*h.orch, "a");
  REQUIRE(join_evaluating(a));
  h.start();
  train(a, 1.0f);
  train(a, 2.0f);
  evaluate(a, {10, 0.5, 0.5});
  train(a, 3.0f);
  evaluate(a, {10, 0.25, 0.75});
  REQUIRE(h.finish());
  const auto reports = h.events.reports();
  REQUIRE(reports.size() == 3);
  CHECK_FALSE(reports[0].evaluation);
  CHECK(reports[0].metrics_line.find("fed_") == std::string::npos);
  CHECK(*reports[1].evaluation->accuracy == 0.5);
  CHECK(*reports[2].evaluation->accuracy == 0.75);
  CHECK(a.link().received(wire::Envelope::kEvaluateTask) == 2);
}

TEST_CASE(
    "evaluation: --evaluate-only evaluates the given model across the federation, trains nothing") {
  OrchestratorOptions o = options(0, 1);
  o.evaluation.only = true;
  o.evaluation.min_clients = 2;
  SUBCASE("enough answers: one report, then goodbye") {
    OrchestratorHarness h(o, model(0.5f));
    FakeClient a(*h.orch, "a"), b(*h.orch, "b"), old(*h.orch, "old");
    REQUIRE(join_evaluating(a));
    REQUIRE(old.join(10));
    h.start();
    REQUIRE(join_evaluating(b));  // it waits for two clients that evaluate
    CHECK(evaluate(a, {30, 0.5, 0.9}) == filled(0.5f));
    evaluate(b, {10, 1.0, 0.5});
    REQUIRE(h.finish());
    const auto reports = h.events.reports();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].round == 0);
    CHECK(*reports[0].evaluation->loss == doctest::Approx(0.625));
    CHECK(*reports[0].evaluation->accuracy == doctest::Approx(0.8));
    CHECK(a.link().received(wire::Envelope::kFitTask) == 0);
    CHECK(old.link().received(wire::Envelope::kEvaluateTask) == 0);
    CHECK(a.link().wait_for(wire::Envelope::kBye));
  }
  SUBCASE("too few answers with data: retried, then the job fails with the reason") {
    OrchestratorHarness h(o, model(0.5f));
    FakeClient a(*h.orch, "a"), b(*h.orch, "b");
    REQUIRE(join_evaluating(a));
    REQUIRE(join_evaluating(b));
    h.start();
    for (int attempt = 0; attempt < 2; ++attempt) {
      evaluate(a, {30, 0.5, 0.9});
      evaluate(b, {0, 0, 0});
    }
    Status s = h.finish();
    REQUIRE_FALSE(s);
    CHECK(s.message().find("the evaluation failed 2 times: 1 of 2 clients answered with held-out "
                           "data, 2 needed") != std::string::npos);
    CHECK(h.events.failures().size() == 2);
    CHECK(h.events.reports().empty());
  }
}

TEST_CASE(
    "evaluation: --keep-best keeps the best round's model beside the latest, across a restart") {
  const fs::path dir = fresh_test_dir("federa_keep_best_");
  OrchestratorOptions o = options(3, 1);
  o.evaluation.keep_best = "fed_accuracy";
  {
    OrchestratorHarness h(o, model(0.0f), StateStore(dir));
    FakeClient a(*h.orch, "a");
    REQUIRE(join_evaluating(a));
    h.start();
    const double accuracy[] = {0.5, 0.875, 0.75};
    for (int r = 0; r < 3; ++r) {
      train(a, float(r + 1));  // round r+1's model: every value r+1
      evaluate(a, {10, 1.0 - accuracy[r], accuracy[r]});
    }
    REQUIRE(h.finish());
  }
  auto best = load_safetensors(dir / "best.safetensors");
  REQUIRE(best);
  CHECK(best->model.data == filled(2.0f));
  CHECK(best->metadata.at("federa.round") == "2");
  CHECK(best->metadata.at("federa.best_metric") == "fed_accuracy");
  CHECK(best->metadata.at("federa.best_value") == "0.875");
  auto latest = load_safetensors(dir / "global.safetensors");
  REQUIRE(latest);
  CHECK(latest->model.data == filled(3.0f));

  // A coordinator that died between a commit and the copy: on restart the committed round is
  // weighed against what best.safetensors holds (here nothing), and kept if better.
  fs::remove(dir / "best.safetensors");
  {
    OrchestratorHarness h(o, model(0.0f), StateStore(dir));
    auto committed = StateStore(dir).load();
    REQUIRE(committed);
    REQUIRE(*committed);
    REQUIRE(h.orch->restore(std::move(**committed)));
    h.start();
    REQUIRE(h.finish());  // all three rounds were committed already
  }
  best = load_safetensors(dir / "best.safetensors");
  REQUIRE(best);
  CHECK(best->model.data == filled(3.0f));
  CHECK(best->metadata.at("federa.round") == "3");
  CHECK(best->metadata.at("federa.best_value") == "0.75");
  fs::remove_all(dir);
}

TEST_CASE("evaluation: --keep-best's rule") {
  auto acc = parse_keep_best("fed_accuracy");
  REQUIRE(acc);
  CHECK_FALSE(acc->lower_is_better);
  CHECK(acc->better(0.9, std::nullopt));
  CHECK(acc->better(0.9, 0.8));
  CHECK_FALSE(acc->better(0.8, 0.8));
  auto loss = parse_keep_best("fed_loss");
  REQUIRE(loss);
  CHECK(loss->lower_is_better);
  CHECK(loss->better(0.1, 0.2));
  auto explicit_max = parse_keep_best("max:train_loss");
  REQUIRE(explicit_max);
  CHECK(explicit_max->key == "train_loss");
  CHECK_FALSE(explicit_max->lower_is_better);
  CHECK(parse_keep_best("min:fed_f1")->lower_is_better);
  CHECK_FALSE(parse_keep_best("fed accuracy"));
  CHECK_FALSE(parse_keep_best("min:"));
}
