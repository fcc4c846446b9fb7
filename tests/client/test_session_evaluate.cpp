// The client session's side of federated evaluation (client/session.hpp): Hello announces it,
// an evaluate task's model is reassembled and handed to the host, the result goes back as an
// EvaluateResult (private when the client or its trainer asks), failures as an Error.
#include <doctest/doctest.h>

#include <optional>

#include "tests/client/session_fixture.hpp"

using namespace federa;
using namespace federa::session_test;

namespace {

SessionOptions evaluating(bool private_metrics = false) {
  SessionOptions o = Fixture::options(120);
  o.num_test_examples = 30;
  o.evaluates = true;
  o.private_metrics = private_metrics;
  return o;
}

// An EvaluateTask and its chunks, as the orchestrator sends them.
std::vector<wire::Envelope> evaluate_envelopes(std::uint64_t round,
                                               const std::vector<float>& global) {
  auto fit = task_envelopes(round, global);
  wire::Envelope t;
  auto* e = t.mutable_evaluate_task();
  const auto& f = fit[0].fit_task();
  e->set_round(round);
  e->set_attempt(1);
  *e->mutable_config() = f.config();
  *e->mutable_layout() = f.layout();
  e->set_total_elements(f.total_elements());
  e->set_num_chunks(f.num_chunks());
  e->set_chunk_elements(f.chunk_elements());
  fit[0] = t;
  return fit;
}

TaskResult eval_result(const Task& task, std::uint64_t n, double loss,
                       std::optional<double> accuracy, bool keep_private = false) {
  EvaluateResult e;
  e.num_examples = n;
  e.loss = loss;
  e.accuracy = accuracy;
  e.metrics["f1"] = 0.5;
  e.keep_private = keep_private;
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  r.output = TaskOutput(std::move(e));
  return r;
}

}  // namespace

TEST_CASE("session: Hello says whether the client evaluates and on how many examples") {
  FakeLink link;
  FakeRunner runner;
  ClientSession s(evaluating(), link, runner);
  s.start();
  REQUIRE(link.sent.size() == 1);
  CHECK(link.sent[0].hello().evaluates());
  CHECK(link.sent[0].hello().num_test_examples() == 30);
  Fixture plain;
  plain.session.start();
  CHECK_FALSE(plain.link.sent[0].hello().evaluates());
}

TEST_CASE("session: an evaluate task is run by the host and answered with its result") {
  FakeLink link;
  FakeRunner runner;
  ClientSession s(evaluating(), link, runner);
  const auto global = model_values(0.2f);
  for (const auto& e : evaluate_envelopes(5, global)) s.on_message(e);
  REQUIRE(runner.tasks.size() == 1);
  const Task& t = runner.tasks[0];
  CHECK(t.kind == Task::Kind::evaluate);
  CHECK(t.round == 5);
  CHECK(t.model->data == global);
  s.on_task_done(eval_result(t, 30, 0.75, 0.625));
  REQUIRE(link.sent.size() == 1);
  const auto& r = link.sent[0].evaluate_result();
  CHECK(r.round() == 5);
  CHECK(r.num_examples() == 30);
  CHECK(r.loss() == 0.75);
  CHECK(r.accuracy() == 0.625);
  CHECK(r.metrics().at("f1") == 0.5);
  CHECK_FALSE(r.private_());
  CHECK(s.evaluations_completed() == 1);
  CHECK(s.fits_completed() == 0);
  CHECK_FALSE(s.upload_pending());
}

TEST_CASE("session: a regression model's evaluation goes out without an accuracy") {
  FakeLink link;
  FakeRunner runner;
  ClientSession s(evaluating(), link, runner);
  for (const auto& e : evaluate_envelopes(2, model_values(0.1f))) s.on_message(e);
  REQUIRE(runner.tasks.size() == 1);
  s.on_task_done(eval_result(runner.tasks[0], 30, 12.5, std::nullopt));
  REQUIRE(link.sent.size() == 1);
  const auto& r = link.sent[0].evaluate_result();
  CHECK(r.loss() == 12.5);
  CHECK_FALSE(r.has_accuracy());  // was 0: the federation's mean then said fed_accuracy 0
}

TEST_CASE("session: privacy is asked for by the client's option or by its trainer for one result") {
  SUBCASE("--private-metrics") {
    FakeLink link;
    FakeRunner runner;
    ClientSession s(evaluating(true), link, runner);
    for (const auto& e : evaluate_envelopes(1, model_values(0.1f))) s.on_message(e);
    s.on_task_done(eval_result(runner.tasks.at(0), 30, 0.5, 0.5));
    CHECK(link.sent.at(0).evaluate_result().private_());
  }
  SUBCASE("the trainer's result") {
    FakeLink link;
    FakeRunner runner;
    ClientSession s(evaluating(false), link, runner);
    for (const auto& e : evaluate_envelopes(1, model_values(0.1f))) s.on_message(e);
    s.on_task_done(eval_result(runner.tasks.at(0), 30, 0.5, 0.5, true));
    CHECK(link.sent.at(0).evaluate_result().private_());
  }
}

TEST_CASE(
    "session: a failed evaluation is reported; a client that does not evaluate refuses the task") {
  SUBCASE("failure") {
    FakeLink link;
    FakeRunner runner;
    ClientSession s(evaluating(), link, runner);
    for (const auto& e : evaluate_envelopes(2, model_values(0.1f))) s.on_message(e);
    s.on_task_done(
        failed_task(runner.tasks.at(0), Error{ErrorCode::internal, "no test data readable"}));
    REQUIRE(link.sent.size() == 1);
    CHECK(link.sent[0].error().message() == "evaluation failed: no test data readable");
  }
  SUBCASE("not an evaluating client") {
    Fixture f;
    f.deliver(evaluate_envelopes(2, model_values(0.1f)));
    CHECK(f.runner.tasks.empty());
    CHECK(has_error_containing(f.link.sent, "does not evaluate"));
  }
}

TEST_CASE("session: an evaluate task that arrives while the client trains replaces the stale fit") {
  FakeLink link;
  FakeRunner runner;
  ClientSession s(evaluating(), link, runner);
  for (const auto& e : task_envelopes(3, model_values(0.1f))) s.on_message(e);
  REQUIRE(runner.tasks.size() == 1);
  for (const auto& e : evaluate_envelopes(3, model_values(0.3f))) s.on_message(e);
  CHECK(runner.tasks.size() == 1);  // the host is busy: the evaluation waits
  s.on_task_done(fit_result(runner.tasks[0], model_values(0.2f)));
  CHECK(link.sent.empty());  // the round moved on: the late update stays here
  REQUIRE(runner.tasks.size() == 2);
  CHECK(runner.tasks[1].kind == Task::Kind::evaluate);
  s.on_task_done(eval_result(runner.tasks[1], 30, 0.5, 0.5));
  REQUIRE(link.sent.size() == 1);
  CHECK(link.sent[0].has_evaluate_result());
}
