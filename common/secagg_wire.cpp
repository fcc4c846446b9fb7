#include "common/secagg_wire.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace federa::secagg {
namespace {

std::string key_bytes(const Key32& k) { return std::string(k.begin(), k.end()); }

Status to_key(const std::string& s, const char* what, Key32& out) {
  if (s.size() != out.size())
    return make_error(std::string("secagg wire: ") + what + " has " + std::to_string(s.size()) +
                      " bytes, expected 32");
  std::memcpy(out.data(), s.data(), out.size());
  return Status::success();
}

Status check_index(std::uint32_t v, std::uint32_t n, const char* what) {
  if (v >= n)
    return make_error(std::string("secagg wire: ") + what + " " + std::to_string(v) +
                      " outside the cohort of " + std::to_string(n));
  return Status::success();
}

Status check_count(int count, std::uint32_t n, const char* what) {
  if (count < 0 || static_cast<std::uint64_t>(count) > n)
    return make_error(std::string("secagg wire: too many ") + what);
  return Status::success();
}

template <typename Proto>
void shares_to_wire(const std::vector<EncryptedShare>& shares, Proto* out) {
  for (const EncryptedShare& s : shares) {
    auto* w = out->add_shares();
    w->set_sender(s.sender);
    w->set_recipient(s.recipient);
    w->set_ciphertext(std::string(s.ciphertext.begin(), s.ciphertext.end()));
  }
}

template <typename Proto>
Result<std::vector<EncryptedShare>> shares_from_wire(const Proto& in, std::uint32_t n) {
  if (Status s = check_count(in.shares_size(), n, "shares"); !s) return s.error();
  std::vector<EncryptedShare> out;
  out.reserve(in.shares_size());
  for (const auto& w : in.shares()) {
    if (Status s = check_index(w.sender(), n, "share sender"); !s) return s.error();
    if (Status s = check_index(w.recipient(), n, "share recipient"); !s) return s.error();
    if (w.ciphertext().size() != kShareCiphertextBytes)
      return make_error("secagg wire: encrypted share has " +
                        std::to_string(w.ciphertext().size()) + " bytes, expected " +
                        std::to_string(kShareCiphertextBytes));
    EncryptedShare e;
    e.sender = w.sender();
    e.recipient = w.recipient();
    e.ciphertext.assign(w.ciphertext().begin(), w.ciphertext().end());
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

void to_wire(const RoundConfig& c, std::uint32_t client_index, wire::SecAggSetup* out) {
  out->set_round(c.round);
  out->set_session_id(key_bytes(c.session_id));
  out->set_num_clients(c.num_clients);
  out->set_client_index(client_index);
  out->set_neighbors(c.neighbors);
  out->set_threshold(c.threshold);
  out->set_vector_length(c.vector_length);
  out->set_clip(c.quant.clip);
  out->set_max_weight(c.quant.max_weight);
  out->set_scale(c.quant.scale);
  out->set_min_clients(c.min_clients);
}

Result<Setup> from_wire(const wire::SecAggSetup& in) {
  Setup s;
  RoundConfig& c = s.config;
  c.round = in.round();
  if (Status st = to_key(in.session_id(), "session_id", c.session_id); !st) return st.error();
  c.num_clients = in.num_clients();
  c.neighbors = in.neighbors();
  c.threshold = in.threshold();
  c.vector_length = in.vector_length();
  c.quant = QuantConfig{in.clip(), in.max_weight(), in.scale(), in.num_clients()};
  c.min_clients = in.min_clients();
  if (Status st = validate(c); !st) return st.error();
  if (Status st = check_index(in.client_index(), c.num_clients, "client_index"); !st)
    return st.error();
  s.client_index = in.client_index();
  return s;
}

void to_wire(const AdvertiseKeys& m, wire::SecAggAdvertiseKeys* out) {
  out->set_round(m.round);
  out->set_sender(m.sender);
  out->set_enc_public(key_bytes(m.enc_public));
  out->set_mask_public(key_bytes(m.mask_public));
  out->set_self_mask_commitment(key_bytes(m.self_mask_commitment));
}

Result<AdvertiseKeys> from_wire(const wire::SecAggAdvertiseKeys& in) {
  AdvertiseKeys m;
  m.round = in.round();
  m.sender = in.sender();
  if (Status s = to_key(in.enc_public(), "enc_public", m.enc_public); !s) return s.error();
  if (Status s = to_key(in.mask_public(), "mask_public", m.mask_public); !s) return s.error();
  if (Status s = to_key(in.self_mask_commitment(), "self_mask_commitment", m.self_mask_commitment);
      !s)
    return s.error();
  return m;
}

void to_wire(const KeysBroadcast& m, wire::SecAggKeysBroadcast* out) {
  out->set_round(m.round);
  out->set_recipient(m.recipient);
  for (const NeighborKeys& k : m.neighbors) {
    auto* w = out->add_neighbors();
    w->set_index(k.index);
    w->set_enc_public(key_bytes(k.enc_public));
    w->set_mask_public(key_bytes(k.mask_public));
  }
}

Result<KeysBroadcast> from_wire(const wire::SecAggKeysBroadcast& in, std::uint32_t n) {
  if (Status s = check_count(in.neighbors_size(), n, "neighbours"); !s) return s.error();
  KeysBroadcast m;
  m.round = in.round();
  m.recipient = in.recipient();
  for (const auto& w : in.neighbors()) {
    NeighborKeys k;
    k.index = w.index();
    if (Status s = check_index(k.index, n, "neighbour"); !s) return s.error();
    if (Status s = to_key(w.enc_public(), "enc_public", k.enc_public); !s) return s.error();
    if (Status s = to_key(w.mask_public(), "mask_public", k.mask_public); !s) return s.error();
    m.neighbors.push_back(k);
  }
  return m;
}

void to_wire(const ShareKeys& m, wire::SecAggShareKeys* out) {
  out->set_round(m.round);
  out->set_sender(m.sender);
  shares_to_wire(m.shares, out);
}

Result<ShareKeys> from_wire(const wire::SecAggShareKeys& in, std::uint32_t n) {
  auto shares = shares_from_wire(in, n);
  if (!shares) return shares.error();
  return ShareKeys{in.round(), in.sender(), std::move(*shares)};
}

void to_wire(const SharesForward& m, wire::SecAggSharesForward* out) {
  out->set_round(m.round);
  out->set_recipient(m.recipient);
  shares_to_wire(m.shares, out);
}

Result<SharesForward> from_wire(const wire::SecAggSharesForward& in, std::uint32_t n) {
  auto shares = shares_from_wire(in, n);
  if (!shares) return shares.error();
  return SharesForward{in.round(), in.recipient(), std::move(*shares)};
}

void to_wire(const UnmaskRequest& m, wire::SecAggUnmaskRequest* out) {
  out->set_round(m.round);
  out->set_recipient(m.recipient);
  for (std::uint32_t v : m.survivors) out->add_survivors(v);
  for (std::uint32_t v : m.dropped) out->add_dropped(v);
}

Result<UnmaskRequest> from_wire(const wire::SecAggUnmaskRequest& in, std::uint32_t n) {
  if (Status s = check_count(in.survivors_size() + in.dropped_size(), n, "indices"); !s)
    return s.error();
  UnmaskRequest m;
  m.round = in.round();
  m.recipient = in.recipient();
  for (std::uint32_t v : in.survivors()) {
    if (Status s = check_index(v, n, "survivor"); !s) return s.error();
    m.survivors.push_back(v);
  }
  for (std::uint32_t v : in.dropped()) {
    if (Status s = check_index(v, n, "dropped client"); !s) return s.error();
    m.dropped.push_back(v);
  }
  return m;
}

void to_wire(const UnmaskResponse& m, wire::SecAggUnmaskResponse* out) {
  out->set_round(m.round);
  out->set_sender(m.sender);
  for (const RevealedShare& r : m.shares) {
    auto* w = out->add_shares();
    w->set_owner(r.owner);
    w->set_kind(r.kind == ShareKind::self_mask ? wire::SecAggRevealedShare::SELF_MASK
                                               : wire::SecAggRevealedShare::MASK_KEY);
    w->set_share(std::string(r.share.begin(), r.share.end()));
  }
}

Result<UnmaskResponse> from_wire(const wire::SecAggUnmaskResponse& in, std::uint32_t n) {
  if (Status s = check_count(in.shares_size(), n, "revealed shares"); !s) return s.error();
  UnmaskResponse m;
  m.round = in.round();
  m.sender = in.sender();
  for (const auto& w : in.shares()) {
    RevealedShare r;
    r.owner = w.owner();
    if (Status s = check_index(r.owner, n, "share owner"); !s) return s.error();
    if (w.kind() == wire::SecAggRevealedShare::SELF_MASK)
      r.kind = ShareKind::self_mask;
    else if (w.kind() == wire::SecAggRevealedShare::MASK_KEY)
      r.kind = ShareKind::mask_key;
    else
      return make_error("secagg wire: unknown share kind");
    if (w.share().size() != r.share.size())
      return make_error("secagg wire: revealed share has " + std::to_string(w.share().size()) +
                        " bytes, expected " + std::to_string(r.share.size()));
    std::memcpy(r.share.data(), w.share().data(), r.share.size());
    m.shares.push_back(r);
  }
  return m;
}

std::vector<wire::Envelope> masked_input_envelopes(const MaskedInput& m, std::size_t chunk_words) {
  chunk_words = std::max<std::size_t>(chunk_words, 1);
  const std::size_t total = m.masked.size();
  const auto chunks = static_cast<std::uint32_t>((total + chunk_words - 1) / chunk_words);
  std::vector<wire::Envelope> out(1 + chunks);
  auto* h = out[0].mutable_secagg_masked_input();
  h->set_round(m.round);
  h->set_sender(m.sender);
  h->set_total_elements(total);
  h->set_num_chunks(chunks);
  for (std::uint32_t v : m.unusable_from) h->add_unusable_shares_from(v);
  for (std::uint32_t i = 0; i < chunks; ++i) {
    const std::size_t off = i * chunk_words;
    const std::size_t len = std::min(chunk_words, total - off);
    auto* c = out[1 + i].mutable_chunk();
    c->set_round(m.round);
    c->set_index(i);
    c->set_offset(off);
    std::string data(len * 4, '\0');
    for (std::size_t j = 0; j < len; ++j) {
      const std::uint32_t v = m.masked[off + j];
      for (int b = 0; b < 4; ++b) data[4 * j + b] = static_cast<char>(v >> (8 * b));
    }
    c->set_data(std::move(data));
  }
  return out;
}

Status MaskedInputAssembler::begin(const wire::SecAggMaskedInputHeader& header,
                                   const RoundConfig& config, std::span<std::uint32_t> dest) {
  active_ = false;
  if (header.round() != config.round)
    return make_error("secagg wire: masked input for another round");
  if (header.total_elements() != config.masked_length())
    return make_error("secagg wire: masked input announces " +
                      std::to_string(header.total_elements()) + " words, expected " +
                      std::to_string(config.masked_length()));
  if (header.num_chunks() == 0 || header.num_chunks() > header.total_elements())
    return make_error("secagg wire: masked input announces an impossible chunk count");
  if (std::uint64_t(header.unusable_shares_from_size()) >= config.num_clients)
    return make_error(
        "secagg wire: masked input names more unusable shares than the cohort has clients");
  if (dest.size() != header.total_elements())
    return make_error(ErrorCode::internal, "secagg wire: the upload slot has the wrong size");
  dest_ = dest;
  round_ = header.round();
  total_ = header.total_elements();
  filled_ = 0;
  num_chunks_ = header.num_chunks();
  next_chunk_ = 0;
  active_ = true;
  return Status::success();
}

Status MaskedInputAssembler::add(const ChunkView& chunk) {
  if (!active_) return make_error("secagg wire: chunk without a masked input header");
  if (chunk.round != round_) return make_error("secagg wire: chunk for another round");
  if (chunk.index != next_chunk_ || next_chunk_ >= num_chunks_)
    return make_error("secagg wire: chunk out of order");
  if (chunk.offset != filled_) return make_error("secagg wire: chunk at the wrong offset");
  const std::string_view d = chunk.data;
  if (d.empty() || d.size() % 4 || d.size() / 4 > total_ - filled_)
    return make_error("secagg wire: chunk of the wrong size");
  const std::size_t words = d.size() / 4;
  for (std::size_t j = 0; j < words; ++j) {
    std::uint32_t v = 0;
    for (int b = 0; b < 4; ++b)
      v |= std::uint32_t{static_cast<std::uint8_t>(d[4 * j + b])} << (8 * b);
    dest_[filled_ + j] = v;
  }
  filled_ += words;
  ++next_chunk_;
  if (next_chunk_ == num_chunks_ && filled_ != total_)
    return make_error("secagg wire: chunks end before the announced length");
  return Status::success();
}

}  // namespace federa::secagg
