// The SecAgg+ protocol driven phase by phase over secagg::Client and secagg::Server, with hooks
// to drop or tamper at any point (test_secagg.cpp, test_secagg_blame.cpp).
//
//   Round r(options(20, 100, 0.1));
//   r.drop[3] = Drop::masked;            // client 3 leaves before MaskedInput
//   auto res = r.run_all();              // or drive the phases one by one
//   r.check_sum(*res);                   // exactly the included clients' quantized inputs
#pragma once

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
#include "common/secagg.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/secagg_server.hpp"

namespace federa::test {

using namespace federa::secagg;

enum class Drop { none, advertise, share, masked, unmask };

struct Round {
  RoundConfig cfg;
  std::optional<Server> server;
  std::vector<std::optional<Client>> clients;
  std::vector<std::vector<std::uint32_t>> q;  // each client's quantized input (test-side copy)
  std::vector<Drop> drop;
  std::set<std::uint32_t> masked_ok;  // MaskedInput accepted
  std::vector<std::string> errors;    // rejections seen by the server
  bool r_backend = false;             // masked sum on a backend: host copy only after phase 3

  std::map<std::uint32_t, KeysBroadcast> kb;
  std::map<std::uint32_t, SharesForward> fwd;
  std::map<std::uint32_t, UnmaskRequest> req;
  std::map<std::uint32_t, ShareKeys> sk;  // as produced by clients
  std::map<std::uint32_t, MaskedInput> mi;
  std::map<std::uint32_t, UnmaskResponse> ur;

  explicit Round(const RoundOptions& o, unsigned threads = 1,
                 AggregationBackend* backend = nullptr) {
    auto c = make_round_config(o);
    REQUIRE(c);
    cfg = *c;
    auto s = Server::create(cfg, ServerOptions{threads, backend});
    REQUIRE(s);
    server.emplace(std::move(*s));
    r_backend = backend != nullptr;
    drop.assign(cfg.num_clients, Drop::none);
    q.resize(cfg.num_clients);
    std::mt19937 rng(17);
    std::uniform_real_distribution<float> dist(-10.f, 10.f);
    for (std::uint32_t u = 0; u < cfg.num_clients; ++u) {
      auto cl = Client::create(cfg, u);
      REQUIRE(cl);
      clients.emplace_back(std::move(*cl));
      std::vector<float> x(cfg.vector_length);
      for (float& v : x) v = dist(rng);
      q[u].resize(cfg.masked_length());
      REQUIRE(quantize(x, 0.25 + 0.75 * (u % 4) / 3.0, cfg.quant, q[u]));
    }
  }
  void drop_random(double fraction, Drop at, unsigned seed) {
    std::vector<std::uint32_t> idx(cfg.num_clients);
    for (std::uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::mt19937 rng(seed);
    std::shuffle(idx.begin(), idx.end(), rng);
    const auto n = static_cast<std::size_t>(std::lround(fraction * cfg.num_clients));
    for (std::size_t i = 0; i < n; ++i) drop[idx[i]] = at;
  }
  bool alive(std::uint32_t u, Drop phase) const {
    return clients[u] && (drop[u] == Drop::none || drop[u] > phase);
  }

  // Phase drivers. Each returns the server's end-of-phase status.
  void clients_advertise() {
    for (std::uint32_t u = 0; u < cfg.num_clients; ++u) {
      if (!alive(u, Drop::advertise)) continue;
      auto m = clients[u]->advertise_keys();
      REQUIRE(m);
      if (Status s = server->on_advertise_keys(u, *m); !s) errors.push_back(s.message());
    }
  }
  Status end_advertise() {
    auto r = server->end_advertise_keys();
    if (!r) return r.error();
    for (auto& b : *r) kb[b.recipient] = b;
    return Status::success();
  }
  void clients_share() {
    for (auto& [u, b] : kb) {
      if (!alive(u, Drop::share)) continue;
      auto m = clients[u]->share_keys(b);
      if (!m) {
        clients[u].reset();
        continue;
      }
      sk[u] = *m;
    }
  }
  void server_share() {
    for (auto& [u, m] : sk)
      if (Status s = server->on_share_keys(u, m); !s) errors.push_back(s.message());
  }
  Status end_share() {
    auto r = server->end_share_keys();
    if (!r) return r.error();
    for (auto& f : *r) fwd[f.recipient] = f;
    return Status::success();
  }
  void clients_mask() {
    for (auto& [u, f] : fwd) {
      if (!alive(u, Drop::masked)) continue;
      auto m = clients[u]->masked_input_quantized(f, q[u]);
      if (!m) {
        clients[u].reset();
        continue;
      }
      mi[u] = std::move(*m);
    }
  }
  void server_mask(bool check_state = true) {
    for (auto& [u, m] : mi) {
      if (Status s = server->on_masked_input(u, m); !s) {
        errors.push_back(s.message());
        continue;
      }
      masked_ok.insert(u);
      if (check_state && !r_backend) {
        // What the server holds never equals any single client's quantized input.
        auto held = server->masked_sum();
        for (std::uint32_t v = 0; v < cfg.num_clients; ++v)
          CHECK_FALSE(std::equal(held.begin(), held.end(), q[v].begin(), q[v].end()));
      }
    }
  }
  Status end_mask() {
    auto r = server->end_masked_input();
    if (!r) return r.error();
    for (auto& x : *r) req[x.recipient] = x;
    return Status::success();
  }
  void clients_unmask() {
    for (auto& [u, r] : req) {
      // the server never asks one client for both shares of anyone
      std::set<std::uint32_t> s(r.survivors.begin(), r.survivors.end());
      for (std::uint32_t d : r.dropped) CHECK(s.count(d) == 0);
      if (!alive(u, Drop::unmask)) continue;
      auto m = clients[u]->unmask(r);
      REQUIRE(m);
      ur[u] = *m;
    }
  }
  void server_unmask() {
    for (auto& [u, m] : ur)
      if (Status s = server->on_unmask(u, m); !s) errors.push_back(s.message());
  }
  Result<AggregateResult> run_all() {
    clients_advertise();
    if (Status s = end_advertise(); !s) return s.error();
    clients_share();
    server_share();
    if (Status s = end_share(); !s) return s.error();
    clients_mask();
    server_mask();
    if (Status s = end_mask(); !s) return s.error();
    clients_unmask();
    server_unmask();
    return server->finish();
  }
  void check_sum(const AggregateResult& r) {
    std::vector<std::uint32_t> expect(cfg.masked_length(), 0);
    for (std::uint32_t u : r.included)
      for (std::size_t i = 0; i < expect.size(); ++i) expect[i] += q[u][i];
    CHECK(r.sum == expect);
    CHECK(std::set<std::uint32_t>(r.included.begin(), r.included.end()) == masked_ok);
  }
};

}  // namespace federa::test
