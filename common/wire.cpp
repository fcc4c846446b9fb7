#include "common/wire.hpp"

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
  }
  w.set_hash(layout.hash());
  return w;
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
    TensorSpec t{s.name(), {}};
    std::uint64_t n = 1;
    for (auto d : s.shape()) {
      if (d == 0 || d > kMaxModelElements || n > kMaxModelElements / d)
        return make_error("tensor '" + s.name() + "' has a bad or oversized shape");
      n *= d;
      t.shape.push_back(d);
    }
    total += n;
    if (total > kMaxModelElements) return make_error("layout exceeds the model size limit");
    specs.push_back(std::move(t));
  }
  ModelLayout layout(std::move(specs));
  if (layout.hash() != w.hash()) return make_error("layout hash does not match its tensors");
  return layout;
}

std::uint32_t chunk_count(std::size_t elements, std::size_t chunk_elements) {
  return static_cast<std::uint32_t>((elements + chunk_elements - 1) / chunk_elements);
}

std::vector<wire::Envelope> make_chunks(std::uint64_t round, std::span<const float> data,
                                        std::size_t chunk_elements) {
  std::vector<wire::Envelope> out;
  std::uint32_t n = chunk_count(data.size(), chunk_elements);
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    std::size_t off = std::size_t(i) * chunk_elements;
    std::size_t len = std::min(chunk_elements, data.size() - off);
    wire::Envelope e;
    auto* c = e.mutable_chunk();
    c->set_round(round);
    c->set_index(i);
    c->set_offset(off);
    c->set_data(reinterpret_cast<const char*>(data.data() + off), len * sizeof(float));
    out.push_back(std::move(e));
  }
  return out;
}

Status ChunkAssembler::begin(std::uint64_t round, std::uint64_t total_elements,
                             std::uint32_t num_chunks, std::size_t chunk_elements,
                             std::span<float> dest, bool require_finite,
                             std::span<const float> reference) {
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
  dest_ = dest;
  round_ = round;
  total_ = total_elements;
  num_chunks_ = num_chunks;
  chunk_elements_ = chunk_elements;
  require_finite_ = require_finite;
  reference_ = reference;
  sums_ = SquareSums(!reference.empty());
  next_ = 0;
  active_ = true;
  return {};
}

Status ChunkAssembler::add(const wire::TensorChunk& c) {
  if (!active_) return make_error("chunk without a header");
  if (c.round() != round_)
    return make_error("chunk for round " + std::to_string(c.round()) + ", expected " +
                      std::to_string(round_));
  if (next_ >= num_chunks_) return make_error("more chunks than announced");
  if (c.index() != next_)
    return make_error("chunk " + std::to_string(c.index()) + " out of order, expected " +
                      std::to_string(next_));
  std::uint64_t off = std::uint64_t(next_) * chunk_elements_;
  std::uint64_t len = std::min<std::uint64_t>(chunk_elements_, total_ - off);
  if (c.offset() != off) return make_error("chunk offset does not match its index");
  if (c.data().size() != len * sizeof(float))
    return make_error("chunk " + std::to_string(next_) + " has " + std::to_string(c.data().size()) +
                      " bytes, expected " + std::to_string(len * sizeof(float)));
  float* out = dest_.data() + off;
  std::memcpy(out, c.data().data(), len * sizeof(float));
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
    case wire::Envelope::PAYLOAD_NOT_SET:
      return "empty";
    default:
      return "other";
  }
}

}  // namespace federa
