#include "coordinator/secagg_server.hpp"

#include <algorithm>

#include "coordinator/aggregation_backend.hpp"

namespace federa::secagg {
namespace {

std::string idx(std::uint64_t v) { return std::to_string(v); }

const char* phase_name(Server::Phase p) {
  switch (p) {
    case Server::Phase::advertise_keys:
      return "AdvertiseKeys";
    case Server::Phase::share_keys:
      return "ShareKeys";
    case Server::Phase::masked_input:
      return "MaskedInput";
    case Server::Phase::unmasking:
      return "Unmasking";
    case Server::Phase::done:
      return "done";
    case Server::Phase::abandoned:
      return "abandoned";
  }
  return "?";
}

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
      case Phase::advertise_keys:
        waiting = !c.advertised;
        break;
      case Phase::share_keys:
        waiting = c.advertised && !c.shared;
        break;
      case Phase::masked_input:
        waiting = c.shared && !c.masked;
        break;
      case Phase::unmasking:
        waiting = c.masked && !c.answered;
        break;
      default:
        break;
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
    return abandon(idx(out.size()) +
                   " clients advertised keys with at least t=" + idx(config_.threshold) +
                   " advertising neighbours; " + idx(config_.min_clients) + " needed");
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
    return abandon(idx(out.size()) +
                   " clients completed ShareKeys with at least t=" + idx(config_.threshold) +
                   " sharing neighbours; " + idx(config_.min_clients) + " needed");
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
  return on_masked_input(sender, msg.round, msg.masked, msg.unusable_from);
}

Status Server::expect_masked_input(std::uint32_t sender) const {
  if (Status s = check_phase(Phase::masked_input, "MaskedInput"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  const ClientState& c = clients_[sender];
  if (!c.shared) return reject(sender, "did not complete ShareKeys");
  if (c.masked) return reject(sender, "second MaskedInput");
  if (auto b = blamed_.find(sender); b != blamed_.end())
    return reject(sender, "treated as dropped: " + b->second);
  return Status::success();
}

void Server::blame(std::uint32_t client, std::string why) {
  blamed_.emplace(client, std::move(why));
}

bool Server::reported_unusable(std::uint32_t holder, std::uint32_t owner) const {
  const auto& u = clients_[holder].unusable_from;
  return std::binary_search(u.begin(), u.end(), owner);
}

bool Server::holds(std::uint32_t holder, std::uint32_t owner) const {
  return clients_[holder].masked && !reported_unusable(holder, owner);
}

Status Server::report_unusable_shares(std::uint32_t sender, std::span<const std::uint32_t> from) {
  if (Status s = check_phase(Phase::masked_input, "a report of unusable shares"); !s) return s;
  if (sender >= clients_.size()) return reject(sender, "not in the cohort");
  ClientState& c = clients_[sender];
  if (!c.shared) return reject(sender, "did not complete ShareKeys");
  if (c.masked) return reject(sender, "reported unusable shares after its MaskedInput");
  std::vector<std::uint32_t> sorted(from.begin(), from.end());
  std::sort(sorted.begin(), sorted.end());
  if (c.reported) {
    if (sorted == c.unusable_from) return Status::success();
    return reject(sender, "a second, different report of unusable shares");
  }
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return reject(sender, "names one client twice as sending unusable shares");
  for (std::uint32_t v : sorted)
    if (v >= clients_.size() || !graph_.adjacent(sender, v) || !clients_[v].shared)
      return reject(sender, "reports unusable shares from " + idx(v) + ", which forwarded it none");
  c.reported = true;
  c.unusable_from = std::move(sorted);
  for (std::uint32_t v : c.unusable_from)
    blame(v, "its shares to client " + idx(sender) + " did not decrypt");
  return Status::success();
}

Status Server::on_masked_input(std::uint32_t sender, std::uint64_t round,
                               std::span<const std::uint32_t> masked,
                               std::span<const std::uint32_t> unusable_from) {
  if (Status s = expect_masked_input(sender); !s) return s;
  ClientState& c = clients_[sender];
  if (round != config_.round) return reject(sender, "wrong round " + idx(round));
  if (masked.size() != config_.masked_length())
    return reject(sender, "masked vector has " + idx(masked.size()) + " words, expected " +
                              idx(config_.masked_length()));
  if (Status s = report_unusable_shares(sender, unusable_from); !s) return s;
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
    return abandon(idx(masked_count_) + " clients sent MaskedInput; " + idx(config_.min_clients) +
                   " needed");
  if (device_sum_) {
    sum_.assign(config_.masked_length(), 0);
    if (Status st = device_sum_->read(sum_); !st) return abandon("masked sum: " + st.message());
    device_sum_.reset();
  }
  if (Status s = check_recoverable(); !s) return s.error();
  std::vector<UnmaskRequest> out;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    if (!clients_[u].masked) continue;
    UnmaskRequest r;
    r.round = config_.round;
    r.recipient = u;
    for (std::uint32_t v : graph_.neighbors(u)) {
      if (reported_unusable(u, v)) continue;  // u holds none of v's shares
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

// Every survivor's self mask, and the pair masks of every dropped client that a survivor used,
// need t shares from neighbours that reached MaskedInput holding usable shares of it (only they
// are asked). A survivor one of whose surviving neighbours could not use its shares masked with
// that neighbour alone: the sum holds half a pair mask nobody can remove.
Status Server::check_recoverable() {
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    const ClientState& c = clients_[u];
    if (!c.shared) continue;
    std::uint32_t alive = 0;
    for (std::uint32_t v : graph_.neighbors(u)) {
      alive += holds(v, u);
      if (c.masked && clients_[v].masked && reported_unusable(v, u))
        return abandon("client " + idx(u) + " sent its MaskedInput, but client " + idx(v) +
                       " could not use its shares: " + blamed_[u]);
    }
    if (alive == 0 && !c.masked) continue;  // dropped, and no survivor masked with it
    if (alive < config_.threshold)
      return abandon(
          "client " + idx(u) + (c.masked ? " (survived)" : " (dropped)") + ": only " + idx(alive) +
          " of its neighbours reached MaskedInput holding its shares, t=" + idx(config_.threshold));
  }
  return Status::success();
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
    if (clients_[v].shared && !reported_unusable(sender, v)) requested.push_back(v);
  std::vector<std::uint32_t> got;
  std::vector<shamir::Share> parsed;
  for (const RevealedShare& r : msg.shares) {
    if (r.owner >= clients_.size() || !graph_.adjacent(sender, r.owner) ||
        !clients_[r.owner].shared || reported_unusable(sender, r.owner))
      return reject(sender, "share of client " + idx(r.owner) + ", which was not requested");
    const ShareKind want = clients_[r.owner].masked ? ShareKind::self_mask : ShareKind::mask_key;
    if (r.kind != want)
      return reject(sender,
                    std::string("share of client ") + idx(r.owner) + " of the wrong kind (" +
                        (want == ShareKind::self_mask ? "self-mask" : "mask-key") + " requested)");
    auto s = shamir::parse_y(share_point(sender), r.share);
    if (!s)
      return reject(sender, "malformed share of client " + idx(r.owner) + ": " + s.error().message);
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

}  // namespace federa::secagg
