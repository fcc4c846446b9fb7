// SecAgg+ messages through protobuf Envelopes (common/secagg_wire).
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
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::secagg;
using namespace federa::test;
using crypto::Key32;

namespace {
template <typename T>
T reparse(const T& msg) {
  T out;
  REQUIRE(out.ParseFromString(msg.SerializeAsString()));
  return out;
}
}  // namespace

TEST_CASE("secagg wire: a whole round through protobuf Envelopes") {
  RoundOptions o = options(20, 1000, 0.1);
  o.neighbors = 8;
  o.threshold = 4;
  auto cfg0 = make_round_config(o);
  REQUIRE(cfg0);
  auto server = Server::create(*cfg0);
  REQUIRE(server);
  const std::uint32_t n = cfg0->num_clients;
  std::vector<std::optional<Client>> clients(n);
  std::vector<std::vector<std::uint32_t>> q(n);
  for (std::uint32_t u = 0; u < n; ++u) {
    wire::Envelope e;
    to_wire(*cfg0, u, e.mutable_secagg_setup());
    auto setup = from_wire(reparse(e).secagg_setup());
    REQUIRE(setup);
    CHECK(setup->client_index == u);
    CHECK(setup->config.session_id == cfg0->session_id);
    auto c = Client::create(setup->config, u);
    REQUIRE(c);
    clients[u].emplace(std::move(*c));
    auto adv = clients[u]->advertise_keys();
    REQUIRE(adv);
    wire::Envelope a;
    to_wire(*adv, a.mutable_secagg_advertise_keys());
    auto back = from_wire(reparse(a).secagg_advertise_keys());
    REQUIRE(back);
    REQUIRE(server->on_advertise_keys(u, *back));
  }
  auto kb = server->end_advertise_keys();
  REQUIRE(kb);
  for (const KeysBroadcast& b : *kb) {
    wire::SecAggKeysBroadcast w;
    to_wire(b, &w);
    auto bb = from_wire(reparse(w), n);
    REQUIRE(bb);
    auto sk = clients[b.recipient]->share_keys(*bb);
    REQUIRE(sk);
    wire::SecAggShareKeys ws;
    to_wire(*sk, &ws);
    auto sb = from_wire(reparse(ws), n);
    REQUIRE(sb);
    REQUIRE(server->on_share_keys(b.recipient, *sb));
  }
  auto fwd = server->end_share_keys();
  REQUIRE(fwd);
  std::vector<std::uint32_t> expect(cfg0->masked_length(), 0);
  for (const SharesForward& f : *fwd) {
    const std::uint32_t u = f.recipient;
    wire::SecAggSharesForward wf;
    to_wire(f, &wf);
    auto fb = from_wire(reparse(wf), n);
    REQUIRE(fb);
    if (u == 3) continue;  // drops before MaskedInput
    q[u].assign(cfg0->masked_length(), 0);
    std::vector<float> x(cfg0->vector_length, 0.5f * (u % 3));
    REQUIRE(quantize(x, 1.0, cfg0->quant, q[u]));
    auto mi = clients[u]->masked_input_quantized(*fb, q[u]);
    REQUIRE(mi);
    for (std::size_t i = 0; i < expect.size(); ++i) expect[i] += q[u][i];
    auto envs = masked_input_envelopes(*mi, 300);
    REQUIRE(envs.size() == 1 + 4);
    MaskedInputAssembler in;
    std::vector<std::uint32_t> slot(cfg0->masked_length());
    REQUIRE(in.begin(reparse(envs[0]).secagg_masked_input(), *cfg0, slot));
    for (std::size_t i = 1; i < envs.size(); ++i) REQUIRE(in.add(reparse(envs[i]).chunk()));
    REQUIRE(in.complete());
    CHECK(slot == mi->masked);
    REQUIRE(server->on_masked_input(u, cfg0->round, slot));
  }
  auto req = server->end_masked_input();
  REQUIRE(req);
  for (const UnmaskRequest& r : *req) {
    wire::SecAggUnmaskRequest wr;
    to_wire(r, &wr);
    auto rb = from_wire(reparse(wr), n);
    REQUIRE(rb);
    auto resp = clients[r.recipient]->unmask(*rb);
    REQUIRE(resp);
    wire::SecAggUnmaskResponse wu;
    to_wire(*resp, &wu);
    auto ub = from_wire(reparse(wu), n);
    REQUIRE(ub);
    REQUIRE(server->on_unmask(r.recipient, *ub));
  }
  auto res = server->finish();
  REQUIRE(res);
  CHECK(res->sum == expect);
  CHECK(res->decoded.total_weight == doctest::Approx(19.0).epsilon(1e-6));
}

TEST_CASE("secagg wire: malformed messages are refused before use") {
  wire::SecAggAdvertiseKeys a;
  a.set_enc_public(std::string(31, 'x'));
  a.set_mask_public(std::string(32, 'x'));
  a.set_self_mask_commitment(std::string(32, 'x'));
  CHECK_FALSE(from_wire(a));
  wire::SecAggShareKeys s;
  auto* sh = s.add_shares();
  sh->set_sender(1);
  sh->set_recipient(2);
  sh->set_ciphertext(std::string(kShareCiphertextBytes + 1, 'x'));
  CHECK_FALSE(from_wire(s, 10));
  sh->set_ciphertext(std::string(kShareCiphertextBytes, 'x'));
  CHECK(from_wire(s, 10));
  sh->set_recipient(10);
  CHECK_FALSE(from_wire(s, 10));
  wire::SecAggUnmaskResponse u;
  auto* r = u.add_shares();
  r->set_owner(1);
  r->set_share(std::string(39, 'x'));
  CHECK_FALSE(from_wire(u, 10));
  RoundOptions o = options(10, 100, 0.1);
  o.neighbors = 4;
  o.threshold = 2;
  auto cfg = make_round_config(o);
  REQUIRE(cfg);
  wire::SecAggSetup st;
  to_wire(*cfg, 3, &st);
  st.set_scale(st.scale() * 100);  // could wrap: refused by the client
  CHECK_FALSE(from_wire(st));
  wire::SecAggMaskedInputHeader h;
  h.set_round(cfg->round);
  h.set_total_elements(1ull << 40);  // refused before allocating
  h.set_num_chunks(1);
  MaskedInputAssembler in;
  std::vector<std::uint32_t> slot(cfg->masked_length());
  CHECK_FALSE(in.begin(h, *cfg, slot));
}
