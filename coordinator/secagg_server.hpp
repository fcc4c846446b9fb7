// SecAgg+ server: one object per round. The transport feeds it each client's message with the
// authenticated sender index (on_*), and at each phase deadline (or when everyone answered)
// calls end_* to get the messages to send back. A rejected message returns an Error naming the
// client and the reason; the round goes on without that client while thresholds hold. When they
// no longer hold, end_* / finish return the reason and the round is abandoned; nothing that would
// reveal an individual update is ever requested (survivor and dropped lists are disjoint).
//
// Not thread-safe: drive one Server from one strand (finish() uses its own worker threads).
//
// The server stores the public keys, the encrypted shares it relays, and the running mod-2^32
// sum of masked vectors; never a single client's vector, masked or not.
//
//   auto s = secagg::Server::create(config);
//   for each AdvertiseKeys m from client u:  Status st = s->on_advertise_keys(u, m);
//   auto broadcasts = s->end_advertise_keys();   // one KeysBroadcast per remaining client
//   for each ShareKeys m:                    st = s->on_share_keys(u, m);
//   auto forwards = s->end_share_keys();         // one SharesForward per remaining client
//   for each MaskedInput m:                  st = s->on_masked_input(u, m);
//   auto requests = s->end_masked_input();       // one UnmaskRequest per survivor
//   for each UnmaskResponse m:               st = s->on_unmask(u, m);
//   auto result = s->finish();                   // the unmasked sum, decoded
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/result.hpp"
#include "common/secagg.hpp"

namespace federa {
class AggregationBackend;  // coordinator/aggregation_backend.hpp
class U32Sum;
}  // namespace federa

namespace federa::secagg {

struct ServerOptions {
  unsigned threads = 1;  // workers for mask regeneration in finish() (1 or 2 on small hosts)
  // Optional (not owned, must outlive the server): the mod-2^32 sum of masked inputs runs on
  // this backend's U32Sum (the GPU with the CUDA backend) and is read back once, at the end of
  // MaskedInput. Null: summed in host memory.
  AggregationBackend* backend = nullptr;
};

struct AggregateResult {
  std::vector<std::uint32_t> sum;       // sum of the survivors' quantized vectors, mod 2^32
  Decoded decoded;                      // sum w_u clip(x_u) and sum w_u over the survivors
  std::vector<std::uint32_t> included;  // clients whose input is in the sum (sent MaskedInput)
  std::vector<std::uint32_t> dropped;   // sent shares but no MaskedInput; masks removed
  double error_bound = 0.0;             // quantization error bound per coordinate
};

class Server {
 public:
  enum class Phase { advertise_keys, share_keys, masked_input, unmasking, done, abandoned };

  [[nodiscard]] static Result<Server> create(const RoundConfig& config, ServerOptions options = {});

  [[nodiscard]] Status on_advertise_keys(std::uint32_t sender, const AdvertiseKeys& msg);
  [[nodiscard]] Result<std::vector<KeysBroadcast>> end_advertise_keys();
  [[nodiscard]] Status on_share_keys(std::uint32_t sender, const ShareKeys& msg);
  [[nodiscard]] Result<std::vector<SharesForward>> end_share_keys();
  [[nodiscard]] Status on_masked_input(std::uint32_t sender, const MaskedInput& msg);
  // The same, from a reassembled upload slot (the transport checked `sender` against the
  // authenticated connection).
  [[nodiscard]] Status on_masked_input(std::uint32_t sender, std::uint64_t round,
                                       std::span<const std::uint32_t> masked,
                                       std::span<const std::uint32_t> unusable_from = {});
  // `sender` could not use the shares that the clients in `from` sent it (they did not decrypt
  // or parse): it masks without them and holds none of their shares. This counts against each
  // of `from` (blamed()), never against the sender: one that has not sent its MaskedInput yet is
  // treated as dropped and its input refused. Sent with the masked-input header, before the
  // input itself; on_masked_input must then name the same clients.
  [[nodiscard]] Status report_unusable_shares(std::uint32_t sender,
                                              std::span<const std::uint32_t> from);
  // Ok when a MaskedInput from `sender` would be taken now (right phase, completed ShareKeys,
  // none yet): the transport asks before it grants an upload slot.
  [[nodiscard]] Status expect_masked_input(std::uint32_t sender) const;
  [[nodiscard]] Result<std::vector<UnmaskRequest>> end_masked_input();
  [[nodiscard]] Status on_unmask(std::uint32_t sender, const UnmaskResponse& msg);
  [[nodiscard]] Result<AggregateResult> finish();

  Phase phase() const { return phase_; }
  // Clients whose message for the current phase has not arrived (or was rejected) yet: the
  // transport can call end_* as soon as this is empty instead of waiting for the deadline.
  std::vector<std::uint32_t> pending() const;
  const RoundConfig& config() const { return config_; }
  // Clients the round holds responsible for trouble, with the reason: shares that did not
  // decrypt for a neighbour, revealed shares that do not match the owner's commitment or public
  // key. Kept after the round is abandoned, so the coordinator can leave them out of a retry.
  const std::map<std::uint32_t, std::string>& blamed() const { return blamed_; }
  const NeighborGraph& graph() const { return graph_; }
  // What the server holds of the clients' inputs: the running masked sum (for inspection;
  // with a backend, the host copy is filled at the end of MaskedInput).
  std::span<const std::uint32_t> masked_sum() const { return sum_; }

 private:
  explicit Server(const RoundConfig& config, NeighborGraph graph, ServerOptions options);
  Error abandon(std::string reason);
  Status check_phase(Phase expected, const char* what) const;
  Error reject(std::uint32_t sender, const std::string& why) const;
  // True when `holder` took part in MaskedInput with `owner`'s shares usable: it masked with
  // `owner` and can reveal a share of its secrets.
  bool holds(std::uint32_t holder, std::uint32_t owner) const;
  bool reported_unusable(std::uint32_t holder, std::uint32_t owner) const;
  void blame(std::uint32_t client, std::string why);
  Status check_recoverable();  // end of MaskedInput: every mask in the sum can be removed
  // A mask finish() removes: the self mask of a survivor u, or the pair mask between a dropped
  // client u (whose key s_u was reconstructed) and a surviving neighbour v.
  struct MaskJob {
    Key32 key;  // b_u, or s_u (private) for a pair job
    std::uint32_t u = 0;
    std::uint32_t v = 0;
    bool pair = false;
    crypto::PrgOp op = crypto::PrgOp::subtract;
  };
  // Reconstructs the secrets finish() needs (self masks of survivors, mask keys of dropped
  // clients a survivor masked with) and says which masks to remove; fills included/dropped.
  Result<std::vector<MaskJob>> reconstruct_masks(AggregateResult& result);
  Status remove_masks(std::vector<MaskJob>& jobs);

  struct ClientState {
    bool advertised = false;  // U1 (after pruning)
    bool shared = false;      // U2
    bool masked = false;      // U3
    bool answered = false;    // U4 (sent a valid UnmaskResponse)
    bool share_msg_seen = false;
    bool unmask_msg_seen = false;
    bool reported = false;                     // sent its list of unusable shares (possibly empty)
    std::vector<std::uint32_t> unusable_from;  // sorted: neighbours it did not mask with
    AdvertiseKeys keys;
    std::vector<EncryptedShare> inbox;              // shares addressed to this client (relayed)
    std::vector<shamir::Share> b_shares, s_shares;  // revealed shares of this client's secrets
  };

  RoundConfig config_;
  NeighborGraph graph_;
  ServerOptions options_;
  Phase phase_ = Phase::advertise_keys;
  std::string abandon_reason_;
  std::vector<ClientState> clients_;
  std::unordered_set<std::string> seen_tags_;  // AES-GCM tags of relayed shares (replays)
  std::map<std::uint32_t, std::string> blamed_;
  std::vector<std::uint32_t> sum_;
  std::shared_ptr<U32Sum> device_sum_;  // when options_.backend is set
  std::size_t masked_count_ = 0;
};

}  // namespace federa::secagg
