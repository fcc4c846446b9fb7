#include "coordinator/orchestrator.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/seeds.hpp"

namespace federa {

using clock_type = std::chrono::steady_clock;


Orchestrator::Orchestrator(OrchestratorOptions options, std::unique_ptr<Strategy> strategy, Model global,
                           std::optional<StateStore> store, std::optional<Evaluator> evaluator)
    : opt_(std::move(options)),
      strategy_(std::move(strategy)),
      global_(std::move(global)),
      store_(std::move(store)),
      evaluator_(std::move(evaluator)) {}

Orchestrator::~Orchestrator() = default;

Status Orchestrator::restore(CommittedState state) {
  if (!(state.model.layout == global_.layout))
    return make_error("the committed model's layout differs from --model " + opt_.train.model);
  if (Status s = strategy_->load_state(state.strategy); !s)
    return make_error("cannot restore the strategy's state: " + s.message());
  std::lock_guard lk(mu_);
  global_ = std::move(state.model);
  completed_ = state.round;
  last_metrics_line_ = state.metrics_line;
  return {};
}

std::uint64_t Orchestrator::completed_rounds() const {
  std::lock_guard lk(mu_);
  return completed_;
}

std::size_t Orchestrator::connected_clients() const {
  std::lock_guard lk(mu_);
  return ready_count();
}

std::size_t Orchestrator::ready_count() const {
  return std::size_t(std::count_if(clients_.begin(), clients_.end(), [](const auto& kv) { return kv.second.ready; }));
}

void Orchestrator::drop_if_pending(const std::string& id) {
  auto sel = round_.selected.find(id);
  if (round_.open && sel != round_.selected.end() && sel->second == Outcome::pending)
    finish_upload(id, Outcome::dropped);
}

void Orchestrator::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Transport events

Status Orchestrator::on_connect(const std::shared_ptr<ClientLink>& link) {
  std::lock_guard lk(mu_);
  const std::string& id = link->id();
  if (!opt_.members.empty() && !opt_.members.count(id))
    return make_error("'" + id + "' is not a member of this federation");
  if (stopping_) return make_error("the coordinator is shutting down");
  auto it = clients_.find(id);
  if (it != clients_.end()) {
    // A reconnect while the old connection is not yet known dead: the newest wins.
    spdlog::info("client '{}' reconnected; dropping its previous connection", id);
    it->second.link->close_with_error(wire::Error::UNKNOWN, "replaced by a newer connection");
    drop_if_pending(id);
    clients_.erase(it);
  }
  clients_[id] = Client{link, false, 0};
  spdlog::debug("client '{}' connected", id);
  return {};
}

void Orchestrator::on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) {
  std::lock_guard lk(mu_);
  auto it = clients_.find(link->id());
  if (it == clients_.end() || it->second.link != link) return;  // an already replaced link
  spdlog::info("client '{}' disconnected: {}", link->id(), why);
  const std::string id = link->id();
  clients_.erase(it);
  drop_if_pending(id);
  cv_.notify_all();
}

Status Orchestrator::on_message(const std::shared_ptr<ClientLink>& link, const wire::Envelope& msg) {
  std::lock_guard lk(mu_);
  auto it = clients_.find(link->id());
  if (it == clients_.end() || it->second.link != link) return make_error("connection was replaced");
  Client& c = it->second;
  if (!c.ready && msg.payload_case() != wire::Envelope::kHello)
    return make_error(std::string("expected hello first, got ") + payload_name(msg));
  switch (msg.payload_case()) {
    case wire::Envelope::kHello: {
      if (c.ready) return make_error("second hello");
      if (msg.hello().protocol_version() != kProtocolVersion) {
        link->close_with_error(wire::Error::PROTOCOL_VERSION,
                               "protocol version " + std::to_string(msg.hello().protocol_version()) +
                                   " not supported; this coordinator speaks " + std::to_string(kProtocolVersion));
        return {};
      }
      c.ready = true;
      c.num_train_examples = msg.hello().num_train_examples();
      wire::Envelope w;
      w.mutable_welcome()->set_protocol_version(kProtocolVersion);
      w.mutable_welcome()->set_client_id(link->id());
      w.mutable_welcome()->set_federation(opt_.federation);
      link->send(serialize_shared(w));
      spdlog::info("client '{}' joined ({} examples, {} ready)", link->id(), c.num_train_examples,
                   ready_count());
      cv_.notify_all();
      return {};
    }
    case wire::Envelope::kUpdateHeader:
      return handle_update_header(c, msg.update_header());
    case wire::Envelope::kChunk:
      if (round_.sa && round_.sa_uploads.count(link->id())) return handle_secagg(c, msg);
      return handle_chunk(c, msg.chunk());
    case wire::Envelope::kSecaggAdvertiseKeys:
    case wire::Envelope::kSecaggShareKeys:
    case wire::Envelope::kSecaggMaskedInput:
    case wire::Envelope::kSecaggUnmaskResponse:
      return handle_secagg(c, msg);
    case wire::Envelope::kError:
      spdlog::warn("client '{}' reported an error: {}", link->id(), msg.error().message());
      drop_if_pending(link->id());
      return {};
    default:
      return make_error(std::string("unexpected message '") + payload_name(msg) + "' from a client");
  }
}

Status Orchestrator::handle_update_header(Client& c, const wire::UpdateHeader& h) {
  const std::string& id = c.link->id();
  if (!round_.open || h.round() != round_.round) {
    c.link->close_with_error(wire::Error::WRONG_ROUND, "update for round " + std::to_string(h.round()) +
                                                           ", which is not open");
    spdlog::warn("client '{}': update for round {} which is not open; session closed", id, h.round());
    return {};
  }
  auto sel = round_.selected.find(id);
  if (sel == round_.selected.end()) return make_error("update from a client not selected for this round");
  if (sel->second != Outcome::pending || round_.uploads.count(id)) {
    c.link->close_with_error(wire::Error::DUPLICATE_UPDATE, "second update in round " + std::to_string(h.round()));
    spdlog::warn("client '{}': second update in round {}; session closed", id, h.round());
    if (round_.uploads.count(id)) finish_upload(id, Outcome::rejected);
    return {};
  }
  auto reject = [&](const std::string& why) {
    finish_upload(id, Outcome::rejected);
    return make_error("rejected update: " + why);
  };
  if (h.layout_hash() != global_.layout.hash()) return reject("wrong layout hash (model built from another spec?)");
  if (h.total_elements() != global_.data.size())
    return reject("update has " + std::to_string(h.total_elements()) + " elements, the model " +
                  std::to_string(global_.data.size()));
  if (h.num_chunks() != chunk_count(global_.data.size(), opt_.chunk_elements))
    return reject("wrong chunk count " + std::to_string(h.num_chunks()));
  if (h.num_examples() == 0) return reject("num_examples is 0");
  Upload& u = round_.uploads[id];
  u.num_examples = h.num_examples();
  for (const auto& [k, v] : h.metrics()) u.metrics[k] = v;
  u.waiting_for_slot = true;
  round_.waiting.push_back(id);
  grant_slots();
  return {};
}

void Orchestrator::grant_slots() {
  while (!round_.waiting.empty()) {
    std::vector<float>* buf = nullptr;
    if (!free_buffers_.empty()) {
      buf = free_buffers_.back().release();
      free_buffers_.pop_back();
    } else if (buffers_made_ < std::max<std::size_t>(1, opt_.max_inflight_uploads)) {
      buf = new std::vector<float>(global_.data.size());
      ++buffers_made_;
    } else {
      return;  // every slot busy; the next finished upload grants one
    }
    std::string id = round_.waiting.front();
    round_.waiting.erase(round_.waiting.begin());
    auto u = round_.uploads.find(id);
    auto c = clients_.find(id);
    if (u == round_.uploads.end() || c == clients_.end()) {
      free_buffers_.emplace_back(buf);
      continue;
    }
    buf->resize(global_.data.size());
    u->second.buffer = buf;
    u->second.waiting_for_slot = false;
    Status s = u->second.assembler.begin(round_.round, global_.data.size(),
                                         chunk_count(global_.data.size(), opt_.chunk_elements),
                                         opt_.chunk_elements, *buf);
    if (!s) {
      finish_upload(id, Outcome::rejected);
      continue;
    }
    wire::Envelope ready;
    ready.mutable_upload_ready()->set_round(round_.round);
    c->second.link->send(serialize_shared(ready));
  }
}

Status Orchestrator::handle_chunk(Client& c, const wire::TensorChunk& chunk) {
  const std::string id = c.link->id();
  auto u = round_.uploads.find(id);
  if (u == round_.uploads.end() || !u->second.buffer)
    return make_error("chunk without a granted upload (send an update header and wait for upload_ready)");
  if (Status s = u->second.assembler.add(chunk); !s) {
    finish_upload(id, Outcome::rejected);
    return make_error("rejected update: " + s.message());
  }
  if (!u->second.assembler.complete()) return {};
  ClientUpdate update{id, u->second.num_examples, *u->second.buffer};
  Status s = strategy_->add_update(update);
  if (!s) {
    spdlog::warn("client '{}': update left out of round {}: {}", id, round_.round, s.message());
    c.link->send(serialize_shared(make_error_envelope(wire::Error::BAD_UPDATE, "update left out: " + s.message())));
    finish_upload(id, Outcome::rejected);
    return {};
  }
  auto loss = u->second.metrics.find("train_loss");
  if (loss != u->second.metrics.end() && std::isfinite(loss->second)) {
    round_.train_loss_sum += loss->second * double(u->second.num_examples);
    round_.train_weight += double(u->second.num_examples);
  }
  finish_upload(id, Outcome::accepted);
  return {};
}

void Orchestrator::release_upload(const std::string& id) {
  auto u = round_.uploads.find(id);
  if (u == round_.uploads.end()) return;
  if (u->second.buffer) free_buffers_.emplace_back(u->second.buffer);
  if (u->second.waiting_for_slot)
    round_.waiting.erase(std::remove(round_.waiting.begin(), round_.waiting.end(), id), round_.waiting.end());
  round_.uploads.erase(u);
}

void Orchestrator::finish_upload(const std::string& id, Outcome outcome) {
  release_upload(id);
  auto sel = round_.selected.find(id);
  if (sel != round_.selected.end() && sel->second == Outcome::pending) {
    sel->second = outcome;
    if (outcome == Outcome::accepted) ++round_.accepted;
    if (outcome == Outcome::rejected) ++round_.rejected;
    if (outcome == Outcome::dropped) ++round_.dropped;
  }
  grant_slots();
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Secure aggregation (SecAgg+): the protocol logic is secagg::Server; this wires it to links.

Status Orchestrator::handle_secagg(Client& c, const wire::Envelope& msg) {
  const std::string id = c.link->id();
  if (!round_.open || !round_.sa) return make_error("secure-aggregation message outside a secure round");
  auto idx = round_.sa_index.find(id);
  if (idx == round_.sa_index.end()) return make_error("secure-aggregation message from a client outside the cohort");
  const std::uint32_t u = idx->second;
  const std::uint32_t n = round_.sa->config().num_clients;
  auto& server = *round_.sa;
  // A rejected message leaves this client out of the round (the protocol tolerates that while
  // thresholds hold); the session stays open for later rounds.
  auto reject = [&](const std::string& why) {
    spdlog::warn("client '{}': secure aggregation, round {}: {}", id, round_.round, why);
    c.link->send(serialize_shared(make_error_envelope(wire::Error::BAD_MESSAGE, why)));
    cv_.notify_all();
    return Status{};
  };
  auto check_sender = [&](std::uint32_t sender) { return sender == u; };
  switch (msg.payload_case()) {
    case wire::Envelope::kSecaggAdvertiseKeys: {
      auto m = secagg::from_wire(msg.secagg_advertise_keys());
      if (!m) return reject(m.error().message);
      if (!check_sender(m->sender)) return reject("AdvertiseKeys names another client's index");
      if (Status s = server.on_advertise_keys(u, *m); !s) return reject(s.message());
      break;
    }
    case wire::Envelope::kSecaggShareKeys: {
      auto m = secagg::from_wire(msg.secagg_share_keys(), n);
      if (!m) return reject(m.error().message);
      if (!check_sender(m->sender)) return reject("ShareKeys names another client's index");
      if (Status s = server.on_share_keys(u, *m); !s) return reject(s.message());
      break;
    }
    case wire::Envelope::kSecaggMaskedInput: {
      if (round_.sa_uploads.count(id)) return reject("second masked input in this round");
      if (msg.secagg_masked_input().sender() != u) return reject("MaskedInput names another client's index");
      auto& a = round_.sa_uploads[id];
      if (Status s = a.begin(msg.secagg_masked_input(), server.config()); !s) {
        round_.sa_uploads.erase(id);
        return reject(s.message());
      }
      break;
    }
    case wire::Envelope::kChunk: {
      auto& a = round_.sa_uploads[id];
      if (Status s = a.add(msg.chunk()); !s) {
        round_.sa_uploads.erase(id);
        return reject("masked input: " + s.message());
      }
      if (!a.complete()) return {};
      auto m = a.take();
      round_.sa_uploads.erase(id);  // the masked vector goes into the running sum, not kept
      if (!m) return reject(m.error().message);
      if (Status s = server.on_masked_input(u, *m); !s) return reject(s.message());
      break;
    }
    case wire::Envelope::kSecaggUnmaskResponse: {
      auto m = secagg::from_wire(msg.secagg_unmask_response(), n);
      if (!m) return reject(m.error().message);
      if (!check_sender(m->sender)) return reject("UnmaskResponse names another client's index");
      if (Status s = server.on_unmask(u, *m); !s) return reject(s.message());
      break;
    }
    default:
      return make_error("unexpected secure-aggregation message");
  }
  cv_.notify_all();
  return {};
}

Status Orchestrator::setup_secure_round(std::uint64_t round, const std::vector<std::string>& cohort) {
  secagg::RoundOptions ro;
  ro.round = round;
  ro.num_clients = static_cast<std::uint32_t>(cohort.size());
  ro.vector_length = global_.data.size();
  ro.neighbors = opt_.secagg_neighbors;
  ro.threshold = opt_.secagg_threshold;
  ro.dropout = opt_.secagg_dropout;
  ro.corrupt = opt_.secagg_corrupt;
  ro.clip = opt_.secagg_clip;
  // Each client weights its update by its number of examples; the largest announced bounds it.
  double max_weight = 1;
  for (const auto& id : cohort) max_weight = std::max(max_weight, double(clients_[id].num_train_examples));
  ro.max_weight = max_weight;
  ro.min_clients = static_cast<std::uint32_t>(std::min(opt_.min_clients, cohort.size()));
  auto cfg = secagg::make_round_config(ro);
  if (!cfg) return make_error("secure aggregation: " + cfg.error().message);
  secagg::ServerOptions so;
  so.threads = std::max(1u, opt_.secagg_threads);
  so.backend = opt_.secagg_backend;
  auto server = secagg::Server::create(*cfg, so);
  if (!server) return make_error("secure aggregation: " + server.error().message);
  round_.sa.emplace(std::move(server.value()));
  round_.sa_ids = cohort;
  for (std::uint32_t i = 0; i < cohort.size(); ++i) round_.sa_index[cohort[i]] = i;
  return {};
}

Status Orchestrator::collect_secure(std::unique_lock<std::mutex>& lk, clock_type_point deadline) {
  auto& server = *round_.sa;
  auto gone = [&](std::uint32_t i) {
    const auto& id = round_.sa_ids[i];
    return !clients_.count(id) || round_.selected[id] != Outcome::pending;
  };
  // A phase ends when every client still expected has answered or left, or at its deadline.
  auto wait_phase = [&](clock_type_point until) {
    while (!stopping_) {
      auto p = server.pending();
      if (std::all_of(p.begin(), p.end(), gone)) return;
      if (cv_.wait_until(lk, until) == std::cv_status::timeout && clock_type::now() >= until) return;
    }
  };
  auto send_to = [&](std::uint32_t i, const wire::Envelope& e) {
    auto it = clients_.find(round_.sa_ids[i]);
    if (it != clients_.end()) it->second.link->send(serialize_shared(e));
  };
  auto abandon = [&](const std::string& why) {
    wire::Envelope e;
    e.mutable_secagg_abort()->set_round(round_.round);
    e.mutable_secagg_abort()->set_reason(why);
    for (std::uint32_t i = 0; i < round_.sa_ids.size(); ++i) send_to(i, e);
    return make_error("secure aggregation abandoned: " + why);
  };
  auto phase_deadline = [&] { return std::min(deadline, clock_type::now() + opt_.secagg_phase_timeout); };

  wait_phase(phase_deadline());
  if (stopping_) return make_error("stopped");
  auto keys = server.end_advertise_keys();
  if (!keys) return abandon(keys.error().message);
  for (const auto& m : *keys) {
    wire::Envelope e;
    secagg::to_wire(m, e.mutable_secagg_keys_broadcast());
    send_to(m.recipient, e);
  }
  wait_phase(phase_deadline());
  if (stopping_) return make_error("stopped");
  auto shares = server.end_share_keys();
  if (!shares) return abandon(shares.error().message);
  for (const auto& m : *shares) {
    wire::Envelope e;
    secagg::to_wire(m, e.mutable_secagg_shares_forward());
    send_to(m.recipient, e);
  }
  wait_phase(deadline);  // training happens in this phase: the round's own deadline applies
  if (stopping_) return make_error("stopped");
  round_.sa_uploads.clear();  // unfinished masked uploads count as dropped
  auto requests = server.end_masked_input();
  if (!requests) return abandon(requests.error().message);
  for (const auto& m : *requests) {
    wire::Envelope e;
    secagg::to_wire(m, e.mutable_secagg_unmask_request());
    send_to(m.recipient, e);
  }
  wait_phase(clock_type::now() + opt_.secagg_phase_timeout);
  if (stopping_) return make_error("stopped");
  auto result = server.finish();
  if (!result) return abandon(result.error().message);
  const auto& d = result->decoded;
  if (!(d.total_weight > 0)) return abandon("the unmasked total weight is not positive");
  // The cohort's weighted mean delta, applied to the global model: the strategy sees this one
  // vector and nothing of any single client.
  std::vector<float> mean(global_.data.size());
  for (std::size_t i = 0; i < mean.size(); ++i)
    mean[i] = global_.data[i] + static_cast<float>(d.weighted_sum[i] / d.total_weight);
  std::set<std::string> included;
  for (auto i : result->included) included.insert(round_.sa_ids[i]);
  for (auto& [id, outcome] : round_.selected) {
    if (outcome != Outcome::pending) continue;
    outcome = included.count(id) ? Outcome::accepted : Outcome::dropped;
    (outcome == Outcome::accepted ? round_.accepted : round_.dropped)++;
  }
  ClientUpdate cohort{"secure-aggregate", std::max<std::uint64_t>(1, std::llround(d.total_weight)), mean};
  if (Status s = strategy_->add_cohort_mean(cohort, included.size()); !s)
    return make_error("the strategy refused the cohort mean: " + s.message());
  spdlog::info("round {}: secure aggregation of {} clients ({} dropped), quantization error <= {:.2g}",
               round_.round, included.size(), result->dropped.size(), result->error_bound);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Rounds

Status Orchestrator::run() {
  std::uint64_t start;
  {
    std::lock_guard lk(mu_);
    start = completed_;
  }
  if (Status s = metrics_.open(opt_.metrics_out, start, last_metrics_line_); !s) return s;
  if (start >= opt_.rounds) spdlog::info("all {} rounds already committed", opt_.rounds);
  int failures = 0;
  for (std::uint64_t r = start + 1; r <= opt_.rounds;) {
    bool committed = false;
    Status s = run_round(r, committed);
    if (!s) return s;
    if (committed) {
      ++r;
      failures = 0;
    } else if (++failures > opt_.round_retries) {
      return make_error("round " + std::to_string(r) + " failed " + std::to_string(failures) +
                        " times: fewer than --min-clients " + std::to_string(opt_.min_clients) +
                        " updates arrived before --round-timeout");
    }
  }
  // Tell everyone the federation is over so clients exit cleanly.
  std::lock_guard lk(mu_);
  wire::Envelope bye;
  bye.mutable_bye()->set_reason("federation complete after " + std::to_string(opt_.rounds) + " rounds");
  bye.mutable_bye()->set_federation_complete(true);
  auto bytes = serialize_shared(bye);
  for (auto& [id, c] : clients_) {
    c.link->send(bytes);
    c.link->close();
  }
  return {};
}

Status Orchestrator::run_round(std::uint64_t round, bool& committed) {
  committed = false;
  std::unique_lock lk(mu_);
  // Wait for enough clients.
  const std::size_t needed = std::max(opt_.min_clients, opt_.min_available);
  auto last_note = clock_type::now();
  while (!stopping_ && ready_count() < needed) {
    cv_.wait_for(lk, std::chrono::seconds(1));
    if (clock_type::now() - last_note > std::chrono::seconds(10)) {
      spdlog::info("round {}: waiting for clients ({} of {} needed connected)", round, ready_count(), needed);
      last_note = clock_type::now();
    }
  }
  if (stopping_) return make_error("stopped");

  // Select.
  std::vector<std::string> ready;
  for (const auto& [id, c] : clients_)
    if (c.ready) ready.push_back(id);
  std::size_t want = std::max<std::size_t>(
      opt_.min_clients, static_cast<std::size_t>(std::ceil(opt_.fraction_fit * double(ready.size()))));
  want = std::min(want, ready.size());
  std::mt19937_64 rng(mix_seeds(opt_.seed, round));
  std::shuffle(ready.begin(), ready.end(), rng);
  ready.resize(want);

  round_ = RoundState{};
  round_.round = round;
  round_.open = true;
  for (const auto& id : ready) round_.selected[id] = Outcome::pending;
  const bool secure = !opt_.secure_aggregation.empty();
  if (secure) {
    std::sort(ready.begin(), ready.end());  // cohort index = position; any fixed order works
    if (Status s = setup_secure_round(round, ready); !s) {
      round_.open = false;
      return s;  // a configuration that could wrap the ring or cannot meet its threshold
    }
  }

  TrainConfig cfg = opt_.train;
  cfg.seed = mix_seeds(opt_.seed, round);
  strategy_->configure_fit(cfg);
  strategy_->begin_round(global_.data, round);

  // Broadcast: serialized once, shared by every session's queue.
  wire::Envelope task;
  auto* t = task.mutable_fit_task();
  t->set_round(round);
  t->set_model_version(completed_);
  *t->mutable_config() = to_wire(cfg);
  *t->mutable_layout() = to_wire(global_.layout);
  t->set_total_elements(global_.data.size());
  t->set_num_chunks(chunk_count(global_.data.size(), opt_.chunk_elements));
  t->set_chunk_elements(static_cast<std::uint32_t>(opt_.chunk_elements));
  t->set_secure_aggregation(opt_.secure_aggregation);
  std::vector<std::shared_ptr<const std::string>> messages{serialize_shared(task)};
  for (const auto& e : make_chunks(round, global_.data, opt_.chunk_elements)) messages.push_back(serialize_shared(e));
  for (const auto& id : ready) {
    for (const auto& m : messages) clients_[id].link->send(m);
    if (secure) {
      wire::Envelope setup;
      secagg::to_wire(round_.sa->config(), round_.sa_index[id], setup.mutable_secagg_setup());
      clients_[id].link->send(serialize_shared(setup));
    }
  }
  auto started = clock_type::now();
  auto deadline = started + opt_.round_timeout;
  spdlog::info("round {}/{}: training on {} of {} clients", round, opt_.rounds, want, ready_count());

  // Collect.
  if (secure) {
    Status s = collect_secure(lk, deadline);
    round_.open = false;
    round_.sa.reset();
    if (stopping_) return make_error("stopped");
    if (!s) {
      spdlog::warn("round {}: {}; retrying", round, s.message());
      return {};
    }
  }
  auto all_answered = [&] { return round_.accepted + round_.rejected + round_.dropped == round_.selected.size(); };
  while (!secure && !stopping_ && !all_answered()) {
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && clock_type::now() >= deadline) break;
  }
  round_.open = false;
  std::vector<std::string> late;
  for (auto& [id, outcome] : round_.selected)
    if (outcome == Outcome::pending) late.push_back(id);
  for (const auto& id : late) finish_upload(id, Outcome::dropped);
  if (stopping_) return make_error("stopped");
  if (!late.empty())
    spdlog::warn("round {}: {} client(s) missed the {} s deadline", round, late.size(),
                 std::chrono::duration_cast<std::chrono::seconds>(opt_.round_timeout).count());

  if (round_.accepted < std::min(opt_.min_clients, round_.selected.size()) || round_.accepted == 0) {
    spdlog::warn("round {}: only {} update(s) accepted (rejected {}, dropped {}), fewer than --min-clients {}; retrying",
                 round, round_.accepted, round_.rejected, round_.dropped, opt_.min_clients);
    return {};
  }

  // Aggregate. The strategy runs without the lock held by nobody else: sessions only append to
  // round_ while it is open, and it is closed now.
  auto stats = strategy_->finish_round(global_.data);
  if (!stats) {
    spdlog::warn("round {}: aggregation failed: {}; retrying", round, stats.error().message);
    return {};
  }
  std::size_t selected = round_.selected.size();
  lk.unlock();

  std::optional<EvalResult> eval;
  if (evaluator_) eval = evaluator_->network->evaluate(global_.data, evaluator_->data);
  double ms = std::chrono::duration<double, std::milli>(clock_type::now() - started).count();

  lk.lock();
  std::string line = metrics_line(round, selected, ms, *stats, eval ? &*eval : nullptr);
  if (store_) {
    if (Status s = store_->commit(round, global_, strategy_->save_state(), line, opt_.train.model); !s)
      return make_error("cannot commit round " + std::to_string(round) + ": " + s.message());
  }
  if (Status s = metrics_.append(line); !s) return s;
  completed_ = round;
  last_metrics_line_ = line;
  committed = true;
  if (opt_.print_rounds) {
    double loss = eval ? eval->loss : (round_.train_weight > 0 ? round_.train_loss_sum / round_.train_weight : NAN);
    std::printf("round %3llu/%llu  clients %3zu  loss %.4f  accuracy %s  %6.2f s\n",
                static_cast<unsigned long long>(round), static_cast<unsigned long long>(opt_.rounds),
                round_.accepted, loss, eval ? (std::to_string(eval->accuracy).substr(0, 6)).c_str() : "  n/a ",
                ms / 1000.0);
    std::fflush(stdout);
  }
  return {};
}

std::string Orchestrator::metrics_line(std::uint64_t round, std::size_t selected, double duration_ms,
                                       const RoundStats& stats, const EvalResult* eval) const {
  // Hand-formatted so numbers read as people write them (0.8512, 163.1, 3), which Boost.JSON's
  // serializer does not do for doubles; keys are plain identifiers, so no escaping is needed.
  std::string out = "{";
  std::set<std::string, std::less<>> keys;
  auto add = [&](std::string_view key, const std::string& value) {
    if (!keys.emplace(key).second) return;  // the orchestrator's own figures win over a strategy's
    if (out.size() > 1) out += ',';
    out += fmt::format("\"{}\":{}", key, value);
  };
  auto num = [](double v) { return std::isfinite(v) ? fmt::format("{}", v) : std::string("null"); };
  double train_loss = round_.train_weight > 0 ? round_.train_loss_sum / round_.train_weight : NAN;
  add("round", std::to_string(round));
  add("clients", std::to_string(round_.accepted));
  add("selected", std::to_string(selected));
  add("rejected", std::to_string(round_.rejected));
  add("dropped", std::to_string(round_.dropped));
  add("loss", num(eval ? eval->loss : train_loss));
  add("accuracy", eval ? num(eval->accuracy) : "null");
  add("train_loss", num(train_loss));
  add("duration_ms", num(std::round(duration_ms * 10) / 10));
  add("strategy", "\"" + strategy_->name() + "\"");
  for (const auto& [k, v] : stats) {
    bool plain = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '_'; });
    if (plain) add(k, num(v));
  }
  return out + "}";
}

}  // namespace federa
