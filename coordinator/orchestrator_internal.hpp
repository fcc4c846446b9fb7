// The orchestrator's private per-round structures, shared by its implementation files only.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/secagg_wire.hpp"
#include "common/wire.hpp"
#include "coordinator/orchestrator.hpp"

namespace federa {

// What a FitTask and an EvaluateTask both say about the model that follows them in chunks.
template <typename Task>
void describe_model(Task& t, const Model& model, std::size_t chunk_elements) {
  *t.mutable_layout() = to_wire(model.layout);
  t.set_total_elements(model.data.size());
  t.set_num_chunks(chunk_count(model.data.size(), chunk_elements));
  t.set_chunk_elements(static_cast<std::uint32_t>(chunk_elements));
  t.set_carried(model.carried.data(), model.carried.size());
}

// One announced update: waiting for a slot, then receiving chunks into the slot's buffer.
struct Orchestrator::Upload {
  ~Upload();  // returns the buffer to the pool
  UploadPool* pool = nullptr;
  std::string client;
  std::uint64_t generation = 0;
  std::uint64_t round = 0;
  std::uint64_t num_examples = 0;
  std::unique_ptr<UploadBuffer> buffer;  // null while waiting for a slot
  Clock::time_point last_progress;
  // Plain update.
  std::span<float> floats;
  ChunkAssembler assembler;
  // SecAgg+ masked input.
  bool secure = false;
  std::uint32_t index = 0;  // cohort index
  wire::SecAggMaskedInputHeader masked_header;
  std::span<std::uint32_t> words;
  secagg::MaskedInputAssembler masked;
};

// A SecAgg+ round. The protocol object lives on the aggregation worker; the rest is read and
// written under the orchestrator's state lock.
struct Orchestrator::SecureState {
  enum class Phase { advertise_keys, share_keys, masked_input, unmasking, done };
  std::optional<secagg::Server> server;  // the worker's alone once the round is open
  secagg::RoundConfig config;
  std::map<std::string, std::uint32_t> index;
  std::vector<std::string> ids;
  Phase phase = Phase::advertise_keys;
  std::set<std::uint32_t> expected;  // who the current phase waits for
  std::set<std::uint32_t> answered;  // answered (or failed) in the current phase
  std::set<std::uint32_t> may_mask;  // completed ShareKeys: may send a masked input
  std::set<std::uint32_t> masking;   // sent a masked-input header this round
  std::map<std::string, int> rejected_messages;
  std::map<std::string, std::string> failures;  // why a client left the protocol
};

}  // namespace federa
