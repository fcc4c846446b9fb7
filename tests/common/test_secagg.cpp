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

using namespace federa;
using namespace federa::secagg;
using crypto::Key32;

namespace {

Key32 key_from(std::uint8_t v) {
  Key32 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(v + 7 * i);
  return k;
}

std::vector<std::uint8_t> hex(const std::string& h) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return out;
}

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

// Lagrange interpolation through (xs[i], ys[i]) evaluated at `at`, in GF(2^61-1).
std::uint64_t interpolate(const std::vector<std::uint64_t>& xs, const std::vector<std::uint64_t>& ys,
                          std::uint64_t at) {
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    std::uint64_t num = 1, den = 1;
    for (std::size_t j = 0; j < xs.size(); ++j) {
      if (j == i) continue;
      num = shamir::field_mul(num, shamir::field_sub(at, xs[j]));
      den = shamir::field_mul(den, shamir::field_sub(xs[i], xs[j]));
    }
    acc = shamir::field_add(acc, shamir::field_mul(ys[i], shamir::field_mul(num, shamir::field_inv(den))));
  }
  return acc;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Cryptographic primitives

TEST_CASE("crypto: HKDF-SHA256 matches RFC 5869 test case 1") {
  const auto ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const auto salt = hex("000102030405060708090a0b0c");
  const auto info = hex("f0f1f2f3f4f5f6f7f8f9");
  auto okm = crypto::hkdf_sha256(ikm, salt, info, 42);
  REQUIRE(okm);
  CHECK(*okm == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"));
}

TEST_CASE("crypto: X25519 agreement is symmetric and RFC 7748 section 6.1 holds") {
  auto a = crypto::x25519_generate();
  auto b = crypto::x25519_generate();
  REQUIRE(a);
  REQUIRE(b);
  auto ab = crypto::x25519_agree(a->private_key, b->public_key);
  auto ba = crypto::x25519_agree(b->private_key, a->public_key);
  REQUIRE(ab);
  REQUIRE(ba);
  CHECK(*ab == *ba);
  // RFC 7748 6.1
  Key32 alice_priv, bob_pub;
  auto ap = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  auto bp = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  std::copy(ap.begin(), ap.end(), alice_priv.begin());
  std::copy(bp.begin(), bp.end(), bob_pub.begin());
  auto k = crypto::x25519_agree(alice_priv, bob_pub);
  REQUIRE(k);
  CHECK(std::vector<std::uint8_t>(k->begin(), k->end()) ==
        hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
  // A low-order point (all zeros) is refused.
  CHECK_FALSE(crypto::x25519_agree(alice_priv, Key32{}));
}

TEST_CASE("crypto: AES-256-GCM round trip; tampering, wrong key or wrong AAD fail") {
  const Key32 key = key_from(3);
  const std::vector<std::uint8_t> msg = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto aad = crypto::as_bytes("sender=1,recipient=2,round=7");
  auto sealed = crypto::aead_seal(key, msg, aad);
  REQUIRE(sealed);
  CHECK(sealed->size() == msg.size() + crypto::kAeadOverhead);
  auto opened = crypto::aead_open(key, *sealed, aad);
  REQUIRE(opened);
  CHECK(*opened == msg);
  auto again = crypto::aead_seal(key, msg, aad);
  REQUIRE(again);
  CHECK(*again != *sealed);  // fresh nonce
  auto bad = *sealed;
  bad[crypto::kAeadNonceBytes] ^= 1;
  CHECK_FALSE(crypto::aead_open(key, bad, aad));
  CHECK_FALSE(crypto::aead_open(key_from(4), *sealed, aad));
  CHECK_FALSE(crypto::aead_open(key, *sealed, crypto::as_bytes("sender=2,recipient=1,round=7")));
  CHECK_FALSE(crypto::aead_open(key, std::vector<std::uint8_t>(10), aad));
}

TEST_CASE("crypto: mask PRG is deterministic, prefix-stable, and distinct seeds differ") {
  std::vector<std::uint32_t> a(10007), b(10007), c(10007), prefix(5000);
  REQUIRE(crypto::prg_expand(key_from(1), a));
  REQUIRE(crypto::prg_expand(key_from(1), b));
  REQUIRE(crypto::prg_expand(key_from(2), c));
  REQUIRE(crypto::prg_expand(key_from(1), prefix));
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::equal(prefix.begin(), prefix.end(), a.begin()));
  std::size_t equal_words = 0;
  for (std::size_t i = 0; i < a.size(); ++i) equal_words += a[i] == c[i];
  CHECK(equal_words < 3);
  // add then subtract is the identity; add equals assign on a zero vector
  std::vector<std::uint32_t> acc(10007, 12345u);
  REQUIRE(crypto::prg_accumulate(key_from(1), acc, crypto::PrgOp::add));
  CHECK(acc[17] == 12345u + a[17]);
  REQUIRE(crypto::prg_accumulate(key_from(1), acc, crypto::PrgOp::subtract));
  CHECK(std::all_of(acc.begin(), acc.end(), [](std::uint32_t v) { return v == 12345u; }));
  // roughly uniform: mean of the top bit
  std::size_t ones = 0;
  for (std::uint32_t v : a) ones += v >> 31;
  CHECK(ones > 4700);
  CHECK(ones < 5300);
}

TEST_CASE("secagg: pairwise masks derived on both ends cancel exactly") {
  RoundOptions o;
  o.num_clients = 10;
  o.vector_length = 3000;
  o.neighbors = 4;
  o.threshold = 2;
  auto cfg = make_round_config(o);
  REQUIRE(cfg);
  auto u = crypto::x25519_generate();
  auto v = crypto::x25519_generate();
  REQUIRE(u);
  REQUIRE(v);
  auto su = derive_mask_seed(*cfg, u->private_key, v->public_key, 3, 8);
  auto sv = derive_mask_seed(*cfg, v->private_key, u->public_key, 8, 3);
  REQUIRE(su);
  REQUIRE(sv);
  CHECK(*su == *sv);
  std::vector<std::uint32_t> sum(3001, 0);
  REQUIRE(crypto::prg_accumulate(*su, sum, pair_mask_op(3, 8)));
  CHECK(std::any_of(sum.begin(), sum.end(), [](std::uint32_t x) { return x != 0; }));
  REQUIRE(crypto::prg_accumulate(*sv, sum, pair_mask_op(8, 3)));
  CHECK(std::all_of(sum.begin(), sum.end(), [](std::uint32_t x) { return x == 0; }));
  // domain separation: another pair / round gives another seed
  auto other = derive_mask_seed(*cfg, u->private_key, v->public_key, 3, 9);
  REQUIRE(other);
  CHECK(*other != *su);
}

// ------------------------------------------------------------------------------------------
// Shamir

TEST_CASE("shamir: field arithmetic") {
  using namespace shamir;
  CHECK(field_add(kPrime - 1, 1) == 0);
  CHECK(field_sub(0, 1) == kPrime - 1);
  CHECK(field_mul(kPrime - 1, kPrime - 1) == 1);  // (-1)^2
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    std::uint64_t a = rng() % (kPrime - 1) + 1;
    CHECK(field_mul(a, field_inv(a)) == 1);
  }
}

TEST_CASE("shamir: split and reconstruct from any t shares") {
  auto secret = crypto::random_key();
  REQUIRE(secret);
  std::vector<std::uint32_t> xs;
  for (std::uint32_t i = 0; i < 12; ++i) xs.push_back(3 * i + 5);
  for (std::uint32_t t : {1u, 2u, 5u, 12u}) {
    auto shares = shamir::split(*secret, t, xs);
    REQUIRE(shares);
    std::mt19937 rng(t);
    for (int trial = 0; trial < 20; ++trial) {
      auto subset = *shares;
      std::shuffle(subset.begin(), subset.end(), rng);
      auto back = shamir::reconstruct(subset, t);
      REQUIRE(back);
      CHECK(*back == *secret);
    }
  }
  CHECK_FALSE(shamir::split(*secret, 0, xs));
  CHECK_FALSE(shamir::split(*secret, 13, xs));
  std::vector<std::uint32_t> bad = {1, 2, 2};
  CHECK_FALSE(shamir::split(*secret, 2, bad));
  std::vector<std::uint32_t> zero = {0, 1};
  CHECK_FALSE(shamir::split(*secret, 2, zero));
  auto shares = shamir::split(*secret, 5, xs);
  REQUIRE(shares);
  CHECK_FALSE(shamir::reconstruct(std::span(*shares).first(4), 5));
}

TEST_CASE("shamir: t-1 shares are consistent with every secret") {
  // Information-theoretic argument, checked constructively: for any t-1 shares and ANY
  // candidate secret there is a degree t-1 polynomial through both, so t-1 shares exclude
  // nothing. We build that polynomial's t-th share and check it reconstructs the candidate.
  const std::uint32_t t = 4;
  std::vector<std::uint32_t> xs = {1, 2, 3, 4, 5, 6};
  auto secret = crypto::random_key();
  REQUIRE(secret);
  auto shares = shamir::split(*secret, t, xs);
  REQUIRE(shares);
  for (int trial = 0; trial < 50; ++trial) {
    auto candidate = crypto::random_key();
    REQUIRE(candidate);
    const auto enc = shamir::encode_secret(*candidate);
    shamir::Share forged;
    forged.x = 6;
    for (std::size_t e = 0; e < shamir::kElements; ++e) {
      std::vector<std::uint64_t> px = {0}, py = {enc[e]};
      for (std::uint32_t i = 0; i < t - 1; ++i) {
        px.push_back((*shares)[i].x);
        py.push_back((*shares)[i].y[e]);
      }
      forged.y[e] = interpolate(px, py, forged.x);
    }
    std::vector<shamir::Share> set((*shares).begin(), (*shares).begin() + (t - 1));
    set.push_back(forged);
    auto back = shamir::reconstruct(set, t);
    REQUIRE(back);
    CHECK(*back == *candidate);
  }
}

TEST_CASE("shamir: a single share's distribution does not depend on the secret (t=2)") {
  // Statistical check: low 4 bits of the first element of share #1, for two different secrets,
  // are both uniform over 16 buckets.
  const int trials = 16000;
  std::vector<std::uint32_t> xs = {1, 2, 3};
  for (std::uint8_t s : {0, 255}) {
    Key32 secret;
    secret.fill(s);
    std::vector<int> bucket(16, 0);
    for (int i = 0; i < trials; ++i) {
      auto shares = shamir::split(secret, 2, xs);
      REQUIRE(shares);
      ++bucket[(*shares)[0].y[0] & 15];
    }
    for (int b : bucket) {
      CHECK(b > 1000 - 6 * 31);  // mean 1000, sd ~ 31
      CHECK(b < 1000 + 6 * 31);
    }
  }
}

TEST_CASE("shamir: Lagrange cache, wire form and inconsistent shares") {
  shamir::LagrangeCache cache;
  std::vector<std::uint32_t> xs = {2, 5, 9};
  auto a = cache.at_zero(xs);
  auto b = cache.at_zero(xs);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);
  CHECK(cache.size() == 1);
  auto secret = crypto::random_key();
  REQUIRE(secret);
  auto shares = shamir::split(*secret, 3, xs);
  REQUIRE(shares);
  auto back = shamir::reconstruct(*shares, **a);
  REQUIRE(back);
  CHECK(*back == *secret);
  // wire form
  auto bytes = shamir::serialize_y((*shares)[1]);
  auto parsed = shamir::parse_y(5, bytes);
  REQUIRE(parsed);
  CHECK(parsed->y == (*shares)[1].y);
  CHECK_FALSE(shamir::parse_y(5, std::span(bytes).first(39)));
  std::array<std::uint8_t, shamir::kShareBytes> ones;
  ones.fill(0xff);
  CHECK_FALSE(shamir::parse_y(5, ones));  // elements >= p
  // A corrupted share almost always decodes out of range (chunks are 56/32 bits of 61).
  auto bad = *shares;
  bad[0].y[0] = shamir::field_add(bad[0].y[0], 1);
  auto wrong = shamir::reconstruct(bad, **a);
  CHECK((!wrong || *wrong != *secret));
}

// ------------------------------------------------------------------------------------------
// Parameters, graph, quantization

TEST_CASE("secagg: derived (k, t) reproduce the calibration table") {
  auto check = [](std::uint32_t n, double dropout, double corrupt, std::uint32_t k,
                  std::uint32_t t) {
    auto p = derive_parameters(n, dropout, corrupt);
    REQUIRE(p);
    CHECK(p->neighbors == k);
    CHECK(p->threshold == t);
  };
  check(1000, 0.05, 0.05, 30, 17);
  check(1000, 0.33, 0.05, 72, 24);
  check(10000, 0.05, 0.05, 34, 20);
  check(10000, 0.33, 0.05, 86, 29);
  auto hard = derive_parameters(1000, 0.33, 0.33);  // the table says (286, 150)
  REQUIRE(hard);
  CHECK(hard->neighbors >= 270);
  CHECK(hard->neighbors <= 300);
  CHECK_FALSE(derive_parameters(100, 0.6, 0.4));
}

TEST_CASE("secagg: Harary graph is regular, symmetric, seeded and relabelled") {
  for (std::uint32_t n : {7u, 50u, 333u}) {
    for (std::uint32_t k : {2u, 5u, 6u, 30u}) {
      auto g = NeighborGraph::create(n, k, key_from(9));
      REQUIRE(g);
      const std::uint32_t deg = effective_degree(n, k);
      CHECK(g->degree() == deg);
      for (std::uint32_t u = 0; u < n; ++u) {
        const auto& nb = g->neighbors(u);
        CHECK(nb.size() == deg);
        CHECK(std::set<std::uint32_t>(nb.begin(), nb.end()).size() == nb.size());
        for (std::uint32_t v : nb) {
          CHECK(v != u);
          CHECK(g->adjacent(v, u));
        }
      }
    }
  }
  auto g1 = NeighborGraph::create(100, 10, key_from(1));
  auto g2 = NeighborGraph::create(100, 10, key_from(1));
  auto g3 = NeighborGraph::create(100, 10, key_from(2));
  REQUIRE(g1);
  REQUIRE(g2);
  REQUIRE(g3);
  bool same12 = true, same13 = true, ring = true;
  for (std::uint32_t u = 0; u < 100; ++u) {
    same12 &= g1->neighbors(u) == g2->neighbors(u);
    same13 &= g1->neighbors(u) == g3->neighbors(u);
    ring &= g1->adjacent(u, (u + 1) % 100);
  }
  CHECK(same12);
  CHECK_FALSE(same13);
  // one client's neighbours without the whole graph agree with the graph
  RoundOptions o;
  o.num_clients = 300;
  o.vector_length = 1;
  o.neighbors = 16;
  o.threshold = 5;
  auto cfg = make_round_config(o);
  REQUIRE(cfg);
  auto g = NeighborGraph::create(*cfg);
  REQUIRE(g);
  for (std::uint32_t u : {0u, 17u, 299u}) {
    auto nb = neighbors_of(*cfg, u);
    REQUIRE(nb);
    CHECK(*nb == g->neighbors(u));
  }
  CHECK_FALSE(ring);  // relabelled, not the identity layout
}

TEST_CASE("secagg: quantization bounds, unbiased rounding and no-wrap refusal") {
  auto q = make_quant_config(1000, 8.0, 1.0);
  REQUIRE(q);
  CHECK(1000.0 * (std::ceil(8.0 * q->scale) + 1) <= 2147483647.0);
  // an explicit scale that lets 1000 clients wrap is refused, and so is a cohort too large
  auto wrap = make_quant_config(1000, 8.0, 1.0, q->scale * 1.01);
  CHECK_FALSE(wrap);
  CHECK(contains(wrap.error().message, "wrap"));
  QuantConfig bad = *q;
  bad.cohort = 2000;
  CHECK_FALSE(check_quant_config(bad));
  // Flower's ±8 / 2^22 levels would wrap beyond ~1024 clients; we refuse it for 2000.
  CHECK_FALSE(make_quant_config(2000, 8.0, 1.0, (1 << 22) / 16.0));

  std::vector<float> x = {0.f, 1.f, -1.f, 100.f, -100.f, 7.99f, 1e-7f};
  std::vector<std::uint32_t> out(x.size() + 1);
  REQUIRE(quantize(x, 0.5, *q, out));
  const double bound = std::ceil(8.0 * q->scale) + 1;
  for (std::uint32_t w : out) CHECK(std::abs(double(static_cast<std::int32_t>(w))) <= bound);
  auto d = dequantize(out, *q);
  for (std::size_t i = 0; i < x.size(); ++i)
    CHECK(std::abs(d.weighted_sum[i] - 0.5 * std::clamp(double(x[i]), -8.0, 8.0)) <= 1.0 / q->scale);
  CHECK(std::abs(d.total_weight - 0.5) < 1e-6);
  // worst case: the whole cohort at +clip and -clip does not wrap
  std::vector<float> hi(1, 8.f), lo(1, -8.f);
  std::vector<std::uint32_t> qh(2), ql(2), sh(2, 0), sl(2, 0);
  REQUIRE(quantize(hi, 1.0, *q, qh));
  REQUIRE(quantize(lo, 1.0, *q, ql));
  for (int i = 0; i < 1000; ++i) {
    sh[0] += qh[0];
    sl[0] += ql[0];
  }
  CHECK(dequantize(sh, *q).weighted_sum[0] == doctest::Approx(8000.0).epsilon(1e-6));
  CHECK(dequantize(sl, *q).weighted_sum[0] == doctest::Approx(-8000.0).epsilon(1e-6));
  // stochastic rounding is unbiased: a value of 0.25 units averages to 0.25
  std::vector<float> quarter(20000, static_cast<float>(0.25 / q->scale));
  std::vector<std::uint32_t> qq(quarter.size() + 1);
  REQUIRE(quantize(quarter, 1.0, *q, qq));
  double mean = 0;
  for (std::size_t i = 0; i < quarter.size(); ++i) mean += static_cast<std::int32_t>(qq[i]);
  mean /= double(quarter.size());
  CHECK(mean == doctest::Approx(0.25).epsilon(0.05));
  // bad inputs
  CHECK_FALSE(quantize(x, 1.5, *q, out));  // weight > max_weight
  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
  std::vector<std::uint32_t> o2(2);
  CHECK_FALSE(quantize(nan, 1.0, *q, o2));
}

TEST_CASE("secagg: round configuration validation") {
  RoundOptions o;
  o.num_clients = 100;
  o.vector_length = 10;
  o.dropout = 0.1;
  auto c = make_round_config(o);
  REQUIRE(c);
  CHECK(validate(*c));
  RoundConfig bad = *c;
  bad.threshold = 1;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.threshold = bad.neighbors + 1;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.quant.scale *= 4;
  CHECK_FALSE(validate(bad));
  bad = *c;
  bad.neighbors = 7;  // odd degree below n-1 is not a Harary degree here
  CHECK_FALSE(validate(bad));
}

// ------------------------------------------------------------------------------------------
// Full protocol

namespace {

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
  std::map<std::uint32_t, ShareKeys> sk;          // as produced by clients
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

RoundOptions options(std::uint32_t n, std::uint64_t len, double dropout) {
  RoundOptions o;
  o.round = 3;
  o.num_clients = n;
  o.vector_length = len;
  o.dropout = std::max(dropout, 0.05);
  o.corrupt = 0.05;
  return o;
}

}  // namespace

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
  // A share relayed from another round (other session id) fails authentication.
  auto f = a.fwd.at(0);
  const auto& other = b.fwd.at(0);
  REQUIRE_FALSE(other.shares.empty());
  f.shares[0].ciphertext = other.shares[0].ciphertext;
  auto m = a.clients[0]->masked_input_quantized(f, a.q[0]);
  REQUIRE_FALSE(m);
  CHECK(contains(m.error().message, "authentication"));
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
  SUBCASE("share tampered in transit fails authentication at the recipient") {
    Round r(o);
    r.clients_advertise();
    REQUIRE(r.end_advertise());
    r.clients_share();
    r.server_share();
    REQUIRE(r.end_share());
    auto f = r.fwd.at(4);
    f.shares[0].ciphertext[20] ^= 0x40;
    auto m = r.clients[4]->masked_input_quantized(f, r.q[4]);
    REQUIRE_FALSE(m);
    CHECK(contains(m.error().message, "authentication"));
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
  SUBCASE("a wrong (well-formed) revealed share is tolerated with a spare, detected without") {
    for (int bad : {1, 2}) {
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
      // corrupt the self-mask shares of client 0 held by its `bad` lowest-index neighbours
      const auto& nb = r.server->graph().neighbors(0);
      for (int i = 0; i < bad; ++i)
        for (auto& sh : r.ur.at(nb[i]).shares)
          if (sh.owner == 0) sh.share[3] ^= 0x10;
      r.server_unmask();
      CHECK(r.errors.empty());
      auto res = r.server->finish();
      if (bad == 1) {
        REQUIRE(res);
        r.check_sum(*res);
      } else {
        REQUIRE_FALSE(res);
        CHECK(contains(res.error().message, "self mask of client 0"));
        CHECK(contains(res.error().message, "verification"));
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

// ------------------------------------------------------------------------------------------
// Wire form

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
    REQUIRE(in.begin(reparse(envs[0]).secagg_masked_input(), *cfg0));
    for (std::size_t i = 1; i < envs.size(); ++i) REQUIRE(in.add(reparse(envs[i]).chunk()));
    REQUIRE(in.complete());
    auto got = in.take();
    REQUIRE(got);
    CHECK(got->masked == mi->masked);
    REQUIRE(server->on_masked_input(u, *got));
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
  CHECK_FALSE(in.begin(h, *cfg));
}
