// SecAgg+ against a member that spoils the protocol (issue 9, defect 4): shares that do not
// decrypt count against their sender, never their receiver; the server says whom it blames.
#include <doctest/doctest.h>

#include <random>

#include "common/crypto.hpp"
#include "tests/common/test_secagg_round.hpp"
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::secagg;
using namespace federa::test;

namespace {

RoundOptions small_round() {
  RoundOptions o = options(12, 64, 0.1);
  o.neighbors = 6;
  o.threshold = 3;
  return o;
}

// Replaces every share `who` sent with random bytes of the right size: the server cannot tell
// (it never sees a plaintext), each recipient's AES-GCM check fails.
void garble_shares(Round& r, std::uint32_t who) {
  std::mt19937 rng(who + 1);
  for (auto& es : r.sk.at(who).shares)
    for (auto& b : es.ciphertext) b = static_cast<std::uint8_t>(rng());
}

std::vector<std::uint32_t> complainers(const Round& r, std::uint32_t about) {
  std::vector<std::uint32_t> out;
  for (const auto& [u, m] : r.mi)
    if (std::count(m.unusable_from.begin(), m.unusable_from.end(), about)) out.push_back(u);
  return out;
}

}  // namespace

// Before the fix every honest neighbour of the garbler failed AES-GCM and left the round; with a
// small cohort nobody was left and the round (and every retry) was abandoned.
TEST_CASE(
    "secagg: random bytes as one member's shares; the round completes with the honest members") {
  Round r(small_round());
  const std::uint32_t bad = 11;  // its masked input reaches the server after the complaints
  r.clients_advertise();
  REQUIRE(r.end_advertise());
  r.clients_share();
  garble_shares(r, bad);
  r.server_share();
  REQUIRE(r.errors.empty());  // indistinguishable from real shares at the server
  REQUIRE(r.end_share());
  r.clients_mask();
  // Every honest neighbour of the garbler still masked, and named it.
  const auto& nb = r.server->graph().neighbors(bad);
  CHECK(complainers(r, bad) == nb);
  CHECK(r.mi.size() == r.cfg.num_clients);
  r.server_mask();
  REQUIRE(r.errors.size() == 1);  // the garbler's own input is refused: it counts as dropped
  CHECK(contains(r.errors[0], "treated as dropped"));
  CHECK(r.masked_ok.count(bad) == 0);
  REQUIRE(r.end_mask());
  r.clients_unmask();
  r.server_unmask();
  auto res = r.server->finish();
  REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
  r.check_sum(*res);
  CHECK(res->included.size() == r.cfg.num_clients - 1);
  REQUIRE(r.server->blamed().count(bad) == 1);
  CHECK(contains(r.server->blamed().at(bad), "did not decrypt"));
  CHECK(r.server->blamed().size() == 1);  // never a receiver
}

TEST_CASE(
    "secagg: the garbler's input already summed: the round is abandoned and the garbler blamed") {
  Round r(small_round());
  const std::uint32_t bad = 0;  // sends first: its input is in the sum before any complaint
  r.clients_advertise();
  REQUIRE(r.end_advertise());
  r.clients_share();
  garble_shares(r, bad);
  r.server_share();
  REQUIRE(r.end_share());
  r.clients_mask();
  r.server_mask();
  CHECK(r.masked_ok.count(bad) == 1);
  auto end = r.end_mask();
  REQUIRE_FALSE(end);
  CHECK(contains(end.message(), "client 0"));
  REQUIRE(r.server->blamed().size() == 1);
  CHECK(r.server->blamed().count(bad) == 1);
}

TEST_CASE(
    "secagg: a complaint sent with the masked-input header refuses the garbler's later input") {
  Round r(small_round());
  const std::uint32_t bad = 0;
  r.clients_advertise();
  REQUIRE(r.end_advertise());
  r.clients_share();
  garble_shares(r, bad);
  r.server_share();
  REQUIRE(r.end_share());
  r.clients_mask();
  // The honest headers (with their complaints) arrive before the garbler's upload completes.
  for (const auto& [u, m] : r.mi)
    if (u != bad) REQUIRE(r.server->report_unusable_shares(u, m.unusable_from));
  CHECK_FALSE(r.server->expect_masked_input(bad));
  r.server_mask();
  CHECK(r.masked_ok.count(bad) == 0);
  REQUIRE(r.end_mask());
  r.clients_unmask();
  r.server_unmask();
  auto res = r.server->finish();
  REQUIRE(res);
  r.check_sum(*res);
}

TEST_CASE("secagg: reports of unusable shares are checked") {
  Round r(small_round());
  r.clients_advertise();
  REQUIRE(r.end_advertise());
  r.clients_share();
  r.server_share();
  REQUIRE(r.end_share());
  const auto& nb = r.server->graph().neighbors(1);
  std::uint32_t stranger = 0;
  while (stranger == 1 || std::binary_search(nb.begin(), nb.end(), stranger)) ++stranger;
  Status s = r.server->report_unusable_shares(1, std::vector<std::uint32_t>{stranger});
  CHECK_FALSE(s);
  CHECK(contains(s.message(), "forwarded it none"));
  CHECK_FALSE(r.server->report_unusable_shares(1, std::vector<std::uint32_t>{nb[0], nb[0]}));
  REQUIRE(r.server->report_unusable_shares(2, {}));
  CHECK(r.server->report_unusable_shares(2, {}));  // the same report again is fine
  const auto& nb2 = r.server->graph().neighbors(2);
  CHECK_FALSE(r.server->report_unusable_shares(
      2, std::vector<std::uint32_t>{nb2[0]}));  // a different one is not
  CHECK(r.server->blamed().empty());
}

TEST_CASE("secagg: a masked input that names a neighbour it did not report is refused whole") {
  Round r(small_round());
  r.clients_advertise();
  REQUIRE(r.end_advertise());
  r.clients_share();
  r.server_share();
  REQUIRE(r.end_share());
  r.clients_mask();
  REQUIRE(r.server->report_unusable_shares(3, {}));
  auto m = r.mi.at(3);
  m.unusable_from = {r.server->graph().neighbors(3)[0]};
  Status s = r.server->on_masked_input(3, m.round, m.masked, m.unusable_from);
  CHECK_FALSE(s);
  CHECK(contains(s.message(), "different report"));
}
