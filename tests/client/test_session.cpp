// The client session (client/session.hpp) over a fake ServerLink and TaskRunner: the whole
// protocol as federa-client and federa-sim both run it, without TLS. Secure rounds are in
// test_session_secure.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tests/client/session_fixture.hpp"

using namespace federa;
using namespace federa::session_test;

TEST_CASE("session: Hello announces the protocol version, software and training examples") {
  Fixture f(321);
  f.session.start();
  REQUIRE(f.link.sent.size() == 1);
  const auto& h = f.link.sent[0].hello();
  CHECK(h.protocol_version() == kProtocolVersion);
  CHECK(h.software() == "test-client 1");
  CHECK(h.num_train_examples() == 321);
  wire::Envelope w;
  w.mutable_welcome()->set_client_id("site-a");
  w.mutable_welcome()->set_federation("fed");
  f.session.on_message(w);
  CHECK(f.link.sent.size() == 1);  // a welcome needs no answer
  CHECK_FALSE(f.link.closed);
}

TEST_CASE("session: a task's model is reassembled from its chunks before the host runs it") {
  Fixture f;
  const auto global = model_values(0.1f);
  auto envs = task_envelopes(4, global);
  envs[0].mutable_fit_task()->set_attempt(2);
  REQUIRE(envs.size() == 4);  // the task and three chunks
  for (std::size_t i = 0; i + 1 < envs.size(); ++i) f.session.on_message(envs[i]);
  CHECK(f.runner.tasks.empty());  // the last chunk is missing
  f.session.on_message(envs.back());
  REQUIRE(f.runner.tasks.size() == 1);
  const Task& t = f.runner.tasks[0];
  CHECK(t.kind == Task::Kind::fit);
  CHECK(t.round == 4);
  CHECK(t.attempt == 2);
  CHECK(t.config.lr == doctest::Approx(0.25));
  CHECK(t.config.seed == 1004);
  REQUIRE(t.model);
  CHECK(t.model->layout == layout());
  CHECK(t.model->data == global);
  CHECK(f.session.task_running());
  CHECK(f.link.sent.empty());
}

TEST_CASE("session: a bad task or chunk is answered with an error and starts nothing") {
  const auto global = model_values(0.1f);
  SUBCASE("a layout whose hash does not match") {
    Fixture f;
    auto envs = task_envelopes(1, global);
    envs[0].mutable_fit_task()->mutable_layout()->set_hash(12345);
    f.deliver(envs);
    CHECK(f.runner.tasks.empty());
    REQUIRE_FALSE(f.link.sent.empty());
    CHECK(f.link.sent[0].error().code() == wire::Error::BAD_MESSAGE);
    CHECK(f.link.sent[0].error().message().find("bad layout") != std::string::npos);
    // The chunks that follow belong to no task.
    CHECK(has_error_containing(f.link.sent, "chunk without a task"));
  }
  SUBCASE("a size that does not match the layout") {
    Fixture f;
    auto envs = task_envelopes(1, global);
    envs[0].mutable_fit_task()->set_total_elements(global.size() + 1);
    f.deliver(envs);
    CHECK(f.runner.tasks.empty());
    CHECK(has_error_containing(f.link.sent, "does not match its layout"));
  }
  SUBCASE("a chunk out of order drops the task") {
    Fixture f;
    auto envs = task_envelopes(1, global);
    std::swap(envs[1], envs[2]);
    f.deliver(envs);
    CHECK(f.runner.tasks.empty());
    CHECK(has_error_containing(f.link.sent, "global model:"));
    CHECK(has_error_containing(f.link.sent, "chunk without a task"));
  }
  SUBCASE("a non-finite value in the global model") {
    Fixture f;
    auto bad = global;
    bad[3] = std::nanf("");
    f.deliver(task_envelopes(1, bad));
    CHECK(f.runner.tasks.empty());
    CHECK(has_error_containing(f.link.sent, "non-finite"));
  }
  SUBCASE("a secure-aggregation mode this client does not know") {
    Fixture f;
    f.deliver(task_envelopes(1, global, "homomorphic"));
    CHECK(f.runner.tasks.empty());
    CHECK(has_error_containing(f.link.sent, "unknown secure aggregation mode 'homomorphic'"));
  }
  SUBCASE("a message only a client sends") {
    Fixture f;
    wire::Envelope hello;
    hello.mutable_hello()->set_protocol_version(kProtocolVersion);
    f.session.on_message(hello);
    REQUIRE(f.link.sent.size() == 1);
    CHECK(f.link.sent[0].error().code() == wire::Error::BAD_MESSAGE);
    CHECK_FALSE(f.link.closed);
  }
}

TEST_CASE("session: the update is announced, then sent in chunks once the slot is granted") {
  Fixture f;
  const auto global = model_values(0.1f);
  f.deliver(task_envelopes(2, global));
  REQUIRE(f.runner.tasks.size() == 1);
  const auto trained = model_values(0.3f);
  f.session.on_task_done(fit_result(f.runner.tasks[0], trained, 77));
  CHECK_FALSE(f.session.task_running());
  CHECK(f.session.fits_completed() == 1);
  auto sent = f.link.take();
  REQUIRE(sent.size() == 1);
  const auto& h = sent[0].update_header();
  CHECK(h.round() == 2);
  CHECK(h.num_examples() == 77);
  CHECK(h.layout_hash() == layout().hash());
  CHECK(h.total_elements() == trained.size());
  CHECK(h.num_chunks() == chunk_count(trained.size(), kChunk));
  CHECK(h.metrics().at("train_loss") == 0.5);
  CHECK(f.session.upload_pending());

  // A grant for another round is a protocol error; the update still waits for its own.
  f.session.on_message(upload_ready(1));
  sent = f.link.take();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].error().message().find("upload_ready for no pending update") != std::string::npos);
  CHECK(f.session.upload_pending());

  f.session.on_message(upload_ready(2));
  sent = f.link.take();
  auto expected = make_chunks(2, trained, kChunk);
  REQUIRE(sent.size() == expected.size());
  for (std::size_t i = 0; i < sent.size(); ++i)
    CHECK(sent[i].SerializeAsString() == expected[i].SerializeAsString());
  CHECK_FALSE(f.session.upload_pending());
  // A second grant finds nothing to send.
  f.session.on_message(upload_ready(2));
  CHECK(has_error_containing(f.link.take(), "no pending update"));
}

TEST_CASE("session: a failed training is reported, and nothing else is sent") {
  Fixture f;
  f.deliver(task_envelopes(3, model_values(0.1f)));
  REQUIRE(f.runner.tasks.size() == 1);
  f.session.on_task_done(
      failed_task(f.runner.tasks[0], Error{ErrorCode::internal, "out of memory"}));
  REQUIRE(f.link.sent.size() == 1);
  CHECK(f.link.sent[0].error().message() == "training failed: out of memory");
  // A trainer that failed made no usable update: the coordinator counts it as rejected.
  CHECK(f.link.sent[0].error().code() == wire::Error::BAD_UPDATE);
  CHECK(f.session.fits_completed() == 0);
  CHECK_FALSE(f.session.upload_pending());
}

TEST_CASE("session: a training that is only not possible now is reported as a dropout") {
  for (ErrorCode code :
       {ErrorCode::unavailable, ErrorCode::cancelled, ErrorCode::deadline_exceeded}) {
    Fixture f;
    f.deliver(task_envelopes(3, model_values(0.1f)));
    REQUIRE(f.runner.tasks.size() == 1);
    f.session.on_task_done(failed_task(f.runner.tasks[0], Error{code, "try later"}));
    REQUIRE(f.link.sent.size() == 1);
    CHECK(f.link.sent[0].error().code() == wire::Error::UNKNOWN);
  }
}

TEST_CASE("session: a trained model of the wrong size is refused here, not uploaded") {
  Fixture f;
  f.deliver(task_envelopes(3, model_values(0.1f)));
  f.session.on_task_done(fit_result(f.runner.tasks[0], std::vector<float>(4, 1.0f)));
  CHECK(f.link.count(wire::Envelope::kUpdateHeader) == 0);
  CHECK(has_error_containing(f.link.sent, "training produced 4 values"));
}

TEST_CASE("session: a newer task arriving while training replaces the stale result") {
  Fixture f;
  f.deliver(task_envelopes(5, model_values(0.1f)));
  REQUIRE(f.runner.tasks.size() == 1);
  const Task first = f.runner.tasks[0];
  f.deliver(task_envelopes(6, model_values(0.2f)));
  CHECK(f.runner.tasks.size() == 1);  // one task at a time: round 6 waits for the host
  f.session.on_task_done(fit_result(first, model_values(0.5f)));
  CHECK(f.link.sent.empty());  // round 5's update is stale: dropped
  REQUIRE(f.runner.tasks.size() == 2);
  const Task second = f.runner.tasks[1];
  CHECK(second.round == 6);
  CHECK(second.model->data == model_values(0.2f));
  f.session.on_task_done(fit_result(second, model_values(0.6f)));
  REQUIRE(f.link.sent.size() == 1);
  CHECK(f.link.sent[0].update_header().round() == 6);
  CHECK(f.session.fits_completed() == 1);
}

TEST_CASE("session: a result for no running task is ignored") {
  Fixture f;
  f.deliver(task_envelopes(5, model_values(0.1f)));
  Task other = f.runner.tasks[0];
  other.round = 4;
  f.session.on_task_done(fit_result(other, model_values(0.5f)));
  CHECK(f.link.sent.empty());
  CHECK(f.session.task_running());
  // ...and the real one still goes through.
  f.session.on_task_done(fit_result(f.runner.tasks[0], model_values(0.5f)));
  CHECK(f.link.count(wire::Envelope::kUpdateHeader) == 1);
}

TEST_CASE("session: the coordinator's errors") {
  SUBCASE("not a member: the session ends refused, and stays ended") {
    Fixture f;
    f.session.on_message(coordinator_error(wire::Error::NOT_A_MEMBER, "'x' is not a member"));
    REQUIRE(f.link.closed);
    CHECK(f.link.closed->kind == SessionEnd::Kind::refused);
    CHECK(f.link.closed->reason.find("'x' is not a member") != std::string::npos);
    CHECK(f.session.ended());
    f.deliver(task_envelopes(1, model_values(0.1f)));
    CHECK(f.runner.tasks.empty());
    CHECK(f.link.sent.empty());
  }
  SUBCASE("shutting down: the session ends to be retried (sanitizer finding 4: it gave up)") {
    Fixture f;
    f.session.on_message(
        coordinator_error(wire::Error::SHUTTING_DOWN, "the coordinator is shutting down"));
    REQUIRE(f.link.closed);
    CHECK(f.link.closed->kind == SessionEnd::Kind::retry);
    CHECK(f.link.closed->reason.find("shutting down") != std::string::npos);
  }
  SUBCASE("data that does not fit the model: fatal, with the coordinator's reason") {
    Fixture f;
    f.session.on_message(
        coordinator_error(wire::Error::DATA_MISMATCH, "its data has 100 input features"));
    REQUIRE(f.link.closed);
    CHECK(f.link.closed->kind == SessionEnd::Kind::fatal);
    CHECK(f.link.closed->reason.find("100 input features") != std::string::npos);
  }
  SUBCASE("another protocol version: fatal") {
    Fixture f;
    f.session.on_message(coordinator_error(wire::Error::PROTOCOL_VERSION, "speaks 2"));
    REQUIRE(f.link.closed);
    CHECK(f.link.closed->kind == SessionEnd::Kind::fatal);
    CHECK(f.link.closed->reason.find("upgrade federa-client") != std::string::npos);
  }
  SUBCASE("a refused update: no slot will come for it") {
    Fixture f;
    f.deliver(task_envelopes(1, model_values(0.1f)));
    f.session.on_task_done(fit_result(f.runner.tasks[0], model_values(0.2f)));
    REQUIRE(f.session.upload_pending());
    f.session.on_message(coordinator_error(wire::Error::WRONG_ROUND, "round 1 is not open"));
    CHECK_FALSE(f.session.upload_pending());
    CHECK_FALSE(f.link.closed);
  }
  SUBCASE("anything else is logged; the session goes on") {
    Fixture f;
    f.session.on_message(coordinator_error(wire::Error::UNKNOWN, "replaced by a newer connection"));
    CHECK_FALSE(f.link.closed);
    CHECK(f.link.sent.empty());
    f.deliver(task_envelopes(1, model_values(0.1f)));
    CHECK(f.runner.tasks.size() == 1);
  }
}

TEST_CASE("session: Bye ends the session, complete or not") {
  Fixture a;
  a.session.on_message(bye(true));
  REQUIRE(a.link.closed);
  CHECK(a.link.closed->kind == SessionEnd::Kind::complete);
  CHECK(a.link.closed->reason == "done");
  Fixture b;
  b.session.on_message(bye(false));
  REQUIRE(b.link.closed);
  CHECK(b.link.closed->kind == SessionEnd::Kind::retry);
  CHECK(b.link.closed->reason == "coordinator said goodbye: done");
  // A result that comes back after the end is dropped.
  Fixture c;
  c.deliver(task_envelopes(1, model_values(0.1f)));
  c.session.on_message(bye(true));
  c.session.on_task_done(fit_result(c.runner.tasks[0], model_values(0.2f)));
  CHECK(c.link.sent.empty());
}

TEST_CASE(
    "session: a BF16 model with integer tensors arrives whole; the update goes back in BF16") {
  const ModelLayout typed({{"conv.weight", {2, 5}, DType::bf16},
                           {"bn.num_batches_tracked", {}, DType::i64},
                           {"bn.running_mean", {5}}});
  Model global(typed);
  for (std::size_t i = 0; i < global.data.size(); ++i) global.data[i] = 0.5f + 0.25f * float(i);
  const std::int64_t batches = 1234;
  std::memcpy(global.carried.data(), &batches, 8);
  wire::Envelope t;
  auto* f = t.mutable_fit_task();
  f->set_round(1);
  *f->mutable_layout() = to_wire(typed);
  f->set_total_elements(global.data.size());
  f->set_num_chunks(chunk_count(global.data.size(), kChunk));
  f->set_chunk_elements(kChunk);
  std::vector<wire::Envelope> envs{t};
  for (auto& c : make_chunks(1, global.data, kChunk, typed.float_runs())) envs.push_back(c);

  SUBCASE("reassembled, and the trained weights are sent in the layout's dtypes") {
    envs[0].mutable_fit_task()->set_carried(global.carried.data(), global.carried.size());
    Fixture fx;
    fx.deliver(envs);
    REQUIRE(fx.runner.tasks.size() == 1);
    const Model& got = *fx.runner.tasks[0].model;
    CHECK(got.layout == typed);
    CHECK(got.data == global.data);
    CHECK(got.carried == global.carried);
    std::vector<float> trained(global.data.size(), 1.5f);
    fx.session.on_task_done(fit_result(fx.runner.tasks[0], trained));
    auto sent = fx.link.take();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].update_header().layout_hash() == typed.hash());
    fx.session.on_message(upload_ready(1));
    sent = fx.link.take();
    std::size_t bytes = 0;
    for (const auto& c : sent) bytes += c.chunk().data().size();
    CHECK(bytes == 10 * 2 + 5 * 4);  // BF16 weights, F32 running mean
  }
  SUBCASE("carried bytes that do not match the layout are refused") {
    envs[0].mutable_fit_task()->set_carried("short");
    Fixture fx;
    fx.deliver(envs);
    CHECK(fx.runner.tasks.empty());
    CHECK(has_error_containing(fx.link.sent, "carries 5 bytes of integer tensors, its layout 8"));
  }
}
