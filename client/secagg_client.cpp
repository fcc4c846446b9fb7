#include "client/secagg_client.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <string>

namespace federa::secagg {
namespace {
std::string idx(std::uint32_t v) { return std::to_string(v); }
}  // namespace

Client::~Client() {
  OPENSSL_cleanse(enc_.private_key.data(), enc_.private_key.size());
  OPENSSL_cleanse(mask_.private_key.data(), mask_.private_key.size());
  OPENSSL_cleanse(self_seed_.data(), self_seed_.size());
  for (Peer& p : peers_) {
    OPENSSL_cleanse(p.enc_key.data(), p.enc_key.size());
    OPENSSL_cleanse(&p.b_share, sizeof(p.b_share));
    OPENSSL_cleanse(&p.s_share, sizeof(p.s_share));
  }
}

template <typename T>
Result<T> Client::fail(std::string message) {
  phase_ = Phase::failed;
  return make_error("secagg client " + idx(index_) + ": " + message);
}

Client::Peer* Client::find_peer(std::uint32_t v) {
  auto it = std::lower_bound(peers_.begin(), peers_.end(), v,
                             [](const Peer& p, std::uint32_t x) { return p.keys.index < x; });
  return it != peers_.end() && it->keys.index == v ? &*it : nullptr;
}

Result<Client> Client::create(const RoundConfig& config, std::uint32_t index) {
  if (Status s = validate(config); !s) return s.error();
  if (index >= config.num_clients)
    return make_error("secagg client: index " + idx(index) + " outside the cohort of " +
                      idx(config.num_clients));
  auto neighbors = neighbors_of(config, index);
  if (!neighbors) return neighbors.error();
  Client c;
  c.config_ = config;
  c.index_ = index;
  c.neighbors_ = std::move(*neighbors);
  return c;
}

Result<AdvertiseKeys> Client::advertise_keys() {
  if (phase_ != Phase::created) return fail<AdvertiseKeys>("AdvertiseKeys out of order");
  auto enc = crypto::x25519_generate();
  if (!enc) return fail<AdvertiseKeys>(enc.error().message);
  auto mask = crypto::x25519_generate();
  if (!mask) return fail<AdvertiseKeys>(mask.error().message);
  auto seed = crypto::random_key();
  if (!seed) return fail<AdvertiseKeys>(seed.error().message);
  enc_ = *enc;
  mask_ = *mask;
  self_seed_ = *seed;
  AdvertiseKeys msg;
  msg.round = config_.round;
  msg.sender = index_;
  msg.enc_public = enc_.public_key;
  msg.mask_public = mask_.public_key;
  msg.self_mask_commitment = self_mask_commitment(config_, index_, self_seed_);
  phase_ = Phase::advertised;
  return msg;
}

Result<ShareKeys> Client::share_keys(const KeysBroadcast& keys) {
  if (phase_ != Phase::advertised) return fail<ShareKeys>("ShareKeys out of order");
  if (keys.round != config_.round) return fail<ShareKeys>("KeysBroadcast for another round");
  if (keys.recipient != index_) return fail<ShareKeys>("KeysBroadcast for another client");
  peers_.clear();
  for (const NeighborKeys& nk : keys.neighbors) {
    if (!std::binary_search(neighbors_.begin(), neighbors_.end(), nk.index))
      return fail<ShareKeys>("KeysBroadcast lists " + idx(nk.index) + ", not a neighbour");
    Peer p;
    p.keys = nk;
    peers_.push_back(p);
  }
  std::sort(peers_.begin(), peers_.end(),
            [](const Peer& a, const Peer& b) { return a.keys.index < b.keys.index; });
  for (std::size_t i = 1; i < peers_.size(); ++i)
    if (peers_[i].keys.index == peers_[i - 1].keys.index)
      return fail<ShareKeys>("KeysBroadcast lists " + idx(peers_[i].keys.index) + " twice");
  if (peers_.size() < config_.threshold)
    return fail<ShareKeys>("only " + idx(peers_.size()) + " of " + idx(neighbors_.size()) +
                           " neighbours advertised keys, threshold " + idx(config_.threshold));
  std::vector<std::uint32_t> xs;
  xs.reserve(peers_.size());
  for (const Peer& p : peers_) xs.push_back(share_point(p.keys.index));
  auto b_shares = shamir::split(self_seed_, config_.threshold, xs);
  if (!b_shares) return fail<ShareKeys>(b_shares.error().message);
  auto s_shares = shamir::split(mask_.private_key, config_.threshold, xs);
  if (!s_shares) return fail<ShareKeys>(s_shares.error().message);

  ShareKeys out;
  out.round = config_.round;
  out.sender = index_;
  out.shares.reserve(peers_.size());
  std::array<std::uint8_t, kSharePlaintextBytes> plain{};
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    Peer& p = peers_[i];
    auto key = derive_enc_key(config_, enc_.private_key, p.keys.enc_public, index_, p.keys.index);
    if (!key)
      return fail<ShareKeys>("key agreement with " + idx(p.keys.index) + ": " +
                             key.error().message);
    p.enc_key = *key;
    const auto b = shamir::serialize_y((*b_shares)[i]);
    const auto s = shamir::serialize_y((*s_shares)[i]);
    std::copy(b.begin(), b.end(), plain.begin());
    std::copy(s.begin(), s.end(), plain.begin() + shamir::kShareBytes);
    auto ct = crypto::aead_seal(p.enc_key, plain, share_aad(config_, index_, p.keys.index));
    if (!ct) return fail<ShareKeys>(ct.error().message);
    out.shares.push_back(EncryptedShare{index_, p.keys.index, std::move(*ct)});
  }
  OPENSSL_cleanse(plain.data(), plain.size());
  OPENSSL_cleanse(b_shares->data(), b_shares->size() * sizeof(shamir::Share));
  OPENSSL_cleanse(s_shares->data(), s_shares->size() * sizeof(shamir::Share));
  phase_ = Phase::shared;
  return out;
}

bool Client::open_share(Peer& p, const EncryptedShare& es) {
  auto plain = crypto::aead_open(p.enc_key, es.ciphertext, share_aad(config_, es.sender, index_));
  if (!plain) return false;
  bool ok = plain->size() == kSharePlaintextBytes;
  if (ok) {
    const crypto::ByteView view(*plain);
    auto b = shamir::parse_y(share_point(index_), view.first(shamir::kShareBytes));
    auto s = shamir::parse_y(share_point(index_), view.subspan(shamir::kShareBytes));
    ok = b && s;
    if (ok) {
      p.b_share = *b;
      p.s_share = *s;
      p.have_shares = true;
    }
  }
  OPENSSL_cleanse(plain->data(), plain->size());
  return ok;
}

Result<MaskedInput> Client::masked_input(const SharesForward& shares, std::span<const float> update,
                                         double weight) {
  if (phase_ != Phase::shared) return fail<MaskedInput>("MaskedInput out of order");
  if (update.size() != config_.vector_length)
    return fail<MaskedInput>("update has " + idx(update.size()) + " values, the round expects " +
                             std::to_string(config_.vector_length));
  std::vector<std::uint32_t> q(config_.masked_length());
  if (Status s = quantize(update, weight, config_.quant, q); !s)
    return fail<MaskedInput>(s.message());
  return masked_input_quantized(shares, q);
}

Result<MaskedInput> Client::masked_input_quantized(const SharesForward& shares,
                                                   std::span<const std::uint32_t> q) {
  if (phase_ != Phase::shared) return fail<MaskedInput>("MaskedInput out of order");
  if (q.size() != config_.masked_length())
    return fail<MaskedInput>("quantized vector has the wrong length");
  if (shares.round != config_.round) return fail<MaskedInput>("SharesForward for another round");
  if (shares.recipient != index_) return fail<MaskedInput>("SharesForward for another client");
  // A share that does not decrypt (or parse) is its sender's fault, not ours: that neighbour is
  // left out of our masks and named in the MaskedInput, so the server counts it against the
  // sender. What the coordinator relays in the wrong place (another recipient, a non-neighbour,
  // twice) is the coordinator's fault and ends our part in the round.
  std::vector<std::uint32_t> unusable;
  for (const EncryptedShare& es : shares.shares) {
    if (es.recipient != index_) return fail<MaskedInput>("forwarded share for another client");
    Peer* p = find_peer(es.sender);
    if (!p)
      return fail<MaskedInput>("share from " + idx(es.sender) + ", not an advertised neighbour");
    if (p->have_shares || std::count(unusable.begin(), unusable.end(), es.sender))
      return fail<MaskedInput>("second share from " + idx(es.sender));
    if (!open_share(*p, es)) unusable.push_back(es.sender);
  }
  std::size_t received = 0;
  for (const Peer& p : peers_) received += p.have_shares;
  if (received < config_.threshold)
    return fail<MaskedInput>("usable shares from only " + idx(received) + " neighbours (" +
                             idx(unusable.size()) + " did not decrypt), threshold " +
                             idx(config_.threshold));

  MaskedInput out;
  out.round = config_.round;
  out.sender = index_;
  out.unusable_from = std::move(unusable);
  out.masked.assign(q.begin(), q.end());
  if (Status s = crypto::prg_accumulate(self_seed_, out.masked, crypto::PrgOp::add); !s)
    return fail<MaskedInput>(s.message());
  for (const Peer& p : peers_) {
    if (!p.have_shares) continue;
    auto seed =
        derive_mask_seed(config_, mask_.private_key, p.keys.mask_public, index_, p.keys.index);
    if (!seed)
      return fail<MaskedInput>("mask agreement with " + idx(p.keys.index) + ": " +
                               seed.error().message);
    if (Status s = crypto::prg_accumulate(*seed, out.masked, pair_mask_op(index_, p.keys.index));
        !s)
      return fail<MaskedInput>(s.message());
    OPENSSL_cleanse(seed->data(), seed->size());
  }
  phase_ = Phase::masked;
  return out;
}

Result<UnmaskResponse> Client::unmask(const UnmaskRequest& request) {
  if (phase_ == Phase::done) return fail<UnmaskResponse>("Unmasking already answered");
  if (phase_ != Phase::masked) return fail<UnmaskResponse>("Unmasking out of order");
  if (request.round != config_.round)
    return fail<UnmaskResponse>("UnmaskRequest for another round");
  if (request.recipient != index_) return fail<UnmaskResponse>("UnmaskRequest for another client");
  // Every neighbour we hold shares of must appear in exactly one list.
  std::vector<int> seen(peers_.size(), 0);
  auto mark = [&](std::uint32_t v) -> Status {
    Peer* p = find_peer(v);
    if (!p || !p->have_shares)
      return make_error("UnmaskRequest names " + idx(v) +
                        ", whose shares this client does not hold");
    if (seen[p - peers_.data()]++)
      return make_error("UnmaskRequest names " + idx(v) +
                        " twice (or as both survivor and dropped)");
    return Status::success();
  };
  for (std::uint32_t v : request.survivors)
    if (Status s = mark(v); !s) return fail<UnmaskResponse>(s.message());
  for (std::uint32_t v : request.dropped)
    if (Status s = mark(v); !s) return fail<UnmaskResponse>(s.message());
  for (std::size_t i = 0; i < peers_.size(); ++i)
    if (peers_[i].have_shares && !seen[i])
      return fail<UnmaskResponse>("UnmaskRequest leaves out neighbour " +
                                  idx(peers_[i].keys.index));
  if (request.survivors.size() < config_.threshold)
    return fail<UnmaskResponse>("only " + idx(request.survivors.size()) +
                                " neighbours claimed alive, threshold " + idx(config_.threshold));
  UnmaskResponse out;
  out.round = config_.round;
  out.sender = index_;
  for (std::uint32_t v : request.survivors)
    out.shares.push_back({v, ShareKind::self_mask, shamir::serialize_y(find_peer(v)->b_share)});
  for (std::uint32_t v : request.dropped)
    out.shares.push_back({v, ShareKind::mask_key, shamir::serialize_y(find_peer(v)->s_share)});
  phase_ = Phase::done;
  return out;
}

}  // namespace federa::secagg
