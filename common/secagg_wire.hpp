// SecAgg+ structs (common/secagg.hpp) <-> protobuf messages (protocols/federa.proto, Envelope
// fields 20..28). from_wire validates sizes before anything is allocated or used: keys must be
// 32 bytes, ciphertexts and shares their exact length, lists no longer than the cohort.
//
//   // coordinator
//   wire::Envelope e;  secagg::to_wire(cfg, client_index, e.mutable_secagg_setup());
//   // client
//   auto setup = secagg::from_wire(e.secagg_setup());      // -> {RoundConfig, index}
//   auto adv = client.advertise_keys();
//   wire::Envelope out;  secagg::to_wire(*adv, out.mutable_secagg_advertise_keys());
//   // masked input: a header envelope, then TensorChunks of uint32 words
//   auto envs = secagg::masked_input_envelopes(*mi);
//   secagg::MaskedInputAssembler in;  in.begin(header, cfg);  in.add(chunk)...;  in.take();
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/secagg.hpp"
#include "common/wire.hpp"
#include "federa.pb.h"

namespace federa::secagg {

struct Setup {
  RoundConfig config;
  std::uint32_t client_index = 0;
};

void to_wire(const RoundConfig& c, std::uint32_t client_index, wire::SecAggSetup* out);
[[nodiscard]] Result<Setup> from_wire(const wire::SecAggSetup& in);  // runs validate()

void to_wire(const AdvertiseKeys& m, wire::SecAggAdvertiseKeys* out);
[[nodiscard]] Result<AdvertiseKeys> from_wire(const wire::SecAggAdvertiseKeys& in);

void to_wire(const KeysBroadcast& m, wire::SecAggKeysBroadcast* out);
[[nodiscard]] Result<KeysBroadcast> from_wire(const wire::SecAggKeysBroadcast& in,
                                              std::uint32_t num_clients);

void to_wire(const ShareKeys& m, wire::SecAggShareKeys* out);
[[nodiscard]] Result<ShareKeys> from_wire(const wire::SecAggShareKeys& in,
                                          std::uint32_t num_clients);

void to_wire(const SharesForward& m, wire::SecAggSharesForward* out);
[[nodiscard]] Result<SharesForward> from_wire(const wire::SecAggSharesForward& in,
                                              std::uint32_t num_clients);

void to_wire(const UnmaskRequest& m, wire::SecAggUnmaskRequest* out);
[[nodiscard]] Result<UnmaskRequest> from_wire(const wire::SecAggUnmaskRequest& in,
                                              std::uint32_t num_clients);

void to_wire(const UnmaskResponse& m, wire::SecAggUnmaskResponse* out);
[[nodiscard]] Result<UnmaskResponse> from_wire(const wire::SecAggUnmaskResponse& in,
                                               std::uint32_t num_clients);

// MaskedInput as Envelopes: one SecAggMaskedInputHeader, then TensorChunks whose data are
// little-endian uint32 words (at most chunk_words each).
std::vector<wire::Envelope> masked_input_envelopes(const MaskedInput& m,
                                                   std::size_t chunk_words = 1u << 20);

// Reassembles one client's masked vector straight into caller-owned memory (an upload slot),
// checking the announced length against the round before anything is written, then every
// chunk's round, order, offset and size.
class MaskedInputAssembler {
 public:
  // `dest` must hold config.masked_length() words.
  [[nodiscard]] Status begin(const wire::SecAggMaskedInputHeader& header, const RoundConfig& config,
                             std::span<std::uint32_t> dest);
  [[nodiscard]] Status add(const ChunkView& chunk);
  [[nodiscard]] Status add(const wire::TensorChunk& chunk) { return add(view_of(chunk)); }
  bool complete() const { return active_ && next_chunk_ == num_chunks_ && filled_ == total_; }

 private:
  std::span<std::uint32_t> dest_;
  std::uint64_t round_ = 0;
  std::uint64_t total_ = 0, filled_ = 0;
  std::uint32_t num_chunks_ = 0, next_chunk_ = 0;
  bool active_ = false;
};

}  // namespace federa::secagg
