// The client session (client/session.hpp) over a fake ServerLink and TaskRunner: the whole
// protocol as federa-client and federa-sim both run it, without TLS. Secure rounds run against
// the real SecAgg+ server (coordinator/secagg_server.hpp), relayed by hand.
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "client/session.hpp"
#include "common/nn.hpp"
#include "common/secagg_wire.hpp"
#include "common/wire.hpp"
#include "coordinator/secagg_server.hpp"

using namespace federa;

namespace {

struct FakeLink final : ServerLink {
  std::vector<wire::Envelope> sent;
  std::optional<SessionEnd> closed;
  void send(const wire::Envelope& e) override { sent.push_back(e); }
  void close(const SessionEnd& end) override {
    REQUIRE_FALSE(closed.has_value());  // at most once
    closed = end;
  }
  // Takes what was sent since the last call.
  std::vector<wire::Envelope> take() { return std::exchange(sent, {}); }
  std::size_t count(wire::Envelope::PayloadCase kind) const {
    std::size_t n = 0;
    for (const auto& e : sent) n += e.payload_case() == kind;
    return n;
  }
};

struct FakeRunner final : TaskRunner {
  std::vector<Task> tasks;
  void run(Task task) override { tasks.push_back(std::move(task)); }
};

// A session with its fakes.
struct Fixture {
  FakeLink link;
  FakeRunner runner;
  ClientSession session;
  explicit Fixture(std::uint64_t examples = 120) : session(options(examples), link, runner) {
    spdlog::set_level(spdlog::level::off);  // the failures below are logged by design
  }
  static SessionOptions options(std::uint64_t examples) {
    SessionOptions o;
    o.num_train_examples = examples;
    o.software = "test-client 1";
    return o;
  }
  void deliver(const std::vector<wire::Envelope>& envelopes) {
    for (const auto& e : envelopes) session.on_message(e);
  }
};

const std::size_t kChunk = 7;  // elements per chunk: the softmax:4,3 model (15) needs three

ModelLayout layout() {
  auto net = make_network("softmax:4,3");
  REQUIRE(net.ok());
  return (*net)->layout();
}

std::vector<float> model_values(float base) {
  std::vector<float> v(layout().size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * float(i);
  return v;
}

// A FitTask and its chunks, as the orchestrator sends them.
std::vector<wire::Envelope> task_envelopes(std::uint64_t round, const std::vector<float>& global,
                                           const std::string& secure = "") {
  wire::Envelope t;
  auto* f = t.mutable_fit_task();
  f->set_round(round);
  TrainConfig cfg;
  cfg.model = "softmax:4,3";
  cfg.lr = 0.25f;
  cfg.seed = 1000 + round;
  *f->mutable_config() = to_wire(cfg);
  *f->mutable_layout() = to_wire(layout());
  f->set_total_elements(global.size());
  f->set_num_chunks(chunk_count(global.size(), kChunk));
  f->set_chunk_elements(kChunk);
  f->set_secure_aggregation(secure);
  std::vector<wire::Envelope> out{t};
  for (auto& c : make_chunks(round, global, kChunk)) out.push_back(std::move(c));
  return out;
}

TaskResult fit_result(const Task& task, std::vector<float> weights, std::uint64_t examples = 50) {
  FitResult fit;
  fit.weights = std::move(weights);
  fit.num_examples = examples;
  fit.metrics["train_loss"] = 0.5;
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  r.output = TaskOutput(std::move(fit));
  return r;
}

wire::Envelope coordinator_error(wire::Error::Code code, const std::string& message) {
  return make_error_envelope(code, message);
}

wire::Envelope upload_ready(std::uint64_t round) {
  wire::Envelope e;
  e.mutable_upload_ready()->set_round(round);
  return e;
}

wire::Envelope bye(bool complete) {
  wire::Envelope e;
  e.mutable_bye()->set_reason("done");
  e.mutable_bye()->set_federation_complete(complete);
  return e;
}

bool has_error_containing(const std::vector<wire::Envelope>& sent, const std::string& text) {
  for (const auto& e : sent)
    if (e.has_error() && e.error().message().find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

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
  CHECK(f.session.fits_completed() == 0);
  CHECK_FALSE(f.session.upload_pending());
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

// ---------------------------------------------------------------------------------------------
// Secure aggregation: sessions against the real SecAgg+ server, messages relayed by hand.

namespace {

struct SecureCohort {
  std::vector<std::unique_ptr<Fixture>> clients;
  std::optional<secagg::Server> server;
  secagg::RoundConfig config;
  std::uint64_t round = 9;
  std::vector<float> global = model_values(0.1f);

  explicit SecureCohort(std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) clients.push_back(std::make_unique<Fixture>());
    secagg::RoundOptions o;
    o.round = round;
    o.num_clients = n;
    o.vector_length = global.size();
    o.clip = 4.0;
    o.max_weight = 100;
    o.min_clients = 2;
    auto cfg = secagg::make_round_config(o);
    REQUIRE(cfg.ok());
    config = *cfg;
    auto s = secagg::Server::create(config);
    REQUIRE(s.ok());
    server.emplace(std::move(s.value()));
  }
  wire::Envelope setup_for(std::uint32_t u) const {
    wire::Envelope e;
    secagg::to_wire(config, u, e.mutable_secagg_setup());
    return e;
  }
  // The task and the setup, as the orchestrator sends them; then each client's AdvertiseKeys.
  void broadcast() {
    for (std::uint32_t u = 0; u < clients.size(); ++u) {
      clients[u]->deliver(task_envelopes(round, global, "secagg+"));
      clients[u]->session.on_message(setup_for(u));
    }
    for (std::uint32_t u = 0; u < clients.size(); ++u)
      for (const auto& e : clients[u]->link.take()) {
        REQUIRE(e.has_secagg_advertise_keys());
        auto m = secagg::from_wire(e.secagg_advertise_keys());
        REQUIRE(m.ok());
        REQUIRE(server->on_advertise_keys(u, *m).ok());
      }
  }
  void share_keys() {
    auto kb = server->end_advertise_keys();
    REQUIRE(kb.ok());
    for (const auto& b : *kb) {
      wire::Envelope e;
      secagg::to_wire(b, e.mutable_secagg_keys_broadcast());
      clients[b.recipient]->session.on_message(e);
    }
    for (std::uint32_t u = 0; u < clients.size(); ++u)
      for (const auto& e : clients[u]->link.take()) {
        if (!e.has_secagg_share_keys()) continue;
        auto m = secagg::from_wire(e.secagg_share_keys(), config.num_clients);
        REQUIRE(m.ok());
        REQUIRE(server->on_share_keys(u, *m).ok());
      }
  }
  void forward_shares() {
    auto fwd = server->end_share_keys();
    REQUIRE(fwd.ok());
    for (const auto& s : *fwd) {
      wire::Envelope e;
      secagg::to_wire(s, e.mutable_secagg_shares_forward());
      clients[s.recipient]->session.on_message(e);
    }
  }
  // Grants each masked input its upload slot and hands what arrives to the server.
  void collect_masked() {
    for (std::uint32_t u = 0; u < clients.size(); ++u) {
      auto& f = *clients[u];
      auto header = f.link.take();
      if (header.empty()) continue;
      REQUIRE(header.size() == 1);  // the header alone: the words wait for the slot
      REQUIRE(header[0].has_secagg_masked_input());
      CHECK(f.session.upload_pending());
      f.session.on_message(upload_ready(round));
      auto chunks = f.link.take();
      REQUIRE_FALSE(chunks.empty());
      std::vector<std::uint32_t> words(config.masked_length());
      secagg::MaskedInputAssembler in;
      REQUIRE(in.begin(header[0].secagg_masked_input(), config, words).ok());
      for (const auto& c : chunks) REQUIRE(in.add(c.chunk()).ok());
      REQUIRE(in.complete());
      REQUIRE(server->on_masked_input(u, round, words).ok());
    }
  }
  void unmask() {
    auto req = server->end_masked_input();
    REQUIRE(req.ok());
    for (const auto& r : *req) {
      wire::Envelope e;
      secagg::to_wire(r, e.mutable_secagg_unmask_request());
      clients[r.recipient]->session.on_message(e);
      auto sent = clients[r.recipient]->link.take();
      REQUIRE(sent.size() == 1);
      auto m = secagg::from_wire(sent[0].secagg_unmask_response(), config.num_clients);
      REQUIRE(m.ok());
      REQUIRE(server->on_unmask(r.recipient, *m).ok());
    }
  }
  void train(std::uint32_t u, const std::vector<float>& trained, std::uint64_t examples) {
    auto& c = *clients[u];
    REQUIRE(c.runner.tasks.size() == 1);
    c.session.on_task_done(fit_result(c.runner.tasks[0], trained, examples));
  }
};

std::vector<float> trained_for(std::uint32_t u) {
  return model_values(0.1f + 0.05f * float(u + 1));
}

}  // namespace

TEST_CASE(
    "session, secure: keys go out while training; the masked delta sums to the weighted mean") {
  SecureCohort c(4);
  c.broadcast();  // every client advertised its keys before any training finished
  for (auto& f : c.clients) CHECK(f->runner.tasks.size() == 1);
  c.share_keys();
  // Two clients finish training before the shares arrive, two after.
  c.train(0, trained_for(0), 10);
  c.train(1, trained_for(1), 30);
  CHECK(c.clients[0]->link.sent.empty());  // waiting for the shares
  c.forward_shares();
  c.train(2, trained_for(2), 20);
  c.train(3, trained_for(3), 40);
  for (auto& f : c.clients) {
    CHECK(f->link.count(wire::Envelope::kUpdateHeader) == 0);  // never an update in the clear
    CHECK(f->link.count(wire::Envelope::kSecaggMaskedInput) == 1);
  }
  c.collect_masked();
  c.unmask();
  auto result = c.server->finish();
  REQUIRE(result.ok());
  CHECK(result->included.size() == 4);
  CHECK(result->decoded.total_weight == doctest::Approx(100.0).epsilon(1e-3));
  const std::uint64_t weights[] = {10, 30, 20, 40};
  for (std::size_t i = 0; i < c.global.size(); ++i) {
    double expect = 0;
    for (std::uint32_t u = 0; u < 4; ++u)
      expect += double(weights[u]) * double(trained_for(u)[i] - c.global[i]);
    CHECK(result->decoded.weighted_sum[i] == doctest::Approx(expect).epsilon(0.01));
  }
  // Unmasking answered: the round is over for every client, and late messages are ignored.
  c.clients[0]->session.on_message(c.setup_for(0));
  CHECK(c.clients[0]->link.sent.empty());
  for (auto& f : c.clients) CHECK(f->session.fits_completed() == 1);
}

TEST_CASE(
    "session, secure: a client that fails a phase leaves the round and tells the coordinator") {
  SUBCASE("keys broadcast before the setup") {
    Fixture f;
    f.deliver(task_envelopes(9, model_values(0.1f), "secagg+"));
    wire::Envelope keys;
    keys.mutable_secagg_keys_broadcast()->set_round(9);
    f.session.on_message(keys);
    CHECK(has_error_containing(f.link.sent, "secure aggregation: keys before setup"));
    // The trained model then stays here: neither masked nor in the clear.
    f.link.take();
    f.session.on_task_done(fit_result(f.runner.tasks[0], model_values(0.4f)));
    CHECK(f.link.sent.empty());
  }
  SUBCASE("a setup that fails validation") {
    SecureCohort c(3);
    auto& f = *c.clients[0];
    f.deliver(task_envelopes(c.round, c.global, "secagg+"));
    wire::Envelope setup = c.setup_for(0);
    setup.mutable_secagg_setup()->set_threshold(setup.secagg_setup().num_clients() + 5);
    f.session.on_message(setup);
    CHECK(has_error_containing(f.link.sent, "secure aggregation:"));
    CHECK(f.link.count(wire::Envelope::kSecaggAdvertiseKeys) == 0);
  }
  SUBCASE("an unmasking request before its masked input") {
    SecureCohort c(3);
    c.broadcast();
    wire::Envelope req;
    req.mutable_secagg_unmask_request()->set_round(c.round);
    c.clients[1]->session.on_message(req);
    CHECK(
        has_error_containing(c.clients[1]->link.sent, "before this client sent its masked input"));
  }
  SUBCASE("a training failure in a secure round is one error, and the round is left") {
    SecureCohort c(3);
    c.broadcast();
    auto& f = *c.clients[2];
    f.session.on_task_done(failed_task(f.runner.tasks[0], Error{ErrorCode::internal, "disk full"}));
    REQUIRE(f.link.sent.size() == 1);
    CHECK(f.link.sent[0].error().message() == "training failed: disk full");
    // Later phases of that round are ignored quietly.
    f.link.take();
    wire::Envelope keys;
    keys.mutable_secagg_keys_broadcast()->set_round(c.round);
    f.session.on_message(keys);
    CHECK(f.link.sent.empty());
  }
}

TEST_CASE("session, secure: an abort forgets the round; the update is never sent in the clear") {
  SecureCohort c(3);
  c.broadcast();
  c.share_keys();
  wire::Envelope other;
  other.mutable_secagg_abort()->set_round(c.round + 1);
  other.mutable_secagg_abort()->set_reason("not ours");
  c.clients[0]->session.on_message(other);  // another round's abort changes nothing
  wire::Envelope abort;
  abort.mutable_secagg_abort()->set_round(c.round);
  abort.mutable_secagg_abort()->set_reason("too few clients");
  c.clients[1]->session.on_message(abort);
  c.forward_shares();
  c.train(0, trained_for(0), 10);
  c.train(1, trained_for(1), 10);
  CHECK(c.clients[0]->link.count(wire::Envelope::kSecaggMaskedInput) == 1);
  CHECK(c.clients[1]->link.sent.empty());  // aborted: no masked input, no plain update
}

TEST_CASE("session, secure: a new task ends the previous secure round") {
  SecureCohort c(3);
  c.broadcast();
  auto& f = *c.clients[0];
  // The coordinator retries the round: a new task, a new setup.
  f.session.on_task_done(fit_result(f.runner.tasks[0], trained_for(0), 10));
  f.deliver(task_envelopes(c.round + 1, c.global));  // a plain round this time
  REQUIRE(f.runner.tasks.size() == 2);
  f.session.on_task_done(fit_result(f.runner.tasks[1], trained_for(0), 10));
  auto sent = f.link.take();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].update_header().round() == c.round + 1);
}
