// SecAgg+ client: one object per round, driven through the four phases by the transport.
// Each call validates what the coordinator sent; any Error means the client drops out of the
// round (it has revealed nothing it should not have). Transport-free: messages are the structs
// of common/secagg.hpp, which map 1:1 onto the SecAgg* protobuf messages. Not thread-safe.
//
//   auto c = secagg::Client::create(config, my_index);     // config from SecAggSetup
//   auto adv = c->advertise_keys();                        // -> SecAggAdvertiseKeys
//   auto sk  = c->share_keys(keys_broadcast);              // <- KeysBroadcast, -> ShareKeys
//   auto mi  = c->masked_input(shares_forward, update, w); // <- SharesForward, -> MaskedInput
//   auto ur  = c->unmask(unmask_request);                  // <- UnmaskRequest, -> UnmaskResponse
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "common/secagg.hpp"

namespace federa::secagg {

class Client {
 public:
  enum class Phase { created, advertised, shared, masked, done, failed };

  [[nodiscard]] static Result<Client> create(const RoundConfig& config, std::uint32_t index);
  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  ~Client();

  // Phase 1: fresh X25519 key pairs (c_u for encryption, s_u for masks) and self-mask seed b_u.
  [[nodiscard]] Result<AdvertiseKeys> advertise_keys();
  // Phase 2: t-of-k shares of b_u and s_u for every neighbour that advertised, each pair
  // encrypted to its recipient. Fails if fewer than t neighbours advertised.
  [[nodiscard]] Result<ShareKeys> share_keys(const KeysBroadcast& keys);
  // Phase 3: decrypts the shares addressed to this client, quantizes `update` with `weight`
  // folded in and masks it: y = q + PRG(b_u) ± PRG(s_uv) mod 2^32 over the neighbours whose
  // shares arrived and decrypted. A share that does not decrypt leaves its sender out of the
  // masks and is named in MaskedInput::unusable_from (the server blames the sender); fewer than
  // t usable shares, or shares relayed wrongly by the coordinator, abort.
  // `update` has config.vector_length values.
  [[nodiscard]] Result<MaskedInput> masked_input(const SharesForward& shares,
                                                 std::span<const float> update, double weight);
  // Same, with an already quantized vector (masked_length() words, see secagg::quantize).
  [[nodiscard]] Result<MaskedInput> masked_input_quantized(const SharesForward& shares,
                                                           std::span<const std::uint32_t> q);
  // Phase 4: reveals b-shares of the survivors and s-shares of the dropped, never both for one
  // neighbour, once. Refuses a request that lists a neighbour in both lists, one it holds no
  // share of, leaves one out, or claims fewer than t surviving neighbours.
  [[nodiscard]] Result<UnmaskResponse> unmask(const UnmaskRequest& request);

  Phase phase() const { return phase_; }
  std::uint32_t index() const { return index_; }
  const std::vector<std::uint32_t>& neighbors() const { return neighbors_; }

 private:
  Client() = default;
  template <typename T>
  Result<T> fail(std::string message);

  struct Peer {
    NeighborKeys keys;
    Key32 enc_key{};                 // AES-GCM key for the pair
    bool have_shares = false;        // its shares to us arrived and decrypted
    shamir::Share b_share, s_share;  // our shares of its secrets
  };
  Peer* find_peer(std::uint32_t v);
  // Decrypts and parses one forwarded share into `p`; false when it is unusable.
  bool open_share(Peer& p, const EncryptedShare& es);

  RoundConfig config_;
  std::uint32_t index_ = 0;
  std::vector<std::uint32_t> neighbors_;  // graph neighbours, sorted
  std::vector<Peer> peers_;               // neighbours that advertised, sorted by index
  crypto::X25519KeyPair enc_{}, mask_{};
  Key32 self_seed_{};
  Phase phase_ = Phase::created;
};

}  // namespace federa::secagg
