// Helpers around the wire protocol (protocols/federa.proto): protocol constants, conversions
// between wire messages and federa types, and tensor chunking with validation on reassembly.
//
//   auto chunks = make_chunks(round, weights);                 // <= 1 MiB of data each
//   auto bf16 = make_chunks(round, weights, kDefaultChunkElements, layout.float_runs());
//   ChunkAssembler in;  in.begin(round, total, num_chunks, chunk_elems, dest);
//   for (each received chunk) if (Status s = in.add(chunk); !s) reject(s.message());
//   if (in.complete()) use(dest);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/model.hpp"
#include "common/result.hpp"
#include "common/train_config.hpp"
#include "common/update_facts.hpp"
#include "federa.pb.h"

namespace federa {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kDefaultChunkElements = 1u << 18;  // 1 MiB of float32
inline constexpr std::size_t kMaxChunkElements = 1u << 22;      // 16 MiB, hard cap
// Largest WebSocket message either side accepts: one full chunk plus protobuf framing.
inline constexpr std::size_t kMaxMessageBytes = kMaxChunkElements * 4 + (1u << 16);
// Largest model either side accepts (elements): 4 G floats would exceed sane memory anyway.
inline constexpr std::uint64_t kMaxModelElements = 1ull << 31;
// Largest total of carried (integer) tensors: they travel inside the task message, not in chunks.
inline constexpr std::uint64_t kMaxCarriedBytes = 8ull << 20;

wire::TrainConfig to_wire(const TrainConfig& c);
TrainConfig from_wire(const wire::TrainConfig& c);
wire::Layout to_wire(const ModelLayout& layout);
// Validates names, shapes, dtypes and the size limits; the hash must match the recomputed one.
Result<ModelLayout> from_wire(const wire::Layout& layout);
// Whether a layout can travel (what from_wire checks): a coordinator refuses a --model that
// cannot at startup rather than when it first broadcasts it.
Status check_wire_layout(const ModelLayout& layout);

std::uint32_t chunk_count(std::size_t elements, std::size_t chunk_elements);

// Bytes that elements [first, first + count) of a float vector take on the wire under `runs`
// (a layout's float_runs(); empty = all F32).
std::uint64_t wire_bytes(std::span<const DTypeRun> runs, std::uint64_t first, std::uint64_t count);

// Chunk `index` of `data` (what make_chunks would return at that index), so a sender can encode
// one chunk at a time instead of holding all of them.
wire::Envelope make_chunk(std::uint64_t round, std::span<const float> data,
                          std::size_t chunk_elements, std::span<const DTypeRun> runs,
                          std::uint32_t index);

// The same chunk as serialized Envelope bytes (what make_chunk(...).SerializeToString gives),
// made with one allocation and one copy of the data where every element is F32.
std::string serialize_chunk(std::uint64_t round, std::span<const float> data,
                            std::size_t chunk_elements, std::span<const DTypeRun> runs,
                            std::uint32_t index);

// Splits `data` into TensorChunk envelopes of at most `chunk_elements` values, each value in the
// dtype `runs` gives it (a layout's float_runs(); empty = all F32).
std::vector<wire::Envelope> make_chunks(std::uint64_t round, std::span<const float> data,
                                        std::size_t chunk_elements = kDefaultChunkElements,
                                        std::span<const DTypeRun> runs = {});

// A TensorChunk's fields, its data still where it was received (no copy).
struct ChunkView {
  std::uint64_t round = 0;
  std::uint32_t index = 0;
  std::uint64_t offset = 0;
  std::string_view data;
};
ChunkView view_of(const wire::TensorChunk& chunk);

// The chunk in `bytes` when they are an Envelope holding only a TensorChunk, in the form
// protobuf writes (each field once, known field numbers and wire types, varints within range);
// nullopt for anything else, which the caller then parses with protobuf as usual. What it
// returns is what protobuf's parse would give.
std::optional<ChunkView> parse_chunk_envelope(std::string_view bytes);

// Reassembles a chunked float vector straight into caller-owned memory, checking every chunk
// before it is copied: round, order, offset, size and finite values. While it copies it also
// sums squares (common/update_facts.hpp: a fixed order, the same bits however the vector was
// chunked), so the coordinator can hand the aggregation backend an update it need not read
// twice:
//
//   in.begin(round, total, num_chunks, chunk_elems, pinned_buffer, true, global_model);
//   ... in.add(chunk) until in.complete() ...
//   ClientUpdate u{id, n, pinned_buffer};  u.known = in.facts();  // finite, |x|^2, |x - global|^2
//
// Memory: none of its own.
class ChunkAssembler {
 public:
  // Fails when the announced sizes are inconsistent or exceed the destination. A non-empty
  // `reference` (the size of dest) adds the sum of (x - reference)^2 to facts(); it must stay
  // alive and unchanged until the upload is complete. `runs` (a layout's float_runs(), kept
  // alive likewise; empty = all F32) says which dtype each element arrives in: chunks are
  // converted to float32 as they are copied into dest.
  Status begin(std::uint64_t round, std::uint64_t total_elements, std::uint32_t num_chunks,
               std::size_t chunk_elements, std::span<float> dest, bool require_finite = true,
               std::span<const float> reference = {}, std::span<const DTypeRun> runs = {});
  Status add(const ChunkView& chunk);
  Status add(const wire::TensorChunk& chunk) { return add(view_of(chunk)); }
  bool complete() const { return active_ && next_ == num_chunks_; }
  void reset() { active_ = false; }
  // What was learnt while copying: finite (when begun with require_finite), the sum of squares
  // and, with a reference, of the change. Sums cover the chunks added so far; complete() first.
  UpdateFacts facts() const;

 private:
  std::span<float> dest_;
  std::span<const float> reference_;
  std::span<const DTypeRun> runs_;  // empty when every element is F32
  std::size_t run_ = 0;             // the run holding the next element
  std::uint64_t run_used_ = 0;      // elements of runs_[run_] already taken
  SquareSums sums_;
  std::uint64_t round_ = 0;
  std::uint64_t total_ = 0;
  std::uint32_t num_chunks_ = 0;
  std::uint32_t next_ = 0;
  std::size_t chunk_elements_ = 0;
  bool require_finite_ = true;
  bool active_ = false;
};

// An Error envelope: how either side says why it refuses something.
wire::Envelope make_error_envelope(wire::Error::Code code, const std::string& message);

// A short human description of an envelope's payload, for logs ("fit_task", "chunk", ...).
const char* payload_name(const wire::Envelope& e);

}  // namespace federa
