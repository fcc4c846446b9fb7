#include "common/secagg.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace federa::secagg {
namespace {

constexpr double kLn2 = 0.69314718055994530942;

double log_choose(double a, double b) {
  return std::lgamma(a + 1) - std::lgamma(b + 1) - std::lgamma(a - b + 1);
}

// log P[X >= m] for X ~ Hypergeometric(population n, successes marked, draws k).
double log_hyper_tail(std::uint32_t n, std::uint32_t marked, std::uint32_t k, std::uint32_t m) {
  if (m == 0) return 0.0;
  const std::uint32_t hi = std::min(k, marked);
  if (m > hi) return -std::numeric_limits<double>::infinity();
  const double denom = log_choose(n, k);
  double mx = -std::numeric_limits<double>::infinity();
  std::vector<double> terms;
  for (std::uint32_t i = m; i <= hi; ++i) {
    if (k - i > n - marked) continue;
    double t = log_choose(marked, i) + log_choose(n - marked, k - i) - denom;
    terms.push_back(t);
    mx = std::max(mx, t);
  }
  if (terms.empty()) return -std::numeric_limits<double>::infinity();
  double s = 0;
  for (double t : terms) s += std::exp(t - mx);
  return mx + std::log(s);
}

void put_u32(crypto::Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(crypto::Bytes& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_str(crypto::Bytes& b, std::string_view s) {
  const std::size_t old = b.size();
  b.resize(old + s.size());
  std::memcpy(b.data() + old, s.data(), s.size());
}

crypto::Bytes pair_info(std::string_view label, const RoundConfig& c, std::uint32_t a,
                        std::uint32_t b) {
  crypto::Bytes info;
  put_str(info, label);
  put_u64(info, c.round);
  put_u32(info, std::min(a, b));
  put_u32(info, std::max(a, b));
  return info;
}

}  // namespace

Result<GraphParameters> derive_parameters(std::uint32_t n, double dropout, double corrupt,
                                          double security_bits, double failure_bits) {
  if (n < 2) return make_error("secagg: need at least 2 clients");
  if (!(dropout >= 0 && dropout < 1) || !(corrupt >= 0 && corrupt < 1) || dropout + corrupt >= 1)
    return make_error("secagg: dropout and corrupt fractions must be in [0, 1) with sum < 1");
  const double log_sec = -security_bits * kLn2 - std::log(double(n));
  const double log_fail = -failure_bits * kLn2 - std::log(double(n));
  const auto corrupt_n = static_cast<std::uint32_t>(std::lround(corrupt * n));
  const auto dropped_n = static_cast<std::uint32_t>(std::lround(dropout * n));
  auto try_k = [&](std::uint32_t k) -> std::uint32_t {  // returns t, or 0 if k fails
    std::uint32_t t = 1;
    while (t <= k && log_hyper_tail(n, corrupt_n, k, t) > log_sec) ++t;
    t = std::max<std::uint32_t>(t, 2);
    if (t > k) return 0;
    // Fewer than t survivors <=> at least k - t + 1 of the k neighbours dropped.
    if (log_hyper_tail(n, dropped_n, k, k - t + 1) > log_fail) return 0;
    return t;
  };
  for (std::uint32_t k = 2; k < n - 1; k += 2)
    if (std::uint32_t t = try_k(k)) return GraphParameters{k, t};
  if (std::uint32_t t = try_k(n - 1)) return GraphParameters{n - 1, t};
  return make_error("secagg: no (k, t) for n=" + std::to_string(n) + ", dropout " +
                    std::to_string(dropout) + ", corrupt " + std::to_string(corrupt) +
                    ": even the complete graph cannot meet both bounds");
}

// ---------------------------------------------------------------------------------------------
// Quantization

namespace {
constexpr double kRingHalf = 2147483647.0;  // 2^31 - 1

double coordinate_bound(const QuantConfig& q) {
  return std::ceil(q.clip * q.max_weight * q.scale) + 1.0;
}
}  // namespace

Status check_quant_config(const QuantConfig& q) {
  if (!(q.clip > 0) || !std::isfinite(q.clip)) return make_error("secagg: clip must be > 0");
  if (!(q.max_weight > 0) || !std::isfinite(q.max_weight))
    return make_error("secagg: max_weight must be > 0");
  if (!(q.scale > 0) || !std::isfinite(q.scale)) return make_error("secagg: scale must be > 0");
  if (q.cohort == 0) return make_error("secagg: cohort must be > 0");
  const double worst = double(q.cohort) * coordinate_bound(q);
  if (worst > kRingHalf)
    return make_error("secagg: quantization could wrap 2^32: " + std::to_string(q.cohort) +
                      " clients x bound " + std::to_string(coordinate_bound(q)) +
                      " exceeds 2^31-1; lower scale, clip or max_weight");
  return Status::success();
}

Result<QuantConfig> make_quant_config(std::uint32_t cohort, double clip, double max_weight,
                                      double scale) {
  QuantConfig q{clip, max_weight, scale, cohort};
  if (cohort == 0) return make_error("secagg: cohort must be > 0");
  if (scale == 0.0) {
    if (!(clip > 0) || !(max_weight > 0))
      return make_error("secagg: clip and max_weight must be > 0");
    // Largest scale with cohort * (ceil(clip*w*scale) + 1) <= 2^31 - 1.
    const double per_client = std::floor(kRingHalf / cohort) - 2.0;
    if (per_client < 1.0)
      return make_error("secagg: cohort of " + std::to_string(cohort) +
                        " clients leaves no quantization levels in 2^32");
    q.scale = per_client / (clip * max_weight);
  }
  if (Status s = check_quant_config(q); !s) return s.error();
  return q;
}

double quantization_error_bound(const QuantConfig& q, std::uint32_t summed) {
  // Stochastic rounding moves each client's value by < 1 unit.
  return double(summed) / q.scale;
}

Status quantize(std::span<const float> x, double weight, const QuantConfig& q,
                std::span<std::uint32_t> out) {
  if (out.size() != x.size() + 1) return make_error("secagg: quantize output size mismatch");
  if (!(weight >= 0) || weight > q.max_weight)
    return make_error("secagg: weight " + std::to_string(weight) +
                      " outside [0, max_weight=" + std::to_string(q.max_weight) + "]");
  auto seed = crypto::random_key();
  if (!seed) return seed.error();
  // Uniform words for stochastic rounding, from the same fast keystream (fresh random key).
  if (Status s = crypto::prg_expand(*seed, out); !s) return s;
  const double f = weight * q.scale;
  constexpr double kTwo32 = 4294967296.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float xi = x[i];
    if (!std::isfinite(xi)) return make_error("secagg: non-finite value at " + std::to_string(i));
    const double v = std::clamp(double(xi), -q.clip, q.clip) * f;
    const double fl = std::floor(v);
    const double frac = v - fl;
    const auto up = static_cast<std::int64_t>(double(out[i]) < frac * kTwo32);
    out[i] = static_cast<std::uint32_t>(static_cast<std::int64_t>(fl) + up);
  }
  {
    const double v = weight * q.scale * q.clip;
    const double fl = std::floor(v);
    const auto up = static_cast<std::int64_t>(double(out[x.size()]) < (v - fl) * kTwo32);
    out[x.size()] = static_cast<std::uint32_t>(static_cast<std::int64_t>(fl) + up);
  }
  return Status::success();
}

Decoded dequantize(std::span<const std::uint32_t> sum, const QuantConfig& q) {
  Decoded d;
  if (sum.empty()) return d;
  const std::size_t n = sum.size() - 1;
  d.weighted_sum.resize(n);
  const double inv = 1.0 / q.scale;
  for (std::size_t i = 0; i < n; ++i)
    d.weighted_sum[i] = double(static_cast<std::int32_t>(sum[i])) * inv;
  d.total_weight = double(static_cast<std::int32_t>(sum[n])) / (q.scale * q.clip);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Round configuration

Result<RoundConfig> make_round_config(const RoundOptions& o) {
  RoundConfig c;
  c.round = o.round;
  c.num_clients = o.num_clients;
  c.vector_length = o.vector_length;
  if (o.num_clients < 2) return make_error("secagg: need at least 2 clients");
  if (o.vector_length == 0) return make_error("secagg: empty vector");
  GraphParameters p{o.neighbors, o.threshold};
  if (p.neighbors == 0 || p.threshold == 0) {
    auto d = derive_parameters(o.num_clients, o.dropout, o.corrupt);
    if (!d) return d.error();
    if (p.neighbors == 0) p.neighbors = d->neighbors;
    if (p.threshold == 0) {
      // A given k with a derived t: keep the derived t, capped by k.
      p.threshold = std::min(d->threshold, effective_degree(o.num_clients, p.neighbors));
    }
  }
  c.neighbors = effective_degree(o.num_clients, p.neighbors);
  c.threshold = p.threshold;
  auto q = make_quant_config(o.num_clients, o.clip, o.max_weight, o.scale);
  if (!q) return q.error();
  c.quant = *q;
  c.min_clients = o.min_clients ? o.min_clients : c.threshold;
  auto sid = crypto::random_key();
  if (!sid) return sid.error();
  c.session_id = *sid;
  if (Status s = validate(c); !s) return s.error();
  return c;
}

Status validate(const RoundConfig& c) {
  if (c.num_clients < 2) return make_error("secagg: need at least 2 clients");
  if (c.vector_length == 0 || c.vector_length > (std::uint64_t{1} << 32))
    return make_error("secagg: vector length out of range");
  if (c.neighbors != effective_degree(c.num_clients, c.neighbors))
    return make_error("secagg: neighbour count " + std::to_string(c.neighbors) +
                      " is not a valid Harary degree for " + std::to_string(c.num_clients) +
                      " clients");
  if (c.threshold < 2)
    return make_error("secagg: threshold must be >= 2 (t=1 would let one neighbour reveal)");
  if (c.threshold > c.neighbors)
    return make_error("secagg: threshold " + std::to_string(c.threshold) + " exceeds the " +
                      std::to_string(c.neighbors) + " neighbours");
  if (c.quant.cohort != c.num_clients)
    return make_error("secagg: quantization cohort differs from the number of clients");
  if (Status s = check_quant_config(c.quant); !s) return s;
  if (c.min_clients < 1 || c.min_clients > c.num_clients)
    return make_error("secagg: min_clients out of range");
  return Status::success();
}

// ---------------------------------------------------------------------------------------------
// Graph

std::uint32_t effective_degree(std::uint32_t n, std::uint32_t k) {
  if (n < 2) return 0;
  if (k >= n - 1) return n - 1;
  if (k % 2) ++k;
  return k >= n - 1 ? n - 1 : k;
}

namespace {

Result<Key32> graph_seed(const RoundConfig& config) {
  return crypto::hkdf_sha256_key(config.session_id, {}, crypto::as_bytes("federa/secagg/v1/graph"));
}

// node_at[position] = client: a uniform permutation (Fisher-Yates, rejection sampling) drawn
// from the PRG keyed by the graph seed.
Result<std::vector<std::uint32_t>> relabelling(std::uint32_t n, const Key32& seed) {
  std::vector<std::uint32_t> words(std::size_t{2} * n + 64);
  std::vector<std::uint32_t> node_at(n);
  for (std::uint32_t i = 0; i < n; ++i) node_at[i] = i;
  if (Status s = crypto::prg_expand(seed, words); !s) return s.error();
  std::size_t w = 0;
  std::uint8_t refills = 0;
  for (std::uint32_t i = n - 1; i > 0; --i) {
    const std::uint64_t range = std::uint64_t{i} + 1;
    const std::uint64_t limit = (std::uint64_t{1} << 32) - ((std::uint64_t{1} << 32) % range);
    std::uint64_t r;
    do {
      if (w == words.size()) {  // practically never: rejections are rare
        Key32 s = seed;
        s[31] ^= ++refills;
        if (Status st = crypto::prg_expand(s, words); !st) return st.error();
        w = 0;
      }
      r = words[w++];
    } while (r >= limit);
    std::swap(node_at[i], node_at[r % range]);
  }
  return node_at;
}

}  // namespace

Result<NeighborGraph> NeighborGraph::create(const RoundConfig& config) {
  auto seed = graph_seed(config);
  if (!seed) return seed.error();
  return create(config.num_clients, config.neighbors, *seed);
}

Result<NeighborGraph> NeighborGraph::create(std::uint32_t n, std::uint32_t k, const Key32& seed) {
  if (n < 2) return make_error("secagg: graph needs at least 2 nodes");
  const std::uint32_t deg = effective_degree(n, std::max<std::uint32_t>(k, 1));
  NeighborGraph g;
  g.degree_ = deg;
  g.adj_.assign(n, {});
  if (deg == n - 1) {
    for (std::uint32_t u = 0; u < n; ++u)
      for (std::uint32_t v = 0; v < n; ++v)
        if (u != v) g.adj_[u].push_back(v);
    return g;
  }
  auto node_at = relabelling(n, seed);
  if (!node_at) return node_at.error();
  for (std::uint32_t p = 0; p < n; ++p) {
    const std::uint32_t u = (*node_at)[p];
    g.adj_[u].reserve(deg);
    for (std::uint32_t j = 1; j <= deg / 2; ++j) {
      g.adj_[u].push_back((*node_at)[(p + j) % n]);
      g.adj_[u].push_back((*node_at)[(p + n - j) % n]);
    }
  }
  for (auto& a : g.adj_) std::sort(a.begin(), a.end());
  return g;
}

Result<std::vector<std::uint32_t>> neighbors_of(const RoundConfig& config, std::uint32_t u) {
  const std::uint32_t n = config.num_clients;
  if (u >= n) return make_error("secagg: client index outside the cohort");
  const std::uint32_t deg = effective_degree(n, config.neighbors);
  std::vector<std::uint32_t> out;
  out.reserve(deg);
  if (deg == n - 1) {
    for (std::uint32_t v = 0; v < n; ++v)
      if (v != u) out.push_back(v);
    return out;
  }
  auto seed = graph_seed(config);
  if (!seed) return seed.error();
  auto node_at = relabelling(n, *seed);
  if (!node_at) return node_at.error();
  const auto p =
      static_cast<std::uint32_t>(std::find(node_at->begin(), node_at->end(), u) - node_at->begin());
  for (std::uint32_t j = 1; j <= deg / 2; ++j) {
    out.push_back((*node_at)[(p + j) % n]);
    out.push_back((*node_at)[(p + n - j) % n]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool NeighborGraph::adjacent(std::uint32_t u, std::uint32_t v) const {
  if (u >= adj_.size()) return false;
  return std::binary_search(adj_[u].begin(), adj_[u].end(), v);
}

// ---------------------------------------------------------------------------------------------
// Key derivation and AAD

Result<Key32> derive_enc_key(const RoundConfig& c, const Key32& my_enc_private,
                             const Key32& peer_enc_public, std::uint32_t a, std::uint32_t b) {
  auto shared = crypto::x25519_agree(my_enc_private, peer_enc_public);
  if (!shared) return shared.error();
  return crypto::hkdf_sha256_key(*shared, c.session_id, pair_info("federa/secagg/v1/enc", c, a, b));
}

Result<Key32> derive_mask_seed(const RoundConfig& c, const Key32& my_mask_private,
                               const Key32& peer_mask_public, std::uint32_t a, std::uint32_t b) {
  auto shared = crypto::x25519_agree(my_mask_private, peer_mask_public);
  if (!shared) return shared.error();
  return crypto::hkdf_sha256_key(*shared, c.session_id,
                                 pair_info("federa/secagg/v1/mask", c, a, b));
}

crypto::Bytes share_aad(const RoundConfig& c, std::uint32_t sender, std::uint32_t recipient) {
  crypto::Bytes aad;
  put_str(aad, "federa/secagg/v1/share");
  aad.insert(aad.end(), c.session_id.begin(), c.session_id.end());
  put_u64(aad, c.round);
  put_u32(aad, sender);
  put_u32(aad, recipient);
  return aad;
}

Key32 self_mask_commitment(const RoundConfig& c, std::uint32_t owner, const Key32& seed) {
  crypto::Bytes m;
  put_str(m, "federa/secagg/v1/commit");
  m.insert(m.end(), c.session_id.begin(), c.session_id.end());
  put_u64(m, c.round);
  put_u32(m, owner);
  m.insert(m.end(), seed.begin(), seed.end());
  return crypto::sha256(m);
}

}  // namespace federa::secagg
