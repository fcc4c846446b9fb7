// The client session's SecAgg+ rounds, against the real SecAgg+ server
// (coordinator/secagg_server.hpp), its messages relayed by hand: each phase, its failures and
// aborts, as federa-client and federa-sim both run them.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <vector>

#include "common/secagg_wire.hpp"
#include "coordinator/secagg_server.hpp"
#include "tests/client/session_fixture.hpp"

using namespace federa;
using namespace federa::session_test;

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
