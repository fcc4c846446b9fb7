#include "coordinator/admin/admin_state.hpp"

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "coordinator/admin/audit_log.hpp"

namespace federa::admin {

namespace json = boost::json;

namespace {

constexpr std::array<double, 12> kDurationBuckets{0.5, 1,   2.5, 5,   10,   30,
                                                  60,  120, 300, 600, 1800, 3600};

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string iso(AdminState::Clock::time_point t) {
  return t == AdminState::Clock::time_point{} ? std::string() : utc_timestamp(t);
}

json::value iso_or_null(AdminState::Clock::time_point t) {
  if (t == AdminState::Clock::time_point{}) return nullptr;
  return json::value(utc_timestamp(t));
}

json::object outcome_json(const ClientOutcome& o) {
  json::object c;
  c["client"] = o.client;
  c["outcome"] = std::string(outcome_name(o.outcome));
  c["reason"] = o.reason;
  c["num_examples"] = o.num_examples;
  json::object m;
  for (const auto& [k, v] : o.metrics) m[k] = v;
  c["metrics"] = std::move(m);
  return c;
}

double seconds_between(AdminState::Clock::time_point a, AdminState::Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

std::string_view reason_class(UpdateOutcome outcome, std::string_view r) {
  if (outcome == UpdateOutcome::accepted) return "none";
  if (contains(r, "deadline")) return "deadline";
  if (contains(r, "revoked") || contains(r, "no longer a member")) return "revoked";
  if (contains(r, "replaced by a newer connection")) return "replaced";
  if (r.substr(0, 12) == "disconnected") return "disconnected";
  if (r.substr(0, 15) == "client reported") return "client_error";
  if (contains(r, "secure protocol") || contains(r, "masked") || contains(r, "secagg") ||
      contains(r, "SecAgg"))
    return "secure_protocol";
  if (r.substr(0, 8) == "outlier:") return "outlier";  // the screen (--outlier-factor)
  if (contains(r, "layout")) return "layout";
  if (contains(r, "finite")) return "non_finite";
  if (contains(r, "norm")) return "norm";
  if (contains(r, "second update")) return "duplicate";
  return "other";
}

AdminState::AdminState(AdminSettings settings, Publisher publish)
    : settings_(std::move(settings)),
      publish_(std::move(publish)),
      duration_buckets_(kDurationBuckets.size(), 0) {}

void AdminState::publish(std::string_view event, json::object data) {
  if (!publish_) return;
  data["time"] = utc_timestamp(Clock::now());
  std::lock_guard lk(publish_mu_);
  publish_(event, json::serialize(data));
}

void AdminState::seed_rounds(const std::vector<std::string>& lines) {
  std::lock_guard lk(mu_);
  for (const std::string& line : lines) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const json::object& o = v.as_object();
    const json::value* r = o.if_contains("round");
    if (r == nullptr || !r->is_number()) continue;
    const std::uint64_t n = r->to_number<std::uint64_t>();
    RoundRecord rec;
    rec.round = n;
    rec.metrics = o;
    rounds_[n] = std::move(rec);
  }
  trim_rounds_locked();
}

void AdminState::note_action(std::string_view event, json::object data) {
  publish(event, std::move(data));
}

void AdminState::note_stopping(std::string reason) {
  {
    std::lock_guard lk(mu_);
    stopping_ = reason;
  }
  publish("stopping", json::object{{"reason", reason}});
}

void AdminState::on_client_joined(const ClientJoined& e) {
  {
    std::lock_guard lk(mu_);
    ClientRecord& c = clients_[e.client];
    c.connected = true;
    c.address = e.address;
    c.software = e.software;
    c.examples = e.num_train_examples;
    c.since = Clock::now();
    c.left_reason.clear();
    ++joins_;
  }
  publish("client_joined", json::object{{"client", e.client},
                                        {"address", e.address},
                                        {"software", e.software},
                                        {"num_train_examples", e.num_train_examples}});
}

void AdminState::on_client_left(const ClientLeft& e) {
  {
    std::lock_guard lk(mu_);
    ClientRecord& c = clients_[e.client];
    c.connected = false;
    c.left_at = Clock::now();
    c.left_reason = e.reason;
    ++leaves_;
  }
  publish("client_left", json::object{{"client", e.client}, {"reason", e.reason}});
}

void AdminState::on_client_refused(const ClientRefused& e) {
  json::object o{{"client", e.client},
                 {"address", e.address},
                 {"reason", e.reason.message},
                 {"code", std::string(error_code_name(e.reason.code))},
                 {"time", utc_timestamp(Clock::now())}};
  {
    std::lock_guard lk(mu_);
    refusals_.push_back(o);
    while (refusals_.size() > settings_.max_refusals) refusals_.pop_front();
    ++refused_;
  }
  publish("client_refused", std::move(o));
}

void AdminState::on_round_started(const RoundStarted& e) {
  {
    std::lock_guard lk(mu_);
    current_ = Current{};
    current_.open = true;
    current_.round = e.round;
    current_.attempt = e.attempt;
    current_.kind = e.kind;
    current_.secure = e.secure;
    current_.selected = e.selected;
    current_.connected = e.connected;
    current_.started = Clock::now();
    current_.deadline = e.deadline;
    // "rounds taken part in" counts training; an evaluation phase of the same round is not one more
    if (e.kind == TaskKind::fit)
      for (const auto& id : e.selected) ++clients_[id].selected;
  }
  json::array sel;
  for (const auto& id : e.selected) sel.emplace_back(id);
  publish("round_started", json::object{{"round", e.round},
                                        {"attempt", e.attempt},
                                        {"kind", std::string(task_kind_name(e.kind))},
                                        {"selected", std::move(sel)},
                                        {"connected", e.connected},
                                        {"secure", e.secure},
                                        {"deadline", iso(e.deadline)}});
}

void AdminState::on_update(const UpdateEvent& e) {
  const ClientOutcome& o = e.outcome;
  {
    std::lock_guard lk(mu_);
    ClientRecord& c = clients_[o.client];
    c.last_round = e.round;
    c.last_outcome = std::string(outcome_name(o.outcome));
    c.last_reason = o.reason;
    if (o.outcome == UpdateOutcome::accepted)
      ++c.accepted;
    else if (o.outcome == UpdateOutcome::rejected)
      ++c.rejected;
    else
      ++c.dropped;
    ++updates_[{c.last_outcome, std::string(reason_class(o.outcome, o.reason))}];
    if (current_.open && current_.round == e.round && current_.attempt == e.attempt) {
      current_.outcomes[o.client] = o;
      if (o.outcome == UpdateOutcome::accepted)
        ++current_.accepted;
      else if (o.outcome == UpdateOutcome::rejected)
        ++current_.rejected;
      else
        ++current_.dropped;
      current_.last_outcome = Clock::now();
    }
  }
  json::object data = outcome_json(o);
  data["round"] = e.round;
  data["attempt"] = e.attempt;
  publish("update", std::move(data));
}

void AdminState::on_round_failed(const RoundFailed& e) {
  {
    std::lock_guard lk(mu_);
    failures_[e.round].push_back(
        Attempt{e.attempt, e.reason.message, e.selected, e.accepted, e.rejected, e.dropped});
    if (current_.round == e.round) current_.open = false;
    ++rounds_failed_;
  }
  publish("round_failed", json::object{{"round", e.round},
                                       {"attempt", e.attempt},
                                       {"reason", e.reason.message},
                                       {"will_retry", e.will_retry},
                                       {"selected", e.selected},
                                       {"accepted", e.accepted},
                                       {"rejected", e.rejected},
                                       {"dropped", e.dropped}});
}

void AdminState::on_statistics(const StatisticsComputed& e) {
  json::object data{{"from_round", e.before_round},
                    {"sites", e.sites},
                    {"rows", e.rows},
                    {"secure", e.secure},
                    {"requested", e.requested},
                    {"at", utc_timestamp(Clock::now())}};
  {
    std::lock_guard lk(mu_);
    statistics_ = data;
  }
  publish("statistics", std::move(data));
}

void AdminState::on_round_committed(const RoundReport& r) {
  json::object summary;
  {
    std::lock_guard lk(mu_);
    const auto now = Clock::now();
    RoundRecord rec;
    rec.round = r.round;
    rec.attempt = r.attempt;
    rec.committed = now;
    rec.clients = r.clients;
    boost::system::error_code ec;
    json::value line = json::parse(r.metrics_line, ec);
    if (!ec && line.is_object()) rec.metrics = line.as_object();
    if (auto f = failures_.find(r.round); f != failures_.end()) {
      rec.failed = std::move(f->second);
      failures_.erase(f);
    }
    if (current_.round == r.round) {
      rec.started = current_.started;
      rec.secure = current_.secure;
      const auto collected =
          current_.last_outcome == Clock::time_point{} ? now : current_.last_outcome;
      PhaseTotals& train = phases_[current_.secure ? "secagg" : "collect"];
      train.seconds += seconds_between(current_.started, collected);
      ++train.count;
      PhaseTotals& agg = phases_["aggregate"];
      agg.seconds += seconds_between(collected, now);
      ++agg.count;
      current_.open = false;
    }
    const double secs = r.duration_ms / 1000.0;
    for (std::size_t i = 0; i < kDurationBuckets.size(); ++i)
      if (secs <= kDurationBuckets[i]) ++duration_buckets_[i];
    duration_sum_ += secs;
    ++rounds_committed_here_;
    rounds_[r.round] = std::move(rec);
    trim_rounds_locked();
    summary = round_json_locked(rounds_.at(r.round), false);
  }
  publish("round_committed", std::move(summary));
}

void AdminState::on_job_finished(const Status& s) {
  {
    std::lock_guard lk(mu_);
    finished_ = s;
    current_.open = false;
  }
  publish("job_finished",
          json::object{{"ok", s.ok()},
                       {"code", s.ok() ? "ok" : std::string(error_code_name(s.code()))},
                       {"reason", s.ok() ? std::string() : s.message()}});
}

void AdminState::trim_rounds_locked() {
  while (rounds_.size() > settings_.max_rounds_kept) rounds_.erase(rounds_.begin());
  std::size_t detailed = 0;
  for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
    if (it->second.clients.empty()) continue;
    if (++detailed > settings_.max_round_details) {
      it->second.clients.clear();
      it->second.clients.shrink_to_fit();
    }
  }
}

bool AdminState::round_open() const {
  std::lock_guard lk(mu_);
  return current_.open;
}

bool AdminState::finished() const {
  std::lock_guard lk(mu_);
  return finished_.has_value();
}

std::string AdminState::phase_locked(const LiveFacts& f) const {
  if (finished_)
    return finished_->ok()                             ? "finished"
           : finished_->code() == ErrorCode::cancelled ? "stopped"
                                                       : "failed";
  if (!stopping_.empty()) return "stopping";
  if (current_.open) {
    const std::size_t answered = current_.accepted + current_.rejected + current_.dropped;
    return answered >= current_.selected.size() ? "aggregating" : "training";
  }
  if (f.paused) return "paused";
  return "waiting";
}

json::object AdminState::round_json_locked(const RoundRecord& r, bool detail) const {
  json::object o =
      r.metrics;  // every figure of the metrics line (loss, accuracy, fed_*, dp_*, ...)
  o["round"] = r.round;
  o["attempt"] = r.attempt;
  o["started_at"] = iso_or_null(r.started);
  o["committed_at"] = iso_or_null(r.committed);
  o["secure"] = r.secure;
  json::array failed;
  for (const Attempt& a : r.failed)
    failed.push_back(json::object{{"attempt", a.attempt},
                                  {"reason", a.reason},
                                  {"selected", a.selected},
                                  {"accepted", a.accepted},
                                  {"rejected", a.rejected},
                                  {"dropped", a.dropped}});
  o["failed_attempts"] = std::move(failed);
  if (detail) {
    json::array clients;
    for (const ClientOutcome& c : r.clients) clients.push_back(outcome_json(c));
    o["clients"] = std::move(clients);
    o["clients_kept"] = !r.clients.empty();  // false for old rounds and those before a restart
  }
  return o;
}

json::object AdminState::status(const LiveFacts& f) const {
  std::lock_guard lk(mu_);
  json::object o;
  o["federation"] = settings_.federation;
  o["phase"] = phase_locked(f);
  o["paused"] = f.paused;
  o["stopping"] = !stopping_.empty();
  o["rounds_completed"] = f.completed;
  o["rounds_total"] = settings_.total_rounds;
  o["clients_connected"] = f.connected;
  o["min_clients"] = settings_.min_clients;
  o["members"] = f.members.size();
  o["open_membership"] = f.members.empty();
  o["secure_aggregation"] = settings_.secure;
  o["started_at"] = utc_timestamp(started_at_);
  o["server_time"] = utc_timestamp(Clock::now());
  json::value round = nullptr;
  if (current_.open) {
    json::array sel;
    for (const auto& id : current_.selected) sel.emplace_back(id);
    round = json::object{{"round", current_.round},
                         {"attempt", current_.attempt},
                         {"kind", std::string(task_kind_name(current_.kind))},
                         {"secure", current_.secure},
                         {"selected", std::move(sel)},
                         {"accepted", current_.accepted},
                         {"rejected", current_.rejected},
                         {"dropped", current_.dropped},
                         {"started_at", iso(current_.started)},
                         {"deadline", iso(current_.deadline)}};
  }
  o["round"] = std::move(round);
  o["table_statistics"] = statistics_;
  json::value job = nullptr;
  if (finished_)
    job = json::object{
        {"ok", finished_->ok()},
        {"code", finished_->ok() ? "ok" : std::string(error_code_name(finished_->code()))},
        {"reason", finished_->ok() ? std::string() : finished_->message()}};
  o["job_result"] = std::move(job);
  return o;
}

json::object AdminState::clients(const LiveFacts& f) const {
  std::lock_guard lk(mu_);
  json::array list;
  std::set<std::string> names;
  for (const auto& [name, _] : clients_) names.insert(name);
  for (const auto& m : f.members) names.insert(m);
  for (const std::string& name : names) {
    json::object c;
    c["name"] = name;
    c["member"] = f.members.empty() || f.members.count(name) > 0;
    auto it = clients_.find(name);
    if (it == clients_.end()) {
      c["connected"] = false;
      c["seen"] = false;
      list.push_back(std::move(c));
      continue;
    }
    const ClientRecord& r = it->second;
    c["seen"] = true;
    c["connected"] = r.connected;
    c["connected_since"] = r.connected ? iso_or_null(r.since) : json::value(nullptr);
    c["address"] = r.address;
    c["software"] = r.software;
    c["num_train_examples"] = r.examples;
    c["left_at"] = r.connected ? json::value(nullptr) : iso_or_null(r.left_at);
    c["left_reason"] = r.left_reason;
    c["rounds_selected"] = r.selected;
    c["rounds_accepted"] = r.accepted;
    c["rounds_rejected"] = r.rejected;
    c["rounds_dropped"] = r.dropped;
    c["last_round"] = r.last_round;
    c["last_outcome"] = r.last_outcome;
    c["last_reason"] = r.last_reason;
    list.push_back(std::move(c));
  }
  json::array refused;
  for (const auto& r : refusals_) refused.push_back(r);
  return json::object{
      {"clients", std::move(list)}, {"refused", std::move(refused)}, {"connected", f.connected}};
}

json::object AdminState::rounds() const {
  std::lock_guard lk(mu_);
  json::array list;
  for (const auto& [n, r] : rounds_) list.push_back(round_json_locked(r, false));
  return json::object{{"rounds", std::move(list)}};
}

std::optional<json::object> AdminState::round(std::uint64_t n) const {
  std::lock_guard lk(mu_);
  auto it = rounds_.find(n);
  if (it != rounds_.end()) return round_json_locked(it->second, true);
  if (current_.open && current_.round == n) {
    json::object o{{"round", n},
                   {"attempt", current_.attempt},
                   {"in_progress", true},
                   {"started_at", iso(current_.started)},
                   {"deadline", iso(current_.deadline)}};
    json::array clients;
    for (const auto& id : current_.selected) {
      auto oc = current_.outcomes.find(id);
      if (oc != current_.outcomes.end())
        clients.push_back(outcome_json(oc->second));
      else
        clients.push_back(json::object{{"client", id}, {"outcome", "pending"}, {"reason", ""}});
    }
    o["clients"] = std::move(clients);
    return o;
  }
  return std::nullopt;
}

}  // namespace federa::admin
