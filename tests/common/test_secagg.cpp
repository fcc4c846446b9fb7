// The SecAgg+ protocol end to end: secagg::Client and secagg::Server over every phase,
// dropouts, thresholds and bad inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "client/secagg_client.hpp"
#include "common/crypto.hpp"
#include "common/secagg.hpp"
#include "common/secagg_wire.hpp"
#include "common/shamir.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/secagg_server.hpp"
#include "tests/common/test_secagg_round.hpp"
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::secagg;
using namespace federa::test;
using crypto::Key32;

TEST_CASE("secagg protocol: 0%/10%/30% dropouts at every phase give the exact sum") {
  const Drop phases[] = {Drop::advertise, Drop::share, Drop::masked, Drop::unmask};
  const char* names[] = {"advertise", "share", "masked", "unmask"};
  for (double fraction : {0.0, 0.1, 0.3}) {
    for (int p = 0; p < 4; ++p) {
      CAPTURE(fraction);
      CAPTURE(names[p]);
      Round r(options(60, 257, fraction), p % 2 ? 2 : 1);
      r.drop_random(fraction, phases[p], 100 + p);
      auto res = r.run_all();
      REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
      CHECK(r.errors.empty());
      r.check_sum(*res);
      const std::size_t dropped = static_cast<std::size_t>(std::lround(fraction * 60));
      const bool in_sum = phases[p] == Drop::unmask;  // dropping after MaskedInput: still summed
      CHECK(res->included.size() == (in_sum ? 60 : 60 - dropped));
      if (phases[p] == Drop::masked) CHECK(res->dropped.size() == dropped);
      // decoded sum within the quantization bound of the plain weighted sum
      CHECK(res->error_bound > 0);
      CHECK(r.server->phase() == Server::Phase::done);
    }
  }
}

TEST_CASE("secagg protocol: pending() tracks who has not answered; rounds are isolated") {
  RoundOptions o = options(12, 16, 0.1);
  o.neighbors = 4;
  o.threshold = 3;
  Round a(o), b(o);
  CHECK(a.server->pending().size() == 12);
  a.drop[5] = Drop::advertise;
  a.clients_advertise();
  CHECK(a.server->pending() == std::vector<std::uint32_t>{5});
  REQUIRE(a.end_advertise());
  CHECK(a.server->pending().size() == 11);
  a.clients_share();
  a.server_share();
  CHECK(a.server->pending().empty());
  REQUIRE(a.end_share());
  b.clients_advertise();
  REQUIRE(b.end_advertise());
  b.clients_share();
  b.server_share();
  REQUIRE(b.end_share());
  // A share relayed from another round (other session id) fails authentication: the recipient
  // leaves its sender out of its masks and names it, rather than leaving the round itself.
  // (A recipient with a share to spare: with one unusable it still holds t.)
  std::uint32_t u = 0;
  while (a.fwd.at(u).shares.size() <= a.cfg.threshold) ++u;
  auto f = a.fwd.at(u);
  const auto& other = b.fwd.at(0);
  REQUIRE_FALSE(other.shares.empty());
  f.shares[0].ciphertext = other.shares[0].ciphertext;
  auto m = a.clients[u]->masked_input_quantized(f, a.q[u]);
  REQUIRE(m);
  CHECK(m->unusable_from == std::vector<std::uint32_t>{f.shares[0].sender});
}

TEST_CASE("secagg protocol: masked sum on an aggregation backend (U32Sum) gives the same sum") {
  for (const char* device : {"cpu", "cuda"}) {
    if (std::string(device) == "cuda" && !cuda_backend_available()) continue;
    CAPTURE(device);
    auto backend = make_backend(device, 2);
    REQUIRE(backend);
    Round r(options(40, 5000, 0.1), 2, backend->get());
    r.drop_random(0.1, Drop::masked, 9);
    auto res = r.run_all();
    REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
    r.check_sum(*res);
    // after phase 3 the host copy is the masked sum, which equals no single input
    for (std::uint32_t u = 0; u < 40; ++u) CHECK(res->sum != r.q[u]);
  }
}

TEST_CASE("secagg protocol: complete graph and small cohorts") {
  RoundOptions o = options(5, 33, 0.0);
  o.neighbors = 4;
  o.threshold = 3;
  Round r(o);
  r.drop[2] = Drop::masked;
  auto res = r.run_all();
  REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
  r.check_sum(*res);
  CHECK(res->included.size() == 4);
}

TEST_CASE("secagg protocol: below threshold the round is abandoned with a reason") {
  SUBCASE("too many dropouts before MaskedInput") {
    RoundOptions o = options(30, 64, 0.1);
    o.neighbors = 6;
    o.threshold = 5;
    Round r(o);
    r.drop_random(0.5, Drop::masked, 5);
    auto res = r.run_all();
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().message, "abandoned"));
    CHECK(contains(res.error().message, "reached MaskedInput"));
    CHECK(r.req.empty());  // nothing was requested
    CHECK(r.server->phase() == Server::Phase::abandoned);
    CHECK_FALSE(r.server->finish());
  }
  SUBCASE("too few Unmasking responses") {
    RoundOptions o = options(30, 64, 0.1);
    o.neighbors = 6;
    o.threshold = 5;
    Round r(o);
    r.drop_random(0.5, Drop::unmask, 6);
    auto res = r.run_all();
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().message, "shares revealed"));
  }
  SUBCASE("too few clients advertise") {
    RoundOptions o = options(20, 8, 0.1);
    o.neighbors = 4;
    o.threshold = 3;
    Round r(o);
    r.drop_random(0.9, Drop::advertise, 7);
    auto res = r.run_all();
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().message, "advertised keys"));
  }
}

TEST_CASE("secagg protocol: bad inputs are rejected and the round goes on") {
  RoundOptions o = options(40, 100, 0.1);
  o.neighbors = 10;
  o.threshold = 5;

  SUBCASE("share for a non-neighbour") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    auto& m = r.sk.at(0);
    const auto& nb = r.clients[0]->neighbors();
    std::uint32_t stranger = 1;
    while (std::binary_search(nb.begin(), nb.end(), stranger)) ++stranger;
    m.shares[0].recipient = stranger;
    r.server_share();
    REQUIRE(r.errors.size() == 1);
    CHECK(contains(r.errors[0], "client 0"));
    CHECK(contains(r.errors[0], "not a neighbour"));
    REQUIRE(r.end_share());
    r.clients_mask();
    r.server_mask();
    REQUIRE(r.end_mask());
    r.clients_unmask();
    r.server_unmask();
    auto res = r.server->finish();
    REQUIRE(res);
    r.check_sum(*res);
    CHECK(res->included.size() == 39);
  }
  SUBCASE("malformed and replayed shares") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.sk.at(1).shares[2].ciphertext.resize(50);  // malformed
    // client a replays a ciphertext of client b as its own share to a common neighbour
    std::uint32_t a = 0, b = 0;
    bool replayed = false;
    for (std::uint32_t i = 2; i < 40 && !replayed; ++i)
      for (std::uint32_t j = 2; j < 40 && !replayed; ++j) {
        if (i == j) continue;
        for (auto& x : r.sk.at(i).shares)
          for (auto& y : r.sk.at(j).shares)
            if (!replayed && x.recipient == y.recipient) {
              x.ciphertext = y.ciphertext;
              a = i;
              b = j;
              replayed = true;
            }
      }
    REQUIRE(replayed);
    // process b first so its tags are known
    REQUIRE(r.server->on_share_keys(b, r.sk.at(b)));
    r.server_share();
    // errors: malformed (1), replayed (a), second ShareKeys (b, from server_share)
    REQUIRE(r.errors.size() == 3);
    auto has = [&](const std::string& what, std::uint32_t who) {
      return std::any_of(r.errors.begin(), r.errors.end(), [&](const std::string& e) {
        return contains(e, what) && contains(e, "client " + std::to_string(who) + " ");
      });
    };
    CHECK(has("malformed", 1));
    CHECK(has("replayed", a));
    CHECK(has("second ShareKeys", b));
    REQUIRE(r.end_share());
    r.clients_mask();
    r.server_mask();
    REQUIRE(r.end_mask());
    r.clients_unmask();
    r.server_unmask();
    auto res = r.server->finish();
    REQUIRE(res);
    r.check_sum(*res);
    CHECK(res->included.size() == 38);
  }
  SUBCASE("share tampered in transit: the recipient names its sender and masks without it") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.server_share();
    REQUIRE(r.end_share());
    auto f = r.fwd.at(4);
    f.shares[0].ciphertext[20] ^= 0x40;
    auto m = r.clients[4]->masked_input_quantized(f, r.q[4]);
    REQUIRE(m);
    CHECK(m->unusable_from == std::vector<std::uint32_t>{f.shares[0].sender});
    // With fewer than t usable shares left the client cannot mask at all.
    auto g = r.fwd.at(5);
    for (std::size_t i = 0; i + r.cfg.threshold <= g.shares.size(); ++i)
      g.shares[i].ciphertext[20] ^= 0x40;
    auto m5 = r.clients[5]->masked_input_quantized(g, r.q[5]);
    REQUIRE_FALSE(m5);
    CHECK(contains(m5.error().message, "usable shares from only"));
  }
  SUBCASE("masked vector of the wrong length, and a second MaskedInput") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.server_share();
    REQUIRE(r.end_share());
    r.clients_mask();
    r.mi.at(5).masked.pop_back();
    r.server_mask();
    REQUIRE(r.errors.size() == 1);
    CHECK(contains(r.errors[0], "words, expected"));
    CHECK_FALSE(r.server->on_masked_input(6, r.mi.at(6)));  // second one
    REQUIRE(r.end_mask());
    r.clients_unmask();
    r.server_unmask();
    auto res = r.server->finish();
    REQUIRE(res);
    r.check_sum(*res);
    CHECK(res->included.size() == 39);  // client 5 treated as dropped
    CHECK(std::find(res->dropped.begin(), res->dropped.end(), 5u) != res->dropped.end());
  }
  SUBCASE("second Unmasking response, and responses with the wrong shares") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.server_share();
    REQUIRE(r.end_share());
    r.drop[7] = Drop::masked;
    r.clients_mask();
    r.server_mask();
    REQUIRE(r.end_mask());
    r.clients_unmask();
    // a neighbour of 7 that asks nothing odd; give it a copy with a share of the wrong kind
    std::uint32_t holder = r.server->graph().neighbors(7)[0];
    auto wrong = r.ur.at(holder);
    for (auto& s : wrong.shares)
      if (s.owner == 7) s.kind = ShareKind::self_mask;
    Status bad_kind = r.server->on_unmask(holder, wrong);
    CHECK_FALSE(bad_kind);
    CHECK(contains(bad_kind.message(), "wrong kind"));
    auto truncated = r.ur.at(holder);
    truncated.shares.pop_back();
    CHECK_FALSE(r.server->on_unmask(holder, truncated));
    r.server_unmask();
    CHECK(r.errors.empty());
    Status again = r.server->on_unmask(holder, r.ur.at(holder));
    CHECK_FALSE(again);
    CHECK(contains(again.message(), "second Unmasking"));
    auto res = r.server->finish();
    REQUIRE(res);
    r.check_sum(*res);
    // and the client refuses to answer twice
    CHECK_FALSE(r.clients[holder]->unmask(r.req.at(holder)));
  }
  // Issue 9, defect 4: only leave-one-out subsets of the first t+1 shares were tried, so two bad
  // shares among the first responders failed the round (bad = 2 failed before the fix).
  SUBCASE(
      "wrong (well-formed) revealed shares are tolerated while t good ones remain; else the owner "
      "is blamed") {
    for (int bad : {1, 2, 5, 6}) {
      CAPTURE(bad);
      Round r(o);
      r.clients_advertise();
      REQUIRE(r.end_advertise());
      r.clients_share();
      r.server_share();
      REQUIRE(r.end_share());
      r.clients_mask();
      r.server_mask();
      REQUIRE(r.end_mask());
      r.clients_unmask();
      // corrupt the self-mask shares of client 0 held by its `bad` lowest-index neighbours with
      // random (well-formed) values: structured errors, such as one constant added to every bad
      // share, can still interpolate to the true secret on some point sets (which then verifies)
      const auto& nb = r.server->graph().neighbors(0);
      std::mt19937_64 noise(99);
      for (int i = 0; i < bad; ++i)
        for (auto& sh : r.ur.at(nb[i]).shares)
          if (sh.owner == 0)
            for (int b = 0; b < 7; ++b) sh.share[b] = static_cast<std::uint8_t>(noise());
      r.server_unmask();
      CHECK(r.errors.empty());
      auto res = r.server->finish();
      REQUIRE(r.server->graph().neighbors(0).size() == 10);  // 10 revealed, t = 5
      if (bad <= 5) {
        REQUIRE(res);
        r.check_sum(*res);
        CHECK(r.server->blamed().empty());
      } else {
        REQUIRE_FALSE(res);
        CHECK(contains(res.error().message, "self mask of client 0"));
        CHECK(contains(res.error().message, "verification"));
        REQUIRE(r.server->blamed().count(0) == 1);
        CHECK(contains(r.server->blamed().at(0), "commitment"));
      }
    }
  }
  SUBCASE("client refuses a request that asks for both shares of one neighbour") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.server_share();
    REQUIRE(r.end_share());
    r.clients_mask();
    r.server_mask();
    REQUIRE(r.end_mask());
    auto req = r.req.at(0);
    req.dropped.push_back(req.survivors[0]);
    auto m = r.clients[0]->unmask(req);
    REQUIRE_FALSE(m);
    CHECK(contains(m.error().message, "twice"));
    // a request claiming almost everyone dropped is refused too
    auto req2 = r.req.at(1);
    while (req2.survivors.size() >= r.cfg.threshold) {
      req2.dropped.push_back(req2.survivors.back());
      req2.survivors.pop_back();
    }
    auto m2 = r.clients[1]->unmask(req2);
    REQUIRE_FALSE(m2);
    CHECK(contains(m2.error().message, "claimed alive"));
  }
  SUBCASE("messages from outside the cohort, wrong round, spoofed sender") {
    Round r(o);
    r.clients_advertise();
    AdvertiseKeys extra;
    extra.sender = 1000;
    CHECK_FALSE(r.server->on_advertise_keys(1000, extra));
    auto m = r.clients[0]->phase();
    CHECK(m == Client::Phase::advertised);
    REQUIRE(r.end_advertise());
    r.clients_share();
    ShareKeys spoof = r.sk.at(8);
    CHECK_FALSE(r.server->on_share_keys(9, spoof));  // 9 claims to be 8
    spoof.round = 99;
    CHECK_FALSE(r.server->on_share_keys(8, spoof));
  }
}
