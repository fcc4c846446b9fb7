#include "common/wire.hpp"

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace federa {

wire::TrainConfig to_wire(const TrainConfig& c) {
  wire::TrainConfig w;
  w.set_model(c.model);
  w.set_local_epochs(c.local_epochs);
  w.set_batch_size(c.batch_size);
  w.set_lr(c.lr);
  w.set_momentum(c.momentum);
  w.set_weight_decay(c.weight_decay);
  w.set_proximal_mu(c.proximal_mu);
  w.set_seed(c.seed);
  for (const auto& [k, v] : c.extra) (*w.mutable_extra())[k] = v;
  return w;
}

TrainConfig from_wire(const wire::TrainConfig& w) {
  TrainConfig c;
  c.model = w.model();
  c.local_epochs = w.local_epochs();
  c.batch_size = w.batch_size();
  c.lr = w.lr();
  c.momentum = w.momentum();
  c.weight_decay = w.weight_decay();
  c.proximal_mu = w.proximal_mu();
  c.seed = w.seed();
  for (const auto& [k, v] : w.extra()) c.extra[k] = v;
  return c;
}

wire::Layout to_wire(const ModelLayout& layout) {
  wire::Layout w;
  for (const auto& t : layout.tensors()) {
    auto* s = w.add_tensors();
    s->set_name(t.name);
    for (auto d : t.shape) s->add_shape(d);
    s->set_dtype(static_cast<wire::DType>(t.dtype));  // the enums share their numbering
  }
  w.set_hash(layout.hash());
  return w;
}

Status check_wire_layout(const ModelLayout& layout) {
  if (layout.tensors().empty()) return make_error("layout has no tensors");
  if (layout.tensors().size() > 10000) return make_error("layout has more than 10000 tensors");
  for (const auto& t : layout.tensors()) {
    if (t.name.empty() || t.name.size() > 256)
      return make_error("layout has a tensor with a bad name (1 to 256 bytes)");
    if (t.shape.size() > 8) return make_error("tensor '" + t.name + "' has more than 8 dimensions");
  }
  if (layout.size() > kMaxModelElements) return make_error("layout exceeds the model size limit");
  if (layout.size() == 0)
    return make_error("the model has no floating-point (F32, F16, BF16) values to aggregate");
  if (layout.carried_bytes() > kMaxCarriedBytes)
    return make_error("the model's integer tensors take " + std::to_string(layout.carried_bytes()) +
                      " bytes, more than the " + std::to_string(kMaxCarriedBytes) +
                      " a task can carry");
  return {};
}

Result<ModelLayout> from_wire(const wire::Layout& w) {
  if (w.tensors_size() == 0) return make_error("layout has no tensors");
  if (w.tensors_size() > 10000) return make_error("layout has more than 10000 tensors");
  std::vector<TensorSpec> specs;
  std::uint64_t total = 0;
  for (const auto& s : w.tensors()) {
    if (s.name().empty() || s.name().size() > 256)
      return make_error("layout has a tensor with a bad name");
    if (s.shape_size() > 8)
      return make_error("tensor '" + s.name() + "' has more than 8 dimensions");
    if (s.dtype() < 0 || s.dtype() > wire::DTYPE_BOOL)
      return make_error("tensor '" + s.name() + "' has an unknown dtype " +
                        std::to_string(s.dtype()) + " (upgrade federa)");
    TensorSpec t{s.name(), {}, static_cast<DType>(s.dtype())};
    std::uint64_t n = 1;
    for (auto d : s.shape()) {
      if (d > kMaxModelElements || (d != 0 && n > kMaxModelElements / d))
        return make_error("tensor '" + s.name() + "' has a bad or oversized shape");
      n *= d;
      t.shape.push_back(d);
    }
    total += n;
    if (total > kMaxModelElements) return make_error("layout exceeds the model size limit");
    specs.push_back(std::move(t));
  }
  ModelLayout layout(std::move(specs));
  if (Status s = check_wire_layout(layout); !s) return s.error();
  if (layout.hash() != w.hash()) return make_error("layout hash does not match its tensors");
  return layout;
}

std::uint32_t chunk_count(std::size_t elements, std::size_t chunk_elements) {
  return static_cast<std::uint32_t>((elements + chunk_elements - 1) / chunk_elements);
}

namespace {

bool all_f32(std::span<const DTypeRun> runs) {
  return std::all_of(runs.begin(), runs.end(),
                     [](const DTypeRun& r) { return r.dtype == DType::f32; });
}

// Walks `count` elements from the cursor (run index, elements of it used), calling
// f(dtype, n) for each piece that lies in one run. Elements past the last run count as F32.
template <typename F>
void walk_runs(std::span<const DTypeRun> runs, std::size_t& run, std::uint64_t& used,
               std::uint64_t count, F&& f) {
  while (count > 0) {
    if (run >= runs.size()) {
      f(DType::f32, count);
      return;
    }
    const std::uint64_t n = std::min(count, runs[run].elements - used);
    f(runs[run].dtype, n);
    used += n;
    count -= n;
    if (used == runs[run].elements) {
      ++run;
      used = 0;
    }
  }
}

std::uint64_t bytes_from(std::span<const DTypeRun> runs, std::size_t run, std::uint64_t used,
                         std::uint64_t count) {
  std::uint64_t bytes = 0;
  walk_runs(runs, run, used, count, [&](DType d, std::uint64_t n) { bytes += n * dtype_size(d); });
  return bytes;
}

}  // namespace

std::uint64_t wire_bytes(std::span<const DTypeRun> runs, std::uint64_t first, std::uint64_t count) {
  std::size_t run = 0;
  std::uint64_t used = 0;
  walk_runs(runs, run, used, first, [](DType, std::uint64_t) {});
  return bytes_from(runs, run, used, count);
}

wire::Envelope make_chunk(std::uint64_t round, std::span<const float> data,
                          std::size_t chunk_elements, std::span<const DTypeRun> runs,
                          std::uint32_t index) {
  const std::size_t off = std::size_t(index) * chunk_elements;
  const std::size_t len = std::min(chunk_elements, data.size() - off);
  wire::Envelope e;
  auto* c = e.mutable_chunk();
  c->set_round(round);
  c->set_index(index);
  c->set_offset(off);
  if (all_f32(runs)) {
    c->set_data(reinterpret_cast<const char*>(data.data() + off), len * sizeof(float));
    return e;
  }
  std::size_t run = 0;
  std::uint64_t used = 0;
  walk_runs(runs, run, used, off, [](DType, std::uint64_t) {});  // to the chunk's first element
  std::string bytes(bytes_from(runs, run, used, len), '\0');
  auto* to = reinterpret_cast<std::uint8_t*>(bytes.data());
  const float* from = data.data() + off;
  walk_runs(runs, run, used, len, [&](DType d, std::uint64_t k) {
    encode_floats(d, from, k, to);
    from += k;
    to += k * dtype_size(d);
  });
  c->set_data(std::move(bytes));
  return e;
}

namespace {
using google::protobuf::io::CodedOutputStream;
// Protobuf's own varint writer and size, and a field's tag (field number << 3 | wire type).
void put_varint(std::string& out, std::uint64_t v) {
  std::uint8_t buf[10];  // a 64-bit varint's most
  const std::uint8_t* end = CodedOutputStream::WriteVarint64ToArray(v, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(end - buf));
}
std::size_t varint_size(std::uint64_t v) { return CodedOutputStream::VarintSize64(v); }
constexpr std::uint64_t tag(std::uint32_t field, std::uint32_t type) {
  return (std::uint64_t{field} << 3) | type;
}
constexpr std::uint32_t kVarint = 0, kLen = 2;
}  // namespace

ChunkView view_of(const wire::TensorChunk& chunk) {
  return {chunk.round(), chunk.index(), chunk.offset(), chunk.data()};
}

namespace {
// Reads a varint at `at`: at most 10 bytes, the 10th holding only the top bit. Stricter than
// protobuf on purpose: what this declines goes to protobuf's parser, and what it accepts
// protobuf reads the same way (test_wire's random edits and the envelope fuzzer check that).
bool get_varint(std::string_view b, std::size_t& at, std::uint64_t& v) {
  v = 0;
  for (unsigned shift = 0; shift < 64 && at < b.size(); shift += 7) {
    const auto byte = static_cast<std::uint8_t>(b[at++]);
    if (shift == 63 && byte > 1) return false;
    v |= std::uint64_t{byte & 0x7fu} << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}
}  // namespace

std::optional<ChunkView> parse_chunk_envelope(std::string_view b) {
  std::size_t at = 0;
  std::uint64_t key = 0, len = 0;
  if (!get_varint(b, at, key) || key != tag(wire::Envelope::kChunkFieldNumber, kLen)) return {};
  if (!get_varint(b, at, len) || len != b.size() - at) return {};  // the chunk is all there is
  ChunkView c;
  unsigned seen = 0;  // field numbers met, as bits: a repeated field goes to protobuf
  while (at < b.size()) {
    if (!get_varint(b, at, key) || key >> 3 < 1 || key >> 3 > 4) return {};
    const auto field = static_cast<unsigned>(key >> 3);
    if (seen & (1u << field)) return {};
    seen |= 1u << field;
    std::uint64_t v = 0;
    if (field == wire::TensorChunk::kDataFieldNumber) {
      if (key != tag(field, kLen) || !get_varint(b, at, v) || v > b.size() - at) return {};
      c.data = b.substr(at, v);
      at += v;
      continue;
    }
    if (key != tag(field, kVarint) || !get_varint(b, at, v)) return {};
    if (field == wire::TensorChunk::kRoundFieldNumber) c.round = v;
    if (field == wire::TensorChunk::kOffsetFieldNumber) c.offset = v;
    if (field == wire::TensorChunk::kIndexFieldNumber) {
      if (v > UINT32_MAX) return {};  // protobuf would truncate it
      c.index = static_cast<std::uint32_t>(v);
    }
  }
  return c;
}

std::string serialize_chunk(std::uint64_t round, std::span<const float> data,
                            std::size_t chunk_elements, std::span<const DTypeRun> runs,
                            std::uint32_t index) {
  std::string out;
  if (!all_f32(runs)) {
    make_chunk(round, data, chunk_elements, runs, index).SerializeToString(&out);
    return out;
  }
  const std::size_t off = std::size_t(index) * chunk_elements;
  const std::size_t bytes = std::min(chunk_elements, data.size() - off) * sizeof(float);
  // TensorChunk{round = 1, index = 2, offset = 3, data = 4} inside Envelope.chunk = 4, in field
  // order, zero scalars and empty bytes left out: byte for byte what protobuf writes.
  std::size_t inner = 0;
  if (round) inner += 1 + varint_size(round);
  if (index) inner += 1 + varint_size(index);
  if (off) inner += 1 + varint_size(off);
  if (bytes) inner += 1 + varint_size(bytes) + bytes;
  out.reserve(1 + varint_size(inner) + inner);
  put_varint(out, tag(wire::Envelope::kChunkFieldNumber, kLen));
  put_varint(out, inner);
  auto scalar = [&out](std::uint32_t field, std::uint64_t v) {
    if (v == 0) return;
    put_varint(out, tag(field, kVarint));
    put_varint(out, v);
  };
  scalar(wire::TensorChunk::kRoundFieldNumber, round);
  scalar(wire::TensorChunk::kIndexFieldNumber, index);
  scalar(wire::TensorChunk::kOffsetFieldNumber, off);
  if (bytes) {
    put_varint(out, tag(wire::TensorChunk::kDataFieldNumber, kLen));
    put_varint(out, bytes);
    out.append(reinterpret_cast<const char*>(data.data() + off), bytes);
  }
  return out;
}

std::vector<wire::Envelope> make_chunks(std::uint64_t round, std::span<const float> data,
                                        std::size_t chunk_elements,
                                        std::span<const DTypeRun> runs) {
  const std::uint32_t n = chunk_count(data.size(), chunk_elements);
  std::vector<wire::Envelope> out;
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i)
    out.push_back(make_chunk(round, data, chunk_elements, runs, i));
  return out;
}

Status ChunkAssembler::begin(std::uint64_t round, std::uint64_t total_elements,
                             std::uint32_t num_chunks, std::size_t chunk_elements,
                             std::span<float> dest, bool require_finite,
                             std::span<const float> reference, std::span<const DTypeRun> runs) {
  active_ = false;
  if (!reference.empty() && reference.size() != dest.size())
    return make_error(ErrorCode::invalid_argument,
                      "reference has " + std::to_string(reference.size()) +
                          " elements, the destination " + std::to_string(dest.size()));
  if (total_elements != dest.size())
    return make_error("announced " + std::to_string(total_elements) + " elements, expected " +
                      std::to_string(dest.size()));
  if (chunk_elements == 0 || chunk_elements > kMaxChunkElements)
    return make_error("chunk size out of range");
  if (num_chunks != chunk_count(total_elements, chunk_elements))
    return make_error("announced " + std::to_string(num_chunks) + " chunks, expected " +
                      std::to_string(chunk_count(total_elements, chunk_elements)));
  std::uint64_t typed = 0;
  for (const auto& r : runs) typed += r.elements;
  if (!runs.empty() && typed != total_elements)
    return make_error(ErrorCode::invalid_argument,
                      "the layout's dtypes cover " + std::to_string(typed) +
                          " elements, the vector has " + std::to_string(total_elements));
  dest_ = dest;
  round_ = round;
  total_ = total_elements;
  num_chunks_ = num_chunks;
  chunk_elements_ = chunk_elements;
  require_finite_ = require_finite;
  reference_ = reference;
  runs_ = all_f32(runs) ? std::span<const DTypeRun>{} : runs;
  run_ = 0;
  run_used_ = 0;
  sums_ = SquareSums(!reference.empty());
  next_ = 0;
  active_ = true;
  return {};
}

Status ChunkAssembler::add(const ChunkView& c) {
  if (!active_) return make_error("chunk without a header");
  if (c.round != round_)
    return make_error("chunk for round " + std::to_string(c.round) + ", expected " +
                      std::to_string(round_));
  if (next_ >= num_chunks_) return make_error("more chunks than announced");
  if (c.index != next_)
    return make_error("chunk " + std::to_string(c.index) + " out of order, expected " +
                      std::to_string(next_));
  std::uint64_t off = std::uint64_t(next_) * chunk_elements_;
  std::uint64_t len = std::min<std::uint64_t>(chunk_elements_, total_ - off);
  if (c.offset != off) return make_error("chunk offset does not match its index");
  const std::uint64_t bytes =
      runs_.empty() ? len * sizeof(float) : bytes_from(runs_, run_, run_used_, len);
  if (c.data.size() != bytes)
    return make_error("chunk " + std::to_string(next_) + " has " + std::to_string(c.data.size()) +
                      " bytes, expected " + std::to_string(bytes));
  float* out = dest_.data() + off;
  if (runs_.empty()) {
    std::memcpy(out, c.data.data(), bytes);
  } else {
    const auto* from = reinterpret_cast<const std::uint8_t*>(c.data.data());
    float* to = out;
    walk_runs(runs_, run_, run_used_, len, [&](DType d, std::uint64_t k) {
      decode_floats(d, from, k, to);
      from += k * dtype_size(d);
      to += k;
    });
  }
  // The sums are taken from the copy, still in cache. A finite float's square cannot overflow a
  // double, so a non-finite running sum means a non-finite value: only then look for it.
  const double before = sums_.sum_sq();
  sums_.add(out, reference_.empty() ? nullptr : reference_.data() + off, len);
  if (require_finite_ && !std::isfinite(sums_.sum_sq())) {
    std::uint64_t i = 0;
    while (i < len && std::isfinite(out[i])) ++i;
    if (std::isfinite(before) && i < len)
      return make_error(ErrorCode::invalid_argument,
                        "non-finite value at element " + std::to_string(off + i));
    return make_error(ErrorCode::invalid_argument,
                      "non-finite value in chunk " + std::to_string(next_));
  }
  ++next_;
  return {};
}

UpdateFacts ChunkAssembler::facts() const {
  UpdateFacts f;
  f.finite = require_finite_ && active_ && std::isfinite(sums_.sum_sq());
  f.sum_sq = sums_.sum_sq();
  f.sum_sq_delta = sums_.sum_sq_delta();
  return f;
}

wire::Envelope make_error_envelope(wire::Error::Code code, const std::string& message) {
  wire::Envelope e;
  e.mutable_error()->set_code(code);
  e.mutable_error()->set_message(message);
  return e;
}

const char* payload_name(const wire::Envelope& e) {
  switch (e.payload_case()) {
    case wire::Envelope::kHello:
      return "hello";
    case wire::Envelope::kWelcome:
      return "welcome";
    case wire::Envelope::kFitTask:
      return "fit_task";
    case wire::Envelope::kChunk:
      return "chunk";
    case wire::Envelope::kUpdateHeader:
      return "update_header";
    case wire::Envelope::kError:
      return "error";
    case wire::Envelope::kBye:
      return "bye";
    case wire::Envelope::kUploadReady:
      return "upload_ready";
    case wire::Envelope::kEvaluateTask:
      return "evaluate_task";
    case wire::Envelope::kEvaluateResult:
      return "evaluate_result";
    case wire::Envelope::kTableReport:
      return "table_report";
    case wire::Envelope::kStatisticsTask:
      return "statistics_task";
    case wire::Envelope::kStatisticsResult:
      return "statistics_result";
    case wire::Envelope::PAYLOAD_NOT_SET:
      return "empty";
    default:
      return "other";
  }
}

}  // namespace federa
