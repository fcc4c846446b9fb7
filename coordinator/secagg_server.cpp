#include "coordinator/secagg_server.hpp"

#include "coordinator/aggregation_backend.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <thread>

namespace federa::secagg {
namespace {

std::string idx(std::uint64_t v) { return std::to_string(v); }

const char* phase_name(Server::Phase p) {
  switch (p) {
    case Server::Phase::advertise_keys: return "AdvertiseKeys";
    case Server::Phase::share_keys: return "ShareKeys";
    case Server::Phase::masked_input: return "MaskedInput";
    case Server::Phase::unmasking: return "Unmasking";
    case Server::Phase::done: return "done";
    case Server::Phase::abandoned: return "abandoned";
  }
  return "?";
}

// A mask to remove in finish(): the self mask of a survivor, or the pair mask between a
// dropped client u (whose key s_u was reconstructed) and a surviving neighbour v.
struct MaskJob {
  Key32 key;           // b_u, or s_u (private) for a pair job
  std::uint32_t u = 0;
  std::uint32_t v = 0;
  bool pair = false;
  crypto::PrgOp op = crypto::PrgOp::subtract;
};

}  // namespace

Server::Server(const RoundConfig& config, NeighborGraph graph, ServerOptions options)
    : config_(config), graph_(std::move(graph)), options_(options) {}

Result<Server> Server::create(const RoundConfig& config, ServerOptions options) {
  if (Status s = validate(config); !s) return s.error();
  auto graph = NeighborGraph::create(config);
  if (!graph) return graph.error();
  Server s(config, std::move(*graph), options);
  s.clients_.resize(config.num_clients);
  return s;
}

Error Server::abandon(std::string reason) {
  phase_ = Phase::abandoned;
  abandon_reason_ = "secagg round " + idx(config_.round) + " abandoned: " + std::move(reason);
  for (ClientState& c : clients_) {
    c.inbox.clear();
    c.b_shares.clear();
    c.s_shares.clear();
  }
  return make_error(abandon_reason_);
}

Status Server::check_phase(Phase expected, const char* what) const {
  if (phase_ == Phase::abandoned) return make_error(abandon_reason_);
  if (phase_ != expected)
    return make_error(std::string("secagg: ") + what + " during phase " + phase_name(phase_));
  return Status::success();
}

Error Server::reject(std::uint32_t sender, const std::string& why) const {
  return make_error("secagg: rejected message from client " + idx(sender) + " in phase " +
                    phase_name(phase_) + ": " + why);
}

std::vector<std::uint32_t> Server::pending() const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    const ClientState& c = clients_[u];
    bool waiting = false;
    switch (phase_) {
      case Phase::advertise_keys: waiting = !c.advertised; break;
      case Phase::share_keys: waiting = c.advertised && !c.shared; break;
      case Phase::masked_input: waiting = c.shared && !c.masked; break;
      case Phase::unmasking: waiting = c.masked && !c.answered; break;
      default: break;
    }
    if (waiting) out.push_back(u);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Phase 1

Status Server::on_advertise_keys(std::uint32_t sender, const AdvertiseKeys& msg) {
  if (Status s = check_phase(Phase::advertise_keys, "AdvertiseKeys"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  if (msg.sender != sender) return reject(sender, "message claims sender " + idx(msg.sender));
  if (msg.round != config_.round) return reject(sender, "wrong round " + idx(msg.round));
  ClientState& c = clients_[sender];
  if (c.advertised) return reject(sender, "second AdvertiseKeys");
  // Reject keys that cannot agree (low-order points) here, so a bad key cannot make an honest
  // neighbour abort later.
  auto probe = crypto::x25519_generate();
  if (!probe) return probe.error();
  if (!crypto::x25519_agree(probe->private_key, msg.enc_public) ||
      !crypto::x25519_agree(probe->private_key, msg.mask_public))
    return reject(sender, "invalid X25519 public key");
  if (msg.enc_public == msg.mask_public)
    return reject(sender, "encryption and mask keys must differ");
  c.keys = msg;
  c.advertised = true;
  return Status::success();
}

Result<std::vector<KeysBroadcast>> Server::end_advertise_keys() {
  if (Status s = check_phase(Phase::advertise_keys, "end of AdvertiseKeys"); !s) return s.error();
  // A client with fewer than t advertised neighbours cannot share its secrets; dropping it can
  // push a neighbour under t too, so prune to a fixed point.
  for (bool changed = true; changed;) {
    changed = false;
    for (std::uint32_t u = 0; u < clients_.size(); ++u) {
      if (!clients_[u].advertised) continue;
      std::uint32_t alive = 0;
      for (std::uint32_t v : graph_.neighbors(u)) alive += clients_[v].advertised;
      if (alive < config_.threshold) {
        clients_[u].advertised = false;
        changed = true;
      }
    }
  }
  std::vector<KeysBroadcast> out;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    if (!clients_[u].advertised) continue;
    KeysBroadcast b;
    b.round = config_.round;
    b.recipient = u;
    for (std::uint32_t v : graph_.neighbors(u))
      if (clients_[v].advertised)
        b.neighbors.push_back({v, clients_[v].keys.enc_public, clients_[v].keys.mask_public});
    out.push_back(std::move(b));
  }
  if (out.size() < config_.min_clients)
    return abandon(idx(out.size()) + " clients advertised keys with at least t=" +
                   idx(config_.threshold) + " advertising neighbours; " +
                   idx(config_.min_clients) + " needed");
  phase_ = Phase::share_keys;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Phase 2

Status Server::on_share_keys(std::uint32_t sender, const ShareKeys& msg) {
  if (Status s = check_phase(Phase::share_keys, "ShareKeys"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  ClientState& c = clients_[sender];
  if (!c.advertised) return reject(sender, "did not take part in AdvertiseKeys");
  if (msg.sender != sender) return reject(sender, "message claims sender " + idx(msg.sender));
  if (msg.round != config_.round) return reject(sender, "wrong round " + idx(msg.round));
  if (c.share_msg_seen) return reject(sender, "second ShareKeys (replay)");
  // Validate the whole message before keeping anything: exactly one well-formed share for each
  // advertised neighbour, none replayed.
  std::vector<std::uint32_t> expected;
  for (std::uint32_t v : graph_.neighbors(sender))
    if (clients_[v].advertised) expected.push_back(v);
  std::vector<std::uint32_t> got;
  std::vector<std::string> tags;
  for (const EncryptedShare& es : msg.shares) {
    if (es.sender != sender) return reject(sender, "share claims sender " + idx(es.sender));
    if (es.recipient >= clients_.size() || !graph_.adjacent(sender, es.recipient))
      return reject(sender, "share for " + idx(es.recipient) + ", not a neighbour");
    if (!clients_[es.recipient].advertised)
      return reject(sender, "share for " + idx(es.recipient) + ", which did not advertise keys");
    if (es.ciphertext.size() != kShareCiphertextBytes)
      return reject(sender, "malformed share for " + idx(es.recipient) + " (" +
                                idx(es.ciphertext.size()) + " bytes, expected " +
                                idx(kShareCiphertextBytes) + ")");
    std::string tag(es.ciphertext.end() - crypto::kAeadTagBytes, es.ciphertext.end());
    if (seen_tags_.count(tag) || std::find(tags.begin(), tags.end(), tag) != tags.end())
      return reject(sender, "replayed share for " + idx(es.recipient));
    tags.push_back(std::move(tag));
    got.push_back(es.recipient);
  }
  std::sort(got.begin(), got.end());
  if (std::adjacent_find(got.begin(), got.end()) != got.end())
    return reject(sender, "two shares for one neighbour");
  if (got != expected)
    return reject(sender, "shares for " + idx(got.size()) + " neighbours, expected exactly the " +
                              idx(expected.size()) + " that advertised");
  c.share_msg_seen = true;
  c.shared = true;
  for (std::string& t : tags) seen_tags_.insert(std::move(t));
  for (const EncryptedShare& es : msg.shares) clients_[es.recipient].inbox.push_back(es);
  return Status::success();
}

Result<std::vector<SharesForward>> Server::end_share_keys() {
  if (Status s = check_phase(Phase::share_keys, "end of ShareKeys"); !s) return s.error();
  // A client whose secrets reached fewer than t neighbours that also shared can never be
  // unmasked: prune to a fixed point, as in phase 1.
  for (bool changed = true; changed;) {
    changed = false;
    for (std::uint32_t u = 0; u < clients_.size(); ++u) {
      if (!clients_[u].shared) continue;
      std::uint32_t alive = 0;
      for (std::uint32_t v : graph_.neighbors(u)) alive += clients_[v].shared;
      if (alive < config_.threshold) {
        clients_[u].shared = false;
        changed = true;
      }
    }
  }
  std::vector<SharesForward> out;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    ClientState& c = clients_[u];
    if (!c.shared) {
      c.inbox.clear();
      continue;
    }
    SharesForward f;
    f.round = config_.round;
    f.recipient = u;
    for (EncryptedShare& es : c.inbox)
      if (clients_[es.sender].shared) f.shares.push_back(std::move(es));
    c.inbox.clear();
    c.inbox.shrink_to_fit();
    out.push_back(std::move(f));
  }
  if (out.size() < config_.min_clients)
    return abandon(idx(out.size()) + " clients completed ShareKeys with at least t=" +
                   idx(config_.threshold) + " sharing neighbours; " + idx(config_.min_clients) +
                   " needed");
  if (options_.backend) {
    auto dev = options_.backend->make_u32_sum(config_.masked_length());
    if (!dev) return abandon("cannot allocate the masked sum: " + dev.error().message);
    device_sum_ = std::shared_ptr<U32Sum>(std::move(*dev));
    if (Status st = device_sum_->reset(); !st) return abandon("masked sum: " + st.message());
  } else {
    sum_.assign(config_.masked_length(), 0);
  }
  phase_ = Phase::masked_input;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Phase 3

Status Server::on_masked_input(std::uint32_t sender, const MaskedInput& msg) {
  if (msg.sender != sender) return reject(sender, "message claims sender " + idx(msg.sender));
  return on_masked_input(sender, msg.round, msg.masked);
}

Status Server::expect_masked_input(std::uint32_t sender) const {
  if (Status s = check_phase(Phase::masked_input, "MaskedInput"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  const ClientState& c = clients_[sender];
  if (!c.shared) return reject(sender, "did not complete ShareKeys");
  if (c.masked) return reject(sender, "second MaskedInput");
  return Status::success();
}

Status Server::on_masked_input(std::uint32_t sender, std::uint64_t round,
                               std::span<const std::uint32_t> masked) {
  if (Status s = expect_masked_input(sender); !s) return s;
  ClientState& c = clients_[sender];
  if (round != config_.round) return reject(sender, "wrong round " + idx(round));
  if (masked.size() != config_.masked_length())
    return reject(sender, "masked vector has " + idx(masked.size()) + " words, expected " +
                              idx(config_.masked_length()));
  if (device_sum_) {
    if (Status st = device_sum_->add(masked); !st) return abandon("masked sum: " + st.message());
  } else {
    const std::uint32_t* in = masked.data();
    std::uint32_t* acc = sum_.data();
    const std::size_t n = sum_.size();
    for (std::size_t i = 0; i < n; ++i) acc[i] += in[i];
  }
  c.masked = true;
  ++masked_count_;
  return Status::success();
}

Result<std::vector<UnmaskRequest>> Server::end_masked_input() {
  if (Status s = check_phase(Phase::masked_input, "end of MaskedInput"); !s) return s.error();
  if (masked_count_ < config_.min_clients)
    return abandon(idx(masked_count_) + " clients sent MaskedInput; " +
                   idx(config_.min_clients) + " needed");
  if (device_sum_) {
    sum_.assign(config_.masked_length(), 0);
    if (Status st = device_sum_->read(sum_); !st) return abandon("masked sum: " + st.message());
    device_sum_.reset();
  }
  // Every survivor's self mask, and the pair masks of every dropped client that a survivor
  // used, need t shares from neighbours that reached MaskedInput (only they are asked).
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    const ClientState& c = clients_[u];
    if (!c.shared) continue;
    std::uint32_t alive = 0;
    for (std::uint32_t v : graph_.neighbors(u)) alive += clients_[v].masked;
    if (alive == 0 && !c.masked) continue;  // dropped, and no survivor masked with it
    if (alive < config_.threshold)
      return abandon("client " + idx(u) + (c.masked ? " (survived)" : " (dropped)") +
                     ": only " + idx(alive) + " of its neighbours reached MaskedInput, t=" +
                     idx(config_.threshold));
  }
  std::vector<UnmaskRequest> out;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    if (!clients_[u].masked) continue;
    UnmaskRequest r;
    r.round = config_.round;
    r.recipient = u;
    for (std::uint32_t v : graph_.neighbors(u)) {
      if (clients_[v].masked)
        r.survivors.push_back(v);
      else if (clients_[v].shared)
        r.dropped.push_back(v);
    }
    out.push_back(std::move(r));
  }
  phase_ = Phase::unmasking;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Phase 4

Status Server::on_unmask(std::uint32_t sender, const UnmaskResponse& msg) {
  if (Status s = check_phase(Phase::unmasking, "UnmaskResponse"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  ClientState& c = clients_[sender];
  if (!c.masked) return reject(sender, "was not asked to unmask (no MaskedInput)");
  if (msg.sender != sender) return reject(sender, "message claims sender " + idx(msg.sender));
  if (msg.round != config_.round) return reject(sender, "wrong round " + idx(msg.round));
  if (c.unmask_msg_seen) return reject(sender, "second Unmasking response");
  // Exactly the requested shares: b for surviving neighbours, s for dropped ones.
  std::vector<std::uint32_t> requested;
  for (std::uint32_t v : graph_.neighbors(sender))
    if (clients_[v].shared) requested.push_back(v);
  std::vector<std::uint32_t> got;
  std::vector<shamir::Share> parsed;
  for (const RevealedShare& r : msg.shares) {
    if (r.owner >= clients_.size() || !graph_.adjacent(sender, r.owner) ||
        !clients_[r.owner].shared)
      return reject(sender, "share of client " + idx(r.owner) + ", which was not requested");
    const ShareKind want = clients_[r.owner].masked ? ShareKind::self_mask : ShareKind::mask_key;
    if (r.kind != want)
      return reject(sender, std::string("share of client ") + idx(r.owner) + " of the wrong kind (" +
                                (want == ShareKind::self_mask ? "self-mask" : "mask-key") +
                                " requested)");
    auto s = shamir::parse_y(share_point(sender), r.share);
    if (!s) return reject(sender, "malformed share of client " + idx(r.owner) + ": " +
                                      s.error().message);
    parsed.push_back(*s);
    got.push_back(r.owner);
  }
  std::vector<std::uint32_t> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return reject(sender, "two shares of one client");
  if (sorted != requested)
    return reject(sender, "response holds " + idx(sorted.size()) + " shares, " +
                              idx(requested.size()) + " were requested");
  c.unmask_msg_seen = true;
  c.answered = true;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ClientState& owner = clients_[got[i]];
    (owner.masked ? owner.b_shares : owner.s_shares).push_back(parsed[i]);
  }
  return Status::success();
}

Result<AggregateResult> Server::finish() {
  if (Status s = check_phase(Phase::unmasking, "finish"); !s) return s.error();
  const std::uint32_t t = config_.threshold;
  shamir::LagrangeCache cache;
  std::vector<MaskJob> jobs;
  AggregateResult result;

  // Reconstructs from t of the revealed shares and accepts the result only if `verify` holds.
  // With spare shares, a single bad share among the first t is tolerated: each leave-one-out
  // subset of the first t+1 is tried (coefficients come from the cache when point sets repeat).
  auto recover = [&](std::vector<shamir::Share>& shares,
                     auto&& verify) -> Result<Key32> {
    // Sort by x so clients whose first responders coincide share cached coefficients.
    std::sort(shares.begin(), shares.end(),
              [](const shamir::Share& a, const shamir::Share& b) { return a.x < b.x; });
    const std::size_t m = std::min<std::size_t>(shares.size(), std::size_t{t} + 1);
    const std::size_t attempts = m > t ? std::size_t{t} + 1 : 1;
    std::vector<shamir::Share> subset(t);
    std::vector<std::uint32_t> xs(t);
    for (std::size_t attempt = 0; attempt < attempts; ++attempt) {
      const std::size_t skip = attempt == 0 ? t : attempt - 1;  // attempt 0: the first t
      for (std::size_t i = 0, j = 0; i < m && j < t; ++i)
        if (i != skip) subset[j++] = shares[i];
      for (std::uint32_t i = 0; i < t; ++i) xs[i] = subset[i].x;
      auto coeffs = cache.at_zero(xs);
      if (!coeffs) return coeffs.error();
      auto secret = shamir::reconstruct(subset, **coeffs);
      if (secret && verify(*secret)) return secret;
    }
    return make_error("no consistent subset of the revealed shares");
  };

  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    ClientState& c = clients_[u];
    if (c.masked) {
      result.included.push_back(u);
      if (c.b_shares.size() < t)
        return abandon("self mask of client " + idx(u) + ": " + idx(c.b_shares.size()) +
                       " shares revealed, t=" + idx(t));
      auto b = recover(c.b_shares, [&](const Key32& seed) {
        return self_mask_commitment(config_, u, seed) == c.keys.self_mask_commitment;
      });
      if (!b)
        return abandon("self mask of client " + idx(u) +
                       " failed verification against its commitment (bad shares)");
      jobs.push_back({*b, u, u, false, crypto::PrgOp::subtract});
    } else if (c.shared) {
      std::vector<std::uint32_t> users;  // survivors that masked with u
      for (std::uint32_t v : graph_.neighbors(u))
        if (clients_[v].masked) users.push_back(v);
      result.dropped.push_back(u);
      if (users.empty()) continue;
      if (c.s_shares.size() < t)
        return abandon("mask key of dropped client " + idx(u) + ": " +
                       idx(c.s_shares.size()) + " shares revealed, t=" + idx(t));
      auto s = recover(c.s_shares, [&](const Key32& key) {
        auto pub = crypto::x25519_public_from_private(key);
        return pub && *pub == c.keys.mask_public;
      });
      if (!s)
        return abandon("mask key of dropped client " + idx(u) +
                       " failed verification against its public key (bad shares)");
      // v applied pair_mask_op(v, u); undo it.
      for (std::uint32_t v : users)
        jobs.push_back({*s, u, v, true,
                        pair_mask_op(v, u) == crypto::PrgOp::add ? crypto::PrgOp::subtract
                                                                 : crypto::PrgOp::add});
    }
  }

  // Regenerate and remove masks. Each worker owns an accumulator; they are summed at the end.
  const unsigned threads =
      std::max(1u, std::min<unsigned>(options_.threads, static_cast<unsigned>(jobs.size())));
  std::vector<std::vector<std::uint32_t>> partial(threads > 1 ? threads - 1 : 0);
  std::vector<Status> status(threads);
  auto work = [&](unsigned w, std::span<std::uint32_t> acc) {
    for (std::size_t j = w; j < jobs.size(); j += threads) {
      const MaskJob& job = jobs[j];
      Key32 seed = job.key;
      if (job.pair) {
        auto s = derive_mask_seed(config_, job.key, clients_[job.v].keys.mask_public, job.u,
                                  job.v);
        if (!s) {
          status[w] = s.error();
          return;
        }
        seed = *s;
      }
      if (Status st = crypto::prg_accumulate(seed, acc, job.op); !st) {
        status[w] = st;
        return;
      }
      OPENSSL_cleanse(seed.data(), seed.size());
    }
  };
  {
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < threads; ++w) {
      partial[w - 1].assign(sum_.size(), 0);
      pool.emplace_back(work, w, std::span<std::uint32_t>(partial[w - 1]));
    }
    work(0, sum_);
    for (auto& th : pool) th.join();
  }
  for (MaskJob& j : jobs) OPENSSL_cleanse(j.key.data(), j.key.size());
  for (const Status& s : status)
    if (!s) return abandon("mask regeneration failed: " + s.message());
  for (const auto& p : partial)
    for (std::size_t i = 0; i < sum_.size(); ++i) sum_[i] += p[i];

  for (ClientState& c : clients_) {
    c.b_shares.clear();
    c.s_shares.clear();
  }
  result.sum = sum_;
  result.decoded = dequantize(sum_, config_.quant);
  result.error_bound =
      quantization_error_bound(config_.quant, static_cast<std::uint32_t>(result.included.size()));
  phase_ = Phase::done;
  return result;
}

}  // namespace federa::secagg
