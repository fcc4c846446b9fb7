// SecAgg+ rounds: the protocol logic is secagg::Server, which only the aggregation worker
// touches; transport threads parse and post each client's message, and the round thread ends
// each phase (at its deadline, or once every expected client answered or left).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <type_traits>

#include "coordinator/orchestrator.hpp"
#include "coordinator/orchestrator_internal.hpp"

namespace federa {

namespace {
// A client whose protocol messages keep failing is cut off: each rejection costs X25519 or
// parsing work, and an honest client never sends more than a couple.
constexpr int kMaxRejectedMessages = 3;
}  // namespace

Status Orchestrator::setup_secure_round(std::uint64_t round,
                                        const std::vector<std::string>& cohort) {
  secagg::RoundOptions ro;
  ro.round = round;
  ro.num_clients = static_cast<std::uint32_t>(cohort.size());
  ro.vector_length = global_.data.size();
  ro.neighbors = opt_.secagg_neighbors;
  ro.threshold = opt_.secagg_threshold;
  ro.dropout = opt_.secagg_dropout;
  ro.corrupt = opt_.secagg_corrupt;
  ro.clip = opt_.secagg_clip;
  // Each client weights its update by its number of examples. The quantisation range must hold
  // the largest weight: the largest announced in the cohort (a tight range, fine resolution), but
  // announcements are capped by --max-examples-per-client, so no client can set the scale alone
  // (2^62 examples would round every honest weight to zero).
  double max_weight = 1;
  for (const auto& id : cohort)
    max_weight = std::max(max_weight, double(clients_[id].num_train_examples));
  ro.max_weight = std::min(max_weight, double(opt_.max_examples_per_client));
  ro.min_clients = static_cast<std::uint32_t>(std::min(opt_.min_clients, cohort.size()));
  if (statistics_limb_bits_ > 0) shape_statistics_round(ro);  // orchestrator_table.cpp
  auto cfg = secagg::make_round_config(ro);
  if (!cfg)
    return make_error(ErrorCode::failed_precondition, "secure aggregation: " + cfg.error().message);
  secagg::ServerOptions so;
  so.threads = std::max(1u, opt_.secagg_threads);
  so.backend = opt_.backend;
  auto server = secagg::Server::create(*cfg, so);
  if (!server)
    return make_error(ErrorCode::failed_precondition,
                      "secure aggregation: " + server.error().message);
  auto sa = std::make_unique<SecureState>();
  sa->server.emplace(std::move(server.value()));
  sa->config = *cfg;
  sa->ids = cohort;
  for (std::uint32_t i = 0; i < cohort.size(); ++i) {
    sa->index[cohort[i]] = i;
    sa->expected.insert(i);
  }
  round_.secure = std::move(sa);
  return {};
}

void Orchestrator::note_secure_failure(const std::string& id, const std::string& why) {
  SecureState& sa = *round_.secure;
  auto idx = sa.index.find(id);
  if (idx == sa.index.end()) return;
  sa.answered.insert(idx->second);
  sa.failures.emplace(id, why);
  cv_.notify_all();
}

Status Orchestrator::handle_secagg(Client& c, const wire::Envelope& msg) {
  const std::string id = c.link->id();
  if (!round_.open || !round_.secure)
    return make_error(ErrorCode::failed_precondition,
                      "secure-aggregation message outside a secure round");
  SecureState& sa = *round_.secure;
  auto idx = sa.index.find(id);
  if (idx == sa.index.end())
    return make_error(ErrorCode::permission_denied,
                      "secure-aggregation message from a client outside the cohort");
  const std::uint32_t u = idx->second;
  const std::uint32_t n = sa.config.num_clients;
  // Parse here (bounded work, on the client's own thread); the protocol step runs on the worker.
  std::function<Status(secagg::Server&)> step;
  std::string error;
  switch (msg.payload_case()) {
    case wire::Envelope::kSecaggAdvertiseKeys: {
      auto m = secagg::from_wire(msg.secagg_advertise_keys());
      if (!m)
        error = m.error().message;
      else if (m->sender != u)
        error = "AdvertiseKeys names another client's index";
      else
        step = [u, m = std::move(*m)](secagg::Server& s) { return s.on_advertise_keys(u, m); };
      break;
    }
    case wire::Envelope::kSecaggShareKeys: {
      auto m = secagg::from_wire(msg.secagg_share_keys(), n);
      if (!m)
        error = m.error().message;
      else if (m->sender != u)
        error = "ShareKeys names another client's index";
      else
        step = [u, m = std::move(*m)](secagg::Server& s) { return s.on_share_keys(u, m); };
      break;
    }
    case wire::Envelope::kSecaggUnmaskResponse: {
      auto m = secagg::from_wire(msg.secagg_unmask_response(), n);
      if (!m)
        error = m.error().message;
      else if (m->sender != u)
        error = "UnmaskResponse names another client's index";
      else
        step = [u, m = std::move(*m)](secagg::Server& s) { return s.on_unmask(u, m); };
      break;
    }
    default:
      return make_error(ErrorCode::invalid_argument, "unexpected secure-aggregation message");
  }
  if (!step) {
    secure_reject(id, error);
    return {};
  }
  const std::uint64_t generation = round_.generation;
  ++round_.in_flight;
  worker_.post([this, id, u, generation, step = std::move(step)] {
    Status s = step(*round_.secure->server);  // the round cannot close while in_flight > 0
    FlushOnExit flush(events_);
    std::lock_guard lk(mu_);
    --round_.in_flight;
    cv_.notify_all();
    if (round_.generation != generation || !round_.secure) return;
    if (!s) return secure_reject(id, s.message());
    round_.secure->answered.insert(u);
  });
  return {};
}

// Expects mu_ held. A rejected protocol message leaves this client out of the round (the
// protocol tolerates that while thresholds hold); repeated ones close its session.
void Orchestrator::secure_reject(const std::string& id, const std::string& why) {
  spdlog::warn("client '{}': secure aggregation, round {}: {}", id, round_.round, why);
  auto c = clients_.find(id);
  SecureState& sa = *round_.secure;
  const int count = ++sa.rejected_messages[id];
  if (c != clients_.end()) {
    if (count >= kMaxRejectedMessages) {
      c->second.link->close_with_error(
          wire::Error::BAD_MESSAGE, "too many rejected secure-aggregation messages; last: " + why);
    } else {
      c->second.link->send(serialize_shared(make_error_envelope(wire::Error::BAD_MESSAGE, why)));
    }
  }
  note_secure_failure(id, why);
}

Status Orchestrator::handle_masked_header(Client& c, const wire::SecAggMaskedInputHeader& h) {
  const std::string id = c.link->id();
  if (!round_.open || !round_.secure || h.round() != round_.round)
    return make_error(ErrorCode::failed_precondition, "masked input outside a secure round");
  SecureState& sa = *round_.secure;
  auto idx = sa.index.find(id);
  if (idx == sa.index.end())
    return make_error(ErrorCode::permission_denied,
                      "masked input from a client outside the cohort");
  const std::uint32_t u = idx->second;
  // Only in the MaskedInput phase, once per client that completed ShareKeys: a slot (a whole
  // model's worth of memory) is never granted before.
  std::string why;
  if (h.sender() != u)
    why = "MaskedInput names another client's index";
  else if (sa.phase != SecureState::Phase::masked_input)
    why = "masked input outside the MaskedInput phase";
  else if (!sa.may_mask.count(u))
    why = "masked input from a client that did not complete ShareKeys";
  else if (!sa.masking.insert(u).second)
    why = "second masked input in this round";
  else if (h.total_elements() != sa.config.masked_length())
    why = "masked input of " + std::to_string(h.total_elements()) + " words, expected " +
          std::to_string(sa.config.masked_length());
  else if (std::uint64_t(h.unusable_shares_from_size()) >= sa.config.num_clients)
    why = "masked input names more unusable shares than the cohort has clients";
  if (!why.empty()) {
    secure_reject(id, why);
    return {};
  }
  if (h.unusable_shares_from_size() > 0) {
    // Counts against the senders of those shares at once, before their own masked inputs are
    // summed (the worker takes jobs in order).
    std::vector<std::uint32_t> from(h.unusable_shares_from().begin(),
                                    h.unusable_shares_from().end());
    const std::uint64_t generation = round_.generation;
    ++round_.in_flight;
    worker_.post([this, id, u, generation, from = std::move(from)] {
      Status s = round_.secure->server->report_unusable_shares(u, from);
      FlushOnExit flush(events_);
      std::lock_guard lk(mu_);
      --round_.in_flight;
      cv_.notify_all();
      if (round_.generation != generation || !round_.secure) return;
      if (!s) return secure_reject(id, s.message());
      std::string names;
      for (std::uint32_t v : from)
        names += (names.empty() ? "'" : ", '") + round_.secure->ids[v] + "'";
      spdlog::warn(
          "round {}: '{}' could not decrypt the secure-aggregation shares of {}; they count as "
          "dropped",
          round_.round, id, names);
    });
  }
  auto up = std::make_shared<Upload>();
  up->pool = &pool_;
  up->client = id;
  up->generation = round_.generation;
  up->round = round_.round;
  up->secure = true;
  up->index = u;
  up->masked_header = h;
  round_.uploads[id] = up;
  round_.waiting.push_back(id);
  grant_slots();
  return {};
}

// On the worker.
void Orchestrator::sum_masked_input(std::shared_ptr<Upload> up) {
  const auto& from = up->masked_header.unusable_shares_from();
  Status s = round_.secure->server->on_masked_input(
      up->index, up->round, up->words, std::vector<std::uint32_t>(from.begin(), from.end()));
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  const std::string id = up->client;
  const std::uint32_t u = up->index;
  const std::uint64_t generation = up->generation;
  up.reset();
  --round_.in_flight;
  cv_.notify_all();
  if (round_.generation == generation && round_.secure) {
    if (s)
      round_.secure->answered.insert(u);
    else
      secure_reject(id, s.message());
  }
  grant_slots();
}

// ---------------------------------------------------------------------------------------------
// The round thread's side: end each phase, relay its messages, wait for the next.

void Orchestrator::wait_secure_phase(Clock::time_point until) {
  std::unique_lock lk(mu_);
  SecureState& sa = *round_.secure;
  auto done = [&] {
    for (std::uint32_t u : sa.expected) {
      if (sa.answered.count(u)) continue;
      const std::string& id = sa.ids[u];
      if (!clients_.count(id)) continue;  // gone
      const Stage st = round_.selected[id].stage;
      if (st == Stage::dropped || st == Stage::rejected) continue;
      return false;
    }
    return true;
  };
  while (!stopping_ && !done()) {
    const auto wake = std::min(until, reap_stalled_uploads());
    lk.unlock();
    events_.flush();
    lk.lock();
    if (stopping_ || done()) return;
    if (cv_.wait_until(lk, wake) == std::cv_status::timeout && Clock::now() >= until) return;
  }
}

template <typename Message>
void Orchestrator::relay_phase(const std::vector<Message>& messages, int next_phase) {
  std::lock_guard lk(mu_);
  SecureState& sa = *round_.secure;
  sa.phase = static_cast<SecureState::Phase>(next_phase);
  sa.expected.clear();
  sa.answered.clear();
  for (const Message& m : messages) {
    sa.expected.insert(m.recipient);
    if (sa.phase == SecureState::Phase::masked_input) sa.may_mask.insert(m.recipient);
    wire::Envelope e;
    if constexpr (std::is_same_v<Message, secagg::KeysBroadcast>) {
      secagg::to_wire(m, e.mutable_secagg_keys_broadcast());
    } else if constexpr (std::is_same_v<Message, secagg::SharesForward>) {
      secagg::to_wire(m, e.mutable_secagg_shares_forward());
    } else {
      secagg::to_wire(m, e.mutable_secagg_unmask_request());
    }
    auto c = clients_.find(sa.ids[m.recipient]);
    if (c != clients_.end()) c->second.link->send(serialize_shared(e));
  }
}

// The protocol's own messages name clients by cohort index; operators know them by name.
std::string Orchestrator::with_names(const std::string& text) const {
  if (!round_.secure) return text;
  const auto& ids = round_.secure->ids;
  const std::string key = "client ";
  std::string out;
  std::size_t i = 0;
  for (;;) {
    const std::size_t at = text.find(key, i);
    if (at == std::string::npos) break;
    const std::size_t num = at + key.size();
    std::size_t end = num;
    while (end < text.size() && end - num < 9 &&
           std::isdigit(static_cast<unsigned char>(text[end])))
      ++end;
    out.append(text, i, num - i);
    const std::size_t u = end > num ? std::stoul(text.substr(num, end - num)) : ids.size();
    if (u < ids.size())
      out += "'" + ids[u] + "'";
    else
      out.append(text, num, end - num);
    i = end;
  }
  return out.append(text, i, std::string::npos);
}

// Round thread. Who the protocol blamed this attempt (and who was cut off for repeated bad
// messages): reported as their reason and left out of the round's retries.
void Orchestrator::note_blame() {
  auto blamed = worker_.call([&] { return round_.secure->server->blamed(); });
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  SecureState& sa = *round_.secure;
  for (const auto& [u, why] : blamed) {
    if (u >= sa.ids.size()) continue;
    const std::string reason = "treated as dropped: " + with_names(why);
    blamed_.emplace(sa.ids[u], reason);
    sa.failures[sa.ids[u]] = reason;
  }
  for (const auto& [id, count] : sa.rejected_messages)
    if (count >= kMaxRejectedMessages)
      blamed_.emplace(id, "too many rejected secure-aggregation messages");
}

Status Orchestrator::abandon_secure(const std::string& raw_why) {
  note_blame();
  std::lock_guard lk(mu_);
  const std::string why = with_names(raw_why);
  wire::Envelope e;
  e.mutable_secagg_abort()->set_round(round_.round);
  e.mutable_secagg_abort()->set_reason(why);
  auto bytes = serialize_shared(e);
  for (const auto& id : round_.secure->ids) {
    auto c = clients_.find(id);
    if (c != clients_.end()) c->second.link->send(bytes);
  }
  return make_error(ErrorCode::aborted, "secure aggregation abandoned: " + why);
}

Status Orchestrator::collect_secure(Clock::time_point deadline) {
  using Phase = SecureState::Phase;
  auto server = [this]() -> secagg::Server& { return *round_.secure->server; };
  auto phase_deadline = [&] {
    return std::min(deadline, Clock::now() + opt_.secagg_phase_timeout);
  };
  auto stopped = [&] {
    std::lock_guard lk(mu_);
    return stopping_;
  };
  wait_secure_phase(phase_deadline());
  if (stopped()) return make_error(ErrorCode::cancelled, "stopped");
  auto keys = worker_.call([&] { return server().end_advertise_keys(); });
  if (!keys) return abandon_secure(keys.error().message);
  relay_phase(*keys, int(Phase::share_keys));

  wait_secure_phase(phase_deadline());
  if (stopped()) return make_error(ErrorCode::cancelled, "stopped");
  auto shares = worker_.call([&] { return server().end_share_keys(); });
  if (!shares) return abandon_secure(shares.error().message);
  relay_phase(*shares, int(Phase::masked_input));

  wait_secure_phase(deadline);  // training happens in this phase: the round's own deadline applies
  if (stopped()) return make_error(ErrorCode::cancelled, "stopped");
  {
    std::lock_guard lk(mu_);  // unfinished masked uploads count as dropped
    for (auto it = round_.uploads.begin(); it != round_.uploads.end();)
      it = it->second->secure ? round_.uploads.erase(it) : std::next(it);
    round_.waiting.clear();
  }
  auto requests = worker_.call([&] { return server().end_masked_input(); });
  if (!requests) return abandon_secure(requests.error().message);
  relay_phase(*requests, int(Phase::unmasking));

  wait_secure_phase(Clock::now() + opt_.secagg_phase_timeout);
  if (stopped()) return make_error(ErrorCode::cancelled, "stopped");
  auto result = worker_.call([&] { return server().finish(); });
  if (!result) return abandon_secure(result.error().message);
  note_blame();
  return statistics_limb_bits_ > 0 ? apply_secure_statistics(*result)
                                   : apply_secure_result(*result);
}

Status Orchestrator::apply_secure_result(const secagg::AggregateResult& result) {
  const auto& d = result.decoded;
  if (!(d.total_weight > 0)) return abandon_secure("the unmasked total weight is not positive");
  // The cohort's weighted mean delta, applied to the global model: the strategy sees this one
  // vector and nothing of any single client.
  std::vector<float> mean(global_.data.size());
  for (std::size_t i = 0; i < mean.size(); ++i)
    mean[i] = global_.data[i] + static_cast<float>(d.weighted_sum[i] / d.total_weight);
  std::set<std::string> included;
  {
    FlushOnExit flush(events_);
    std::lock_guard lk(mu_);
    SecureState& sa = *round_.secure;
    for (auto i : result.included) included.insert(sa.ids[i]);
    for (auto& [id, s] : round_.selected) {
      if (s.stage != Stage::waiting && s.stage != Stage::uploading) continue;
      if (included.count(id)) {
        settle(id, Stage::accepted, "");
      } else {
        auto f = sa.failures.find(id);
        settle(id, Stage::dropped, f != sa.failures.end() ? f->second : "left the secure protocol");
      }
    }
  }
  ClientUpdate cohort{"secure-aggregate", std::max<std::uint64_t>(1, std::llround(d.total_weight)),
                      mean};
  Status s = worker_.call([&] { return strategy_->add_cohort_mean(cohort, included.size()); });
  if (!s)
    return make_error(ErrorCode::aborted, "the strategy refused the cohort mean: " + s.message());
  spdlog::info(
      "round {}: secure aggregation of {} clients ({} dropped), quantization error <= {:.2g}",
      round_.round, included.size(), result.dropped.size(), result.error_bound);
  return {};
}

}  // namespace federa
