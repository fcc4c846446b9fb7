// SecAgg+ (Bonawitz et al. CCS 2017 with the sparse neighbour graph of Bell et al. CCS 2020):
// what the client side (client/secagg_client.hpp) and the server side
// (coordinator/secagg_server.hpp) share: the round configuration, the phase messages (one struct
// per protobuf message in protocols/federa.proto, field for field), parameter derivation, the
// neighbour graph and the key-derivation / AAD conventions. Transport-free.
//
//   secagg::RoundOptions o;                 // coordinator
//   o.round = 7; o.num_clients = 1000; o.vector_length = model_size; o.dropout = 0.1;
//   auto cfg = secagg::make_round_config(o);            // derives k, t, scale; refuses wraps
//   // send cfg (SecAggSetup) to every client with its index; each client calls
//   Status s = secagg::validate(*cfg);                  // before taking part
//   auto g = secagg::NeighborGraph::create(*cfg);       // same graph on both sides
//   g->neighbors(u);                                    // sorted client indices
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "common/shamir.hpp"

namespace federa::secagg {

using crypto::Key32;

// ---------------------------------------------------------------------------------------------
// Parameters

// k (neighbours) and t (threshold) for n clients, a dropout fraction and a corrupt fraction.
// Derivation (docs/secure-aggregation.md): a client's k neighbours are a uniformly random
// k-subset of the cohort, so the number of corrupt / dropped neighbours is hypergeometric.
//  - security: t is the smallest value with n * P[corrupt neighbours >= t] <= 2^-security_bits
//    (corrupt clients colluding with the server never hold t shares of an honest secret);
//  - correctness: n * P[surviving neighbours < t] <= 2^-failure_bits;
//  - k is the smallest even degree (or n-1, the complete graph) meeting both.
// With 40/20 bits this reproduces the table of Google's federated-compute for n = 1000 and
// 10000 ((30,17), (72,24), (34,20), (86,29)). t is never below 2.
struct GraphParameters {
  std::uint32_t neighbors = 0;
  std::uint32_t threshold = 0;
};
[[nodiscard]] Result<GraphParameters> derive_parameters(std::uint32_t num_clients, double dropout,
                                                        double corrupt, double security_bits = 40.0,
                                                        double failure_bits = 20.0);

// ---------------------------------------------------------------------------------------------
// Quantization: clip to [-clip, clip], multiply by the client's weight w in [0, max_weight] and
// by `scale`, stochastic rounding to an integer, two's complement mod 2^32. Every coordinate is
// bounded by B = ceil(clip * max_weight * scale) + 1, and cohort * B <= 2^31 - 1, so the signed
// sum of the whole cohort can never wrap the ring. The weight itself travels as one extra
// coordinate quantized with scale * clip (same bound), so the server learns sum(w) with sum(w x).
struct QuantConfig {
  double clip = 8.0;
  double max_weight = 1.0;
  double scale = 0.0;  // 0 in make_quant_config: the largest scale that cannot wrap
  std::uint32_t cohort = 0;
};
[[nodiscard]] Result<QuantConfig> make_quant_config(std::uint32_t cohort, double clip,
                                                    double max_weight, double scale = 0.0);
// Refuses configurations whose cohort sum could wrap 2^32.
[[nodiscard]] Status check_quant_config(const QuantConfig& q);
// Worst-case |decoded sum - exact weighted sum| per coordinate for `summed` clients.
double quantization_error_bound(const QuantConfig& q, std::uint32_t summed);
// out has x.size() + 1 words: quantized w*clip(x), then the weight coordinate.
[[nodiscard]] Status quantize(std::span<const float> x, double weight, const QuantConfig& q,
                              std::span<std::uint32_t> out);
struct Decoded {
  std::vector<double> weighted_sum;  // ~ sum_u w_u * clip(x_u)
  double total_weight = 0.0;         // ~ sum_u w_u
};
Decoded dequantize(std::span<const std::uint32_t> sum, const QuantConfig& q);

// ---------------------------------------------------------------------------------------------
// Round configuration (protobuf SecAggSetup; client_index is per recipient, not part of it).

struct RoundConfig {
  std::uint64_t round = 0;
  Key32 session_id{};               // random per round, public: seeds the graph, salts every KDF
  std::uint32_t num_clients = 0;    // cohort size n; clients are indices 0..n-1
  std::uint32_t neighbors = 0;      // graph degree k (n-1: complete graph)
  std::uint32_t threshold = 0;      // t: shares needed to reconstruct a secret
  std::uint64_t vector_length = 0;  // plain update length (the masked vector has one more word)
  QuantConfig quant;
  std::uint32_t min_clients = 0;  // the round is abandoned when fewer clients reach MaskedInput
  std::uint64_t masked_length() const { return vector_length + 1; }
};

struct RoundOptions {
  std::uint64_t round = 0;
  std::uint32_t num_clients = 0;
  std::uint64_t vector_length = 0;
  std::uint32_t neighbors = 0;  // 0: derive (with threshold) from dropout and corrupt
  std::uint32_t threshold = 0;  // 0: derive
  double dropout = 0.1;
  double corrupt = 0.05;
  double clip = 8.0;
  double max_weight = 1.0;
  double scale = 0.0;             // 0: derive from the cohort size
  std::uint32_t min_clients = 0;  // 0: threshold
};
[[nodiscard]] Result<RoundConfig> make_round_config(const RoundOptions& options);
// Structural and safety checks a client runs on a received configuration.
[[nodiscard]] Status validate(const RoundConfig& config);

// ---------------------------------------------------------------------------------------------
// Neighbour graph: the Harary graph H(k, n) (position p adjacent to p±1..p±k/2 mod n) under a
// random relabelling drawn from the session id, so both sides compute the same graph and no
// party chooses its neighbours. Odd k is rounded up; k >= n-1 gives the complete graph.
class NeighborGraph {
 public:
  [[nodiscard]] static Result<NeighborGraph> create(const RoundConfig& config);
  [[nodiscard]] static Result<NeighborGraph> create(std::uint32_t n, std::uint32_t k,
                                                    const Key32& seed);
  std::uint32_t size() const { return static_cast<std::uint32_t>(adj_.size()); }
  std::uint32_t degree() const { return degree_; }
  const std::vector<std::uint32_t>& neighbors(std::uint32_t u) const { return adj_[u]; }
  bool adjacent(std::uint32_t u, std::uint32_t v) const;

 private:
  std::vector<std::vector<std::uint32_t>> adj_;  // sorted
  std::uint32_t degree_ = 0;
};
// One client's neighbours (sorted) without building the whole graph: O(n) time and memory.
[[nodiscard]] Result<std::vector<std::uint32_t>> neighbors_of(const RoundConfig& config,
                                                              std::uint32_t u);
// The degree the graph will actually have for (n, k).
std::uint32_t effective_degree(std::uint32_t n, std::uint32_t k);

// ---------------------------------------------------------------------------------------------
// Phase messages. Each maps 1:1 onto the protobuf message of the same name with a SecAgg prefix.
// `sender` / `recipient` are cohort indices; the transport must check that `sender` is the
// authenticated peer the coordinator assigned that index to.

inline constexpr std::size_t kSharePlaintextBytes = 2 * shamir::kShareBytes;  // b | s shares
inline constexpr std::size_t kShareCiphertextBytes = kSharePlaintextBytes + crypto::kAeadOverhead;

// 1. client -> server
struct AdvertiseKeys {
  std::uint64_t round = 0;
  std::uint32_t sender = 0;
  Key32 enc_public{};            // X25519 key for the share encryption channel (c_u)
  Key32 mask_public{};           // X25519 key for pairwise masks (s_u)
  Key32 self_mask_commitment{};  // SHA-256 commitment to the self-mask seed b_u
};
struct NeighborKeys {
  std::uint32_t index = 0;
  Key32 enc_public{};
  Key32 mask_public{};
};
// 1'. server -> client: the keys of the recipient's neighbours that advertised.
struct KeysBroadcast {
  std::uint64_t round = 0;
  std::uint32_t recipient = 0;
  std::vector<NeighborKeys> neighbors;
};

struct EncryptedShare {
  std::uint32_t sender = 0;
  std::uint32_t recipient = 0;
  crypto::Bytes ciphertext;  // AES-256-GCM(nonce | b-share y | s-share y | tag)
};
// 2. client -> server: one share pair per advertised neighbour.
struct ShareKeys {
  std::uint64_t round = 0;
  std::uint32_t sender = 0;
  std::vector<EncryptedShare> shares;
};
// 2'. server -> client: the shares addressed to the recipient.
struct SharesForward {
  std::uint64_t round = 0;
  std::uint32_t recipient = 0;
  std::vector<EncryptedShare> shares;
};

// 3. client -> server (on the wire: SecAggMaskedInputHeader + uint32 TensorChunks).
struct MaskedInput {
  std::uint64_t round = 0;
  std::uint32_t sender = 0;
  std::vector<std::uint32_t> masked;  // masked_length() words
  // Neighbours whose forwarded shares did not decrypt or parse: the sender did not mask with
  // them and holds none of their shares (on the wire: the header's unusable_shares_from). The
  // server counts this against those neighbours, never against the sender.
  std::vector<std::uint32_t> unusable_from;
};

// 3'. server -> client: which of the recipient's neighbours reached MaskedInput. The two lists
// are disjoint, for every recipient: the server never asks for both shares of one client.
struct UnmaskRequest {
  std::uint64_t round = 0;
  std::uint32_t recipient = 0;
  std::vector<std::uint32_t> survivors;  // reveal their self-mask (b) shares
  std::vector<std::uint32_t> dropped;    // reveal their mask-key (s) shares
};

enum class ShareKind : std::uint32_t { self_mask = 0, mask_key = 1 };
struct RevealedShare {
  std::uint32_t owner = 0;  // whose secret
  ShareKind kind = ShareKind::self_mask;
  std::array<std::uint8_t, shamir::kShareBytes> share{};  // y values; x = sender + 1
};
// 4. client -> server.
struct UnmaskResponse {
  std::uint64_t round = 0;
  std::uint32_t sender = 0;
  std::vector<RevealedShare> shares;
};

// ---------------------------------------------------------------------------------------------
// Conventions shared by both sides (domain-separated by session id, round and the pair).

// Shamir evaluation point of the share held by client v.
inline std::uint32_t share_point(std::uint32_t holder) { return holder + 1; }
[[nodiscard]] Result<Key32> derive_enc_key(const RoundConfig& c, const Key32& my_enc_private,
                                           const Key32& peer_enc_public, std::uint32_t a,
                                           std::uint32_t b);
[[nodiscard]] Result<Key32> derive_mask_seed(const RoundConfig& c, const Key32& my_mask_private,
                                             const Key32& peer_mask_public, std::uint32_t a,
                                             std::uint32_t b);
crypto::Bytes share_aad(const RoundConfig& c, std::uint32_t sender, std::uint32_t recipient);
Key32 self_mask_commitment(const RoundConfig& c, std::uint32_t owner, const Key32& seed);

// Client u adds PRG(s_uv) for neighbours v > u and subtracts it for v < u; summed over both
// ends of an edge the two masks cancel.
inline crypto::PrgOp pair_mask_op(std::uint32_t self, std::uint32_t peer) {
  return self < peer ? crypto::PrgOp::add : crypto::PrgOp::subtract;
}

}  // namespace federa::secagg
