// The client's side of one SecAgg+ round, as a ClientSession runs it: keys go out as soon as the
// setup arrives (while the model trains), shares as soon as the neighbours' keys are in, and the
// masked, quantized delta once both the trained model and the neighbours' shares are here. It
// turns coordinator envelopes into the envelopes to send back, around secagg::Client (the
// protocol's cryptography, client/secagg_client.hpp); it knows no transport.
//
//   SecureRound sr(round, chunk_words);
//   auto out = sr.on_message(setup_envelope);        // -> AdvertiseKeys
//   out = sr.on_message(keys_broadcast);             // -> ShareKeys
//   out = sr.set_update(global, trained, weight);    // nothing yet: shares missing
//   out = sr.on_message(shares_forward);             // -> masked input header + chunks
//   out = sr.on_message(unmask_request);             // -> UnmaskResponse; finished()
//
// An Error from any call means this client leaves the round, having revealed nothing it should
// not; the session then tells the coordinator and forgets the round. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "client/secagg_client.hpp"
#include "common/result.hpp"
#include "common/secagg_wire.hpp"
#include "federa.pb.h"

namespace federa {

class SecureRound {
 public:
  // `chunk_words`: how many uint32 words each chunk of the masked input carries.
  SecureRound(std::uint64_t round, std::size_t chunk_words);

  std::uint64_t round() const { return round_; }
  // The unmasking request was answered: nothing more is expected of this client.
  bool finished() const { return finished_; }

  // A SecaggSetup, KeysBroadcast, SharesForward or UnmaskRequest of this round.
  [[nodiscard]] Result<std::vector<wire::Envelope>> on_message(const wire::Envelope& msg);
  // The trained model: the update is its difference from `global`, weighted by `weight`
  // (clamped to the round's maximum weight).
  [[nodiscard]] Result<std::vector<wire::Envelope>> set_update(std::span<const float> global,
                                                               std::span<const float> trained,
                                                               double weight);

 private:
  Result<std::vector<wire::Envelope>> on_setup(const wire::SecAggSetup& msg);
  Result<std::vector<wire::Envelope>> on_keys(const wire::SecAggKeysBroadcast& msg);
  Result<std::vector<wire::Envelope>> on_shares(const wire::SecAggSharesForward& msg);
  Result<std::vector<wire::Envelope>> on_unmask(const wire::SecAggUnmaskRequest& msg);
  // The masked input once the shares and the delta are both here; nothing before.
  Result<std::vector<wire::Envelope>> masked_input_when_ready();

  std::uint64_t round_;
  std::size_t chunk_words_;
  std::uint32_t num_clients_ = 0;
  double max_weight_ = 1;
  std::optional<secagg::Client> client_;
  std::optional<secagg::SharesForward> shares_;
  std::optional<std::vector<float>> delta_;
  double weight_ = 1;
  bool masked_sent_ = false;
  bool finished_ = false;
};

// The round a secure-aggregation envelope (coordinator to client) belongs to; nullopt for any
// other payload.
std::optional<std::uint64_t> secure_message_round(const wire::Envelope& msg);

}  // namespace federa
