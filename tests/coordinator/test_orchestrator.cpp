// The orchestrator alone, over fake links: selection, deadlines, rejection with reasons,
// retries, commit and resume, event order, stop. No TLS, no simulator, no training.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <thread>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"
#include "tests/coordinator/fake_clients.hpp"

using namespace federa;
using namespace federa::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const ModelLayout kLayout{{{"w", {6}}, {"b", {2}}}};

fs::path fresh_dir(const char* stem) {
  auto d = fs::temp_directory_path() / (std::string(stem) + std::to_string(std::random_device{}()));
  fs::remove_all(d);
  return d;
}

// An orchestrator with a FedAvg strategy on the CPU backend, run() on its own thread.
struct Harness {
  std::unique_ptr<AggregationBackend> backend;
  EventLog events;
  std::unique_ptr<Orchestrator> orch;
  std::thread runner;
  Status result;
  bool ran = false;

  explicit Harness(OrchestratorOptions o, std::optional<StateStore> store = std::nullopt,
                   float init = 0.0f) {
    auto b = make_backend("cpu", 1);
    REQUIRE(b);
    backend = std::move(*b);
    auto s = make_strategy(StrategyOptions{}, *backend);
    REQUIRE(s);
    Model global(kLayout);
    std::fill(global.data.begin(), global.data.end(), init);
    o.train.model = "test";
    o.backend = backend.get();
    orch = std::make_unique<Orchestrator>(o, std::move(*s), std::move(global), std::move(store),
                                          std::nullopt);
    orch->add_observer(&events);
  }
  void start() {
    ran = true;
    runner = std::thread([this] { result = orch->run(); });
  }
  Status finish() {
    if (runner.joinable()) runner.join();
    return result;
  }
  ~Harness() {
    orch->stop();
    if (runner.joinable()) runner.join();
  }
};

OrchestratorOptions options(std::uint64_t rounds, std::size_t min_clients) {
  OrchestratorOptions o;
  o.rounds = rounds;
  o.min_clients = min_clients;
  o.round_timeout = 5s;
  o.round_retries = 2;
  o.chunk_elements = 3;  // several chunks per update
  return o;
}

std::vector<float> filled(float v) { return std::vector<float>(kLayout.size(), v); }

// Every client answers each task it gets with `value(client)`, `examples(client)` times.
void answer_rounds(std::vector<FakeClient*> clients, std::uint64_t rounds, float value,
                   std::uint64_t n = 10) {
  for (std::uint64_t r = 0; r < rounds; ++r)
    for (FakeClient* c : clients) {
      auto t = c->wait_for_task();
      REQUIRE(t);
      REQUIRE(c->upload(t->task.round(), filled(value), n, kLayout.hash(), 3));
    }
}

}  // namespace

TEST_CASE("orchestrator: a round commits the weighted mean, and events arrive in order") {
  Harness h(options(1, 2));
  FakeClient a(*h.orch, "a"), b(*h.orch, "b");
  REQUIRE(a.join(10));
  REQUIRE(b.join(30));
  h.start();
  auto ta = a.wait_for_task(), tb = b.wait_for_task();
  REQUIRE(ta);
  REQUIRE(tb);
  CHECK(ta->task.attempt() == 1);
  CHECK(ta->global == filled(0.0f));
  REQUIRE(a.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  REQUIRE(b.upload(1, filled(3.0f), 30, kLayout.hash(), 3));
  REQUIRE(h.finish());
  for (float v : h.orch->global().data) CHECK(v == doctest::Approx(2.5));  // (10*1 + 30*3) / 40
  CHECK(h.orch->completed_rounds() == 1);
  auto lines = h.events.lines();
  REQUIRE(lines.size() == 7);
  CHECK(lines[0] == "joined a");
  CHECK(lines[1] == "joined b");
  CHECK(lines[2] == "started 1.1");
  CHECK(lines[3] == "accepted a");
  CHECK(lines[4] == "accepted b");
  CHECK(lines[5] == "committed 1");
  CHECK(lines[6] == "finished ok");
  auto r = h.events.reports().at(0);
  CHECK(r.accepted == 2);
  CHECK(r.clients.size() == 2);
  CHECK(r.train_loss.value() == doctest::Approx(0.5));
  CHECK(r.metrics_line.rfind(
            "{\"round\":1,\"clients\":2,\"selected\":2,\"rejected\":0,\"dropped\":0,", 0) == 0);
  // Both clients are told the federation is over.
  CHECK(a.link().received(wire::Envelope::kBye) == 1);
}

TEST_CASE("orchestrator: --clients-per-round selects exactly that many, the same ones for a seed") {
  std::vector<std::vector<std::string>> picks;
  for (int run = 0; run < 2; ++run) {
    auto o = options(1, 1);
    o.clients_per_round = 3;
    o.round_timeout = 300ms;
    Harness h(o);
    std::vector<std::unique_ptr<FakeClient>> cs;
    for (int i = 0; i < 7; ++i) {
      cs.push_back(std::make_unique<FakeClient>(*h.orch, "c" + std::to_string(i)));
      REQUIRE(cs.back()->join(5));
    }
    h.start();
    REQUIRE(h.events.wait_for("started 1.1"));
    auto selected = h.events.started().at(0).selected;
    CHECK(selected.size() == 3);
    CHECK(std::is_sorted(selected.begin(), selected.end()));
    for (auto& c : cs) {
      bool chosen = std::count(selected.begin(), selected.end(), c->id()) > 0;
      if (chosen)
        REQUIRE(c->upload(1, filled(1.0f), 5, kLayout.hash(), 3));
      else
        CHECK(c->link().received(wire::Envelope::kFitTask) == 0);
    }
    REQUIRE(h.finish());
    picks.push_back(selected);
  }
  CHECK(picks[0] == picks[1]);
}

TEST_CASE("orchestrator: a silent client misses the deadline and is dropped with the reason") {
  auto o = options(1, 1);
  o.round_timeout = 400ms;
  Harness h(o);
  FakeClient a(*h.orch, "a"), quiet(*h.orch, "quiet");
  REQUIRE(a.join(10));
  REQUIRE(quiet.join(10));
  h.start();
  auto t = a.wait_for_task();
  REQUIRE(t);
  REQUIRE(a.upload(1, filled(2.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.finish());
  auto r = h.events.reports().at(0);
  CHECK(r.accepted == 1);
  CHECK(r.dropped == 1);
  auto q = std::find_if(r.clients.begin(), r.clients.end(),
                        [](const auto& c) { return c.client == "quiet"; });
  REQUIRE(q != r.clients.end());
  CHECK(q->outcome == UpdateOutcome::dropped);
  CHECK(q->reason.find("deadline") != std::string::npos);
}

TEST_CASE("orchestrator: bad updates are rejected with their reason and the round goes on") {
  auto o = options(1, 1);
  o.round_timeout = 2s;
  Harness h(o);
  FakeClient good(*h.orch, "good"), layout(*h.orch, "layout"), nan(*h.orch, "nan"),
      zero(*h.orch, "zero");
  for (FakeClient* c : {&good, &layout, &nan, &zero}) REQUIRE(c->join(10));
  h.start();
  for (FakeClient* c : {&good, &layout, &nan, &zero}) REQUIRE(c->wait_for_task());
  REQUIRE(good.upload(1, filled(4.0f), 10, kLayout.hash(), 3));
  CHECK_FALSE(layout.upload(1, filled(4.0f), 10, kLayout.hash() ^ 1, 3));
  auto poisoned = filled(4.0f);
  poisoned[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(nan.upload(1, poisoned, 10, kLayout.hash(), 3));
  CHECK_FALSE(zero.upload(1, filled(4.0f), 0, kLayout.hash(), 3));
  REQUIRE(h.finish());
  auto r = h.events.reports().at(0);
  CHECK(r.accepted == 1);
  CHECK(r.rejected == 3);
  std::map<std::string, std::string> why;
  for (const auto& c : r.clients) why[c.client] = c.reason;
  CHECK(why["layout"].find("layout hash") != std::string::npos);
  CHECK(why["nan"].find("non-finite") != std::string::npos);
  CHECK(why["zero"].find("num_examples is 0") != std::string::npos);
  for (float v : h.orch->global().data) CHECK(v == 4.0f);  // nothing of the rejected ones
}

TEST_CASE("orchestrator: a round short of --min-clients is retried with a reason, then commits") {
  auto o = options(1, 2);
  o.round_timeout = 300ms;
  Harness h(o);
  FakeClient a(*h.orch, "a"), b(*h.orch, "b");
  REQUIRE(a.join(10));
  REQUIRE(b.join(10));
  h.start();
  // Attempt 1: only a answers; b stays silent.
  auto t1 = a.wait_for_task();
  REQUIRE(t1);
  REQUIRE(b.wait_for_task());
  REQUIRE(a.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.events.wait_for("failed 1.1"));
  auto f = h.events.failures().at(0);
  CHECK(f.will_retry);
  CHECK(f.reason.code == ErrorCode::unavailable);
  CHECK(f.reason.message.find("only 1 of 2") != std::string::npos);
  CHECK(f.reason.message.find("1 dropped ('b': missed the") != std::string::npos);
  // Attempt 2: both answer.
  auto t2a = a.wait_for_task(), t2b = b.wait_for_task();
  REQUIRE(t2a);
  REQUIRE(t2b);
  CHECK(t2a->task.attempt() == 2);
  REQUIRE(a.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  REQUIRE(b.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.finish());
  CHECK(h.events.reports().at(0).attempt == 2);
}

TEST_CASE("orchestrator: a job whose rounds keep failing ends with the reason, not a hang") {
  auto o = options(1, 1);
  o.round_timeout = 150ms;
  o.round_retries = 1;
  Harness h(o);
  FakeClient a(*h.orch, "a");
  REQUIRE(a.join(10));
  h.start();
  Status s = h.finish();
  CHECK_FALSE(s);
  CHECK(s.code() == ErrorCode::unavailable);
  CHECK(s.message().find("round 1 failed 2 times") != std::string::npos);
  CHECK(h.events.failures().size() == 2);
  CHECK_FALSE(h.events.failures().back().will_retry);
}

TEST_CASE("orchestrator: commits survive a restart; resume continues at the next round") {
  auto dir = fresh_dir("federa_orch_state_");
  {
    Harness h(options(2, 1), StateStore(dir));
    FakeClient a(*h.orch, "a");
    REQUIRE(a.join(10));
    h.start();
    answer_rounds({&a}, 2, 7.0f);
    REQUIRE(h.finish());
  }
  auto committed = StateStore(dir).load();
  REQUIRE(committed);
  REQUIRE(committed->has_value());
  CHECK((*committed)->round == 2);
  CHECK((*committed)->model.data == filled(7.0f));
  Harness h(options(3, 1), StateStore(dir));
  REQUIRE(h.orch->restore(std::move(**committed)));
  FakeClient a(*h.orch, "a");
  REQUIRE(a.join(10));
  h.start();
  auto t = a.wait_for_task();
  REQUIRE(t);
  CHECK(t->task.round() == 3);
  CHECK(t->global == filled(7.0f));
  REQUIRE(a.upload(3, filled(9.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.finish());
  CHECK(h.events.reports().size() == 1);
  CHECK(h.events.reports()[0].round == 3);
  fs::remove_all(dir);
}

TEST_CASE("orchestrator: stop() abandons the open round and commits nothing of it") {
  auto dir = fresh_dir("federa_orch_stop_");
  Harness h(options(3, 2), StateStore(dir));
  FakeClient a(*h.orch, "a"), b(*h.orch, "b");
  REQUIRE(a.join(10));
  REQUIRE(b.join(10));
  h.start();
  REQUIRE(a.wait_for_task());
  REQUIRE(a.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  h.orch->stop();
  Status s = h.finish();
  CHECK(s.code() == ErrorCode::cancelled);
  CHECK(h.orch->completed_rounds() == 0);
  auto committed = StateStore(dir).load();
  REQUIRE(committed);
  CHECK_FALSE(committed->has_value());
  CHECK(h.events.lines().back().rfind("finished stopped", 0) == 0);
  fs::remove_all(dir);
}

TEST_CASE("orchestrator: non-members are refused, revoked members are closed at once") {
  auto o = options(1, 1);
  o.members = {"a", "b"};
  Harness h(o);
  FakeClient a(*h.orch, "a"), b(*h.orch, "b"), stranger(*h.orch, "stranger");
  REQUIRE(a.join(10));
  REQUIRE(b.join(10));
  Status refused = stranger.join(10);
  CHECK(refused.code() == ErrorCode::permission_denied);
  CHECK(h.orch->connected_clients() == 2);
  h.orch->set_members({"a"});
  CHECK(b.link().closed());
  CHECK(b.link().close_code() == wire::Error::NOT_A_MEMBER);
  CHECK(h.orch->connected_clients() == 1);
  auto lines = h.events.lines();
  CHECK(std::count(lines.begin(), lines.end(), "refused stranger") == 1);
  CHECK(std::count(lines.begin(), lines.end(), "left b") == 1);
}

TEST_CASE("orchestrator: uploads wait for a free slot; memory stays at --max-inflight-uploads") {
  auto o = options(1, 3);
  o.max_inflight_uploads = 1;
  Harness h(o);
  FakeClient a(*h.orch, "a"), b(*h.orch, "b"), c(*h.orch, "c");
  for (FakeClient* x : {&a, &b, &c}) REQUIRE(x->join(10));
  h.start();
  for (FakeClient* x : {&a, &b, &c}) REQUIRE(x->wait_for_task());
  auto header = [&](FakeClient& x) {
    wire::Envelope e;
    auto* uh = e.mutable_update_header();
    uh->set_round(1);
    uh->set_num_examples(10);
    uh->set_layout_hash(kLayout.hash());
    uh->set_total_elements(kLayout.size());
    uh->set_num_chunks(chunk_count(kLayout.size(), 3));
    return x.send(e);
  };
  REQUIRE(header(a));
  REQUIRE(header(b));
  REQUIRE(a.link().wait_for(wire::Envelope::kUploadReady, 2s));
  CHECK_FALSE(b.link().wait_for(wire::Envelope::kUploadReady, 200ms));  // a holds the one slot
  for (const auto& e : make_chunks(1, filled(1.0f), 3)) REQUIRE(a.send(e));
  CHECK(b.link().wait_for(wire::Envelope::kUploadReady, 2s));  // granted once a's is aggregated
  for (const auto& e : make_chunks(1, filled(1.0f), 3)) REQUIRE(b.send(e));
  REQUIRE(c.upload(1, filled(1.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.finish());
  CHECK(h.events.reports().at(0).accepted == 3);
}

namespace {

// A strategy whose first `failures` begin_round calls fail as a backend out of memory would.
class BeginFails final : public Strategy {
 public:
  BeginFails(std::unique_ptr<Strategy> inner, int failures)
      : inner_(std::move(inner)), left_(failures) {}
  std::string name() const override { return inner_->name(); }
  bool needs_all_updates() const override { return inner_->needs_all_updates(); }
  Status begin_round(std::span<const float> global, std::uint64_t round) override {
    if (left_ > 0) {
      --left_;
      return make_error(ErrorCode::resource_exhausted, "out of device memory (test)");
    }
    return inner_->begin_round(global, round);
  }
  Status add_update(const ClientUpdate& u) override { return inner_->add_update(u); }
  Result<RoundStats> finish_round(std::span<float> global) override {
    return inner_->finish_round(global);
  }

 private:
  std::unique_ptr<Strategy> inner_;
  int left_;
};

}  // namespace

TEST_CASE("orchestrator: a strategy that cannot begin a round fails that attempt before any task") {
  auto b = make_backend("cpu", 1);
  REQUIRE(b);
  auto s = make_strategy(StrategyOptions{}, **b);
  REQUIRE(s);
  auto o = options(1, 1);
  o.train.model = "test";
  o.backend = b->get();
  Orchestrator orch(o, std::make_unique<BeginFails>(std::move(*s), 1), Model(kLayout), std::nullopt,
                    std::nullopt);
  EventLog events;
  orch.add_observer(&events);
  FakeClient a(orch, "a");
  REQUIRE(a.join(10));
  Status result;
  std::thread runner([&] { result = orch.run(); });
  auto t = a.wait_for_task();
  REQUIRE(t);
  CHECK(t->task.attempt() == 2);  // the failed attempt asked nobody
  REQUIRE(a.upload(t->task.round(), filled(1.0f), 10, kLayout.hash(), 3));
  runner.join();
  CHECK(result);
  REQUIRE(events.failures().size() == 1);
  CHECK(events.failures()[0].reason.code == ErrorCode::resource_exhausted);
  CHECK(events.failures()[0].reason.message.find("cannot begin the round: out of device memory") !=
        std::string::npos);
  CHECK(events.reports().size() == 1);
}

// Issue 10: a member whose trainer failed (the client says BAD_UPDATE) is counted as rejected
// with its reason; one that cannot train now (any other code) as dropped. Both failed before:
// every client error was a dropout.
TEST_CASE(
    "orchestrator: a client's failed training is a rejection with its reason, a dropout is not") {
  auto o = options(1, 1);
  o.round_timeout = 5s;
  Harness h(o);
  FakeClient good(*h.orch, "good"), broken(*h.orch, "broken"), busy(*h.orch, "busy");
  for (FakeClient* c : {&good, &broken, &busy}) REQUIRE(c->join(10));
  h.start();
  for (FakeClient* c : {&good, &broken, &busy}) REQUIRE(c->wait_for_task());
  REQUIRE(broken.send(make_error_envelope(
      wire::Error::BAD_UPDATE, "training failed: trainer exited with status 3; stderr: KeyError")));
  REQUIRE(busy.send(make_error_envelope(wire::Error::UNKNOWN, "training failed: try later")));
  REQUIRE(good.upload(1, filled(2.0f), 10, kLayout.hash(), 3));
  REQUIRE(h.finish());
  const auto r = h.events.reports().at(0);
  CHECK(r.accepted == 1);
  CHECK(r.rejected == 1);
  CHECK(r.dropped == 1);
  for (const auto& c : r.clients) {
    if (c.client == "broken") {
      CHECK(c.outcome == UpdateOutcome::rejected);
      CHECK(c.reason ==
            "client reported: training failed: trainer exited with status 3; stderr: KeyError");
    }
    if (c.client == "busy") CHECK(c.outcome == UpdateOutcome::dropped);
  }
}
