// The orchestrator against members that attack it (issue 9), over fake links with the scripted
// members of tests/coordinator/attack_member.hpp. Each case names the defect it guards; each
// failed before its fix.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "common/nn.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"
#include "tests/coordinator/attack_run.hpp"

using namespace federa;
using namespace federa::testing;
using namespace std::chrono_literals;

// Defect 2. Before: the float32 sum overflowed, the all-Inf model was committed and every
// later round failed. Now the outlier rule rejects the member each round and the model is the
// one the honest members alone produce.
TEST_CASE(
    "attack: a poisoning member (3e38, num_examples 4) changes nothing, in the default "
    "configuration") {
  std::vector<float> with, without;
  for (bool poisoner : {true, false}) {
    Run r(options(3, 2));
    std::vector<MemberSpec> members{honest("a", 1), honest("b", 2), honest("c", 3)};
    if (poisoner) members.insert(members.begin(), MemberSpec{"evil", Attack::poison, {}});
    REQUIRE(r.run(members));
    REQUIRE(r.events.reports().size() == 3);
    CHECK(r.events.failures().empty());
    CHECK(all_finite(r.orch->global().data));
    if (poisoner) {
      for (std::size_t i = 0; i < 3; ++i) {
        auto o = r.outcome(i, "evil");
        REQUIRE(o);
        CHECK(o->outcome == UpdateOutcome::rejected);
        CHECK(o->reason.find("outlier") != std::string::npos);
      }
      with = r.orch->global().data;
    } else {
      without = r.orch->global().data;
    }
  }
  // The same model up to the order in which the honest updates were summed (arrival order varies
  // with the machine's load; float addition is not associative).
  REQUIRE(with.size() == without.size());
  for (std::size_t i = 0; i < with.size(); ++i)
    CHECK(with[i] == doctest::Approx(without[i]).epsilon(1e-5));
}

// Defect 2, last line of defence. With the outlier rule off the poisoned sum overflows: before,
// it was committed; now the attempt fails, nothing is committed, the largest update's sender sits
// out the retry and the round commits a finite model.
TEST_CASE("attack: a non-finite aggregate is never committed; the culprit sits out the retry") {
  auto o = options(2, 2);
  o.outlier_factor = 0;
  Run r(o);
  REQUIRE(r.run({{"evil", Attack::poison, {}}, honest("a", 1), honest("b", 2)}));
  CHECK(all_finite(r.orch->global().data));
  REQUIRE(r.events.reports().size() == 2);
  auto failures = r.events.failures();
  REQUIRE(failures.size() >= 1);
  CHECK(failures[0].reason.message.find("not finite") != std::string::npos);
  auto started = r.events.started();
  for (std::size_t i = 1; i < started.size(); ++i)
    if (started[i].attempt > 1)
      CHECK(std::count(started[i].selected.begin(), started[i].selected.end(), "evil") == 0);
}

// Defect 2 (weights). Before: an update's weight was whatever it announced (2^62), so one member
// owned the average. Now min(announced, its Hello, --max-examples-per-client).
TEST_CASE("attack: a member announcing 2^62 examples weighs at most --max-examples-per-client") {
  auto o = options(1, 3);
  o.max_examples_per_client = 100;
  Run r(o);
  std::vector<float> start = r.orch->global().data;
  REQUIRE(r.run({{"big", Attack::huge_weight, {.examples = 100, .seed = 9}},
                 honest("a", 1),
                 honest("b", 2)}));
  const auto& g = r.orch->global().data;
  auto ua = Member::honest_update(start, 1, 0.01f), ub = Member::honest_update(start, 2, 0.01f);
  auto ubig = Member::honest_update(start, 9, 0.05f);
  for (std::size_t i = 0; i < g.size(); ++i)
    CHECK(g[i] == doctest::Approx((ua[i] + ub[i] + ubig[i]) / 3).epsilon(1e-5));
  auto big = r.outcome(0, "big");
  REQUIRE(big);
  CHECK(big->num_examples == 100);
}

// Defect 6. Before: the staller held the only upload slot until --round-timeout (60 s here) and
// the honest member behind it never got one.
TEST_CASE(
    "attack: a staller's upload slot is released after --upload-stall-timeout; it counts as "
    "dropped") {
  auto o = options(1, 1);
  o.max_inflight_uploads = 1;
  o.round_timeout = 60s;
  o.upload_stall_timeout = 300ms;
  Run r(o);
  REQUIRE(r.run({{"stall", Attack::staller, {}}, honest("a", 1)}));
  auto s = r.outcome(0, "stall");
  auto a = r.outcome(0, "a");
  REQUIRE(s);
  REQUIRE(a);
  CHECK(s->outcome == UpdateOutcome::dropped);
  CHECK(s->reason.find("stalled") != std::string::npos);
  CHECK(a->outcome == UpdateOutcome::accepted);
}

// Defect 9. Before: a client whose data cannot fit the model was admitted and failed every round.
TEST_CASE("attack: a member whose data cannot fit the model is refused at join") {
  auto net = make_network("softmax:784,10");
  REQUIRE(net);
  auto o = options(1, 1);
  o.train.model = "softmax:784,10";
  Run r(o, (*net)->layout());
  Status s = r.fed->add({"wrong", Attack::wrong_data, {}});
  CHECK(s);  // the transport is told by an Error envelope, then closed
  auto& link = r.fed->client("wrong").link();
  CHECK(link.closed());
  CHECK(link.close_code() == wire::Error::DATA_MISMATCH);
  CHECK(r.orch->connected_clients() == 0);
  REQUIRE(r.events.wait_for("refused wrong"));
  // The right shape (or none said) is admitted.
  REQUIRE(r.fed->add(honest("right", 1)));
  CHECK(r.orch->connected_clients() == 1);
}

// Defect 8. Before: the message and the metric names went to the log and the events verbatim.
TEST_CASE("attack: a client's error text and metric names are escaped, cut short and capped") {
  auto o = options(1, 1);
  o.round_timeout = 2s;
  Run r(o);
  FakeClient loud(*r.orch, "loud"), many(*r.orch, "many");
  REQUIRE(loud.join(10));
  REQUIRE(many.join(10));
  std::thread runner([&] { r.result = r.orch->run(); });
  auto t1 = loud.wait_for_task();
  auto t2 = many.wait_for_task();
  REQUIRE(t1);
  REQUIRE(t2);
  wire::Envelope err =
      make_error_envelope(wire::Error::UNKNOWN, "line one\n\x1b[31mfake: round 9 committed\n" +
                                                    std::string(1 << 20, 'x'));
  REQUIRE(loud.send(err));
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(1);
  uh->set_num_examples(10);
  uh->set_layout_hash(kAttackLayout.hash());
  uh->set_total_elements(kAttackLayout.size());
  uh->set_num_chunks(chunk_count(kAttackLayout.size(), 16));
  for (int i = 0; i < 10000; ++i) (*uh->mutable_metrics())["m" + std::to_string(i)] = i;
  (*uh->mutable_metrics())["bad\nname"] = 1;
  REQUIRE(many.send(h));
  REQUIRE(many.link().wait_for(wire::Envelope::kUploadReady));
  for (const auto& e : make_chunks(1, Member::honest_update(t2->global, 1, 0.01f), 16))
    REQUIRE(many.send(e));
  runner.join();
  REQUIRE(r.result);
  auto report = r.events.reports().at(0);
  for (const auto& c : report.clients) {
    if (c.client == "loud") {
      CHECK(c.reason.find('\n') == std::string::npos);
      CHECK(c.reason.find('\x1b') == std::string::npos);
      CHECK(c.reason.find("\\x1b[31m") != std::string::npos);
      CHECK(c.reason.size() < 400);
    } else {
      CHECK(c.metrics.size() <= 32);
      CHECK(c.metrics.count("bad\nname") == 0);
    }
  }
}

// Defect 2 (retries). A rejected member sits out the retries of that round.
TEST_CASE(
    "attack: after a failed attempt, the members it rejected are not selected for the retry") {
  auto o = options(6, 2);
  o.clients_per_round = 2;
  o.round_retries = 3;
  o.seed = 3;
  Run r(o);
  REQUIRE(r.run({{"evil", Attack::poison, {}}, honest("a", 1), honest("b", 2)}));
  CHECK(r.events.reports().size() == 6);
  auto started = r.events.started();
  std::size_t retries = 0;
  for (const auto& s : started) {
    if (s.attempt == 1) continue;
    ++retries;
    CHECK(std::count(s.selected.begin(), s.selected.end(), "evil") == 0);
  }
  CHECK(retries > 0);  // the seed selects the poisoner at least once: the rule was exercised
}
