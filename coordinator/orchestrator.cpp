// The orchestrator's state and the transport's events: connections, Hello, dispatch. Uploads
// are in orchestrator_upload.cpp, SecAgg+ in orchestrator_secure.cpp, rounds in
// orchestrator_round.cpp.
#include "coordinator/orchestrator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "coordinator/orchestrator_internal.hpp"

namespace federa {

Orchestrator::Orchestrator(OrchestratorOptions options, std::unique_ptr<Strategy> strategy,
                           Model global, std::optional<StateStore> store,
                           std::optional<Evaluator> evaluator)
    : opt_(std::move(options)),
      strategy_(std::move(strategy)),
      screen_(opt_.outlier_factor),
      global_(std::move(global)),
      store_(std::move(store)),
      evaluator_(std::move(evaluator)),
      pool_(opt_.max_inflight_uploads, opt_.backend) {
  opt_.max_examples_per_client = std::max<std::uint64_t>(1, opt_.max_examples_per_client);
  // The data a client needs for this model; unknown for specs the built-in networks do not
  // cover (a user's safetensors model), and then not checked.
  if (auto net = make_network(opt_.train.model); net && (*net)->layout() == global_.layout) {
    model_features_ = (*net)->input_features();
    model_classes_ = (*net)->num_classes();
  }
  if (opt_.table) {
    table_ = std::make_unique<FederationTable>(*opt_.table);
    tabular_ = opt_.table->schema.has_value();
  }
}

// The links are dropped, not closed: their transport may be gone already. A program closes
// them with release_links() while its transport still runs.
Orchestrator::~Orchestrator() {
  worker_.drain();
  std::lock_guard lk(broadcasts_mu_);  // links that outlive us must not read global_
  for (const auto& w : broadcasts_)
    if (auto b = w.lock()) b->abandon();
}

Status Orchestrator::restore(CommittedState state) {
  if (!(state.model.layout == global_.layout))
    return make_error(ErrorCode::failed_precondition,
                      "the committed model's layout differs from --model " + opt_.train.model);
  Status loaded = worker_.call([&] {
    Status s = strategy_->load_state(state.strategy);
    if (s) {
      committed_strategy_ = state.strategy;
      screen_.set_history(state.update_norms);
    }
    return s;
  });
  if (!loaded)
    return make_error(ErrorCode::data_loss,
                      "cannot restore the strategy's state: " + loaded.message());
  std::lock_guard lk(mu_);
  if (!state.table.empty()) {
    if (!table_)
      return make_error(ErrorCode::failed_precondition,
                        "the committed federation trains on a table; this coordinator has no "
                        "table options");
    if (Status s = table_->restore(state.table); !s)
      return make_error(s.code(), "cannot restore the federation's table: " + s.message());
    tabular_ = tabular_ || table_->fixed();
  }
  freeze_broadcasts();
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

bool Orchestrator::paused() const {
  std::lock_guard lk(mu_);
  return paused_;
}

std::set<std::string> Orchestrator::members() const {
  std::lock_guard lk(mu_);
  return opt_.members;
}

std::size_t Orchestrator::ready_count() const {
  return std::size_t(std::count_if(clients_.begin(), clients_.end(),
                                   [](const auto& kv) { return kv.second.ready; }));
}

void Orchestrator::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  cv_.notify_all();
}

void Orchestrator::pause() {
  std::lock_guard lk(mu_);
  paused_ = true;
  cv_.notify_all();
}

void Orchestrator::resume() {
  std::lock_guard lk(mu_);
  paused_ = false;
  cv_.notify_all();
}

void Orchestrator::set_members(std::set<std::string> members) {
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  opt_.members = std::move(members);
  if (opt_.members.empty()) return;
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (opt_.members.count(it->first)) {
      ++it;
      continue;
    }
    const std::string id = it->first;
    spdlog::warn("client '{}' is no longer a member; closing its session", id);
    it->second.link->close_with_error(wire::Error::NOT_A_MEMBER,
                                      "'" + id + "' is no longer a member of this federation");
    it = clients_.erase(it);
    drop_if_pending(id, "membership revoked");
    events_.queue(ClientLeft{id, "membership revoked"});
  }
  cv_.notify_all();
}

void Orchestrator::release_links() {
  std::map<std::string, Client> gone;
  {
    std::lock_guard lk(mu_);
    gone.swap(clients_);
  }
  for (auto& [id, c] : gone) c.link->close();
}

void Orchestrator::drop_if_pending(const std::string& id, const std::string& why) {
  drop_evaluation(id, why);
  auto sel = round_.selected.find(id);
  if (!round_.open || sel == round_.selected.end()) return;
  if (sel->second.stage != Stage::waiting && sel->second.stage != Stage::uploading) return;
  if (round_.secure && round_.secure->phase == SecureState::Phase::unmasking) {
    // Its masked input is already in the sum the survivors unmask: whether it counts is the
    // protocol's to say (apply_secure_result), not its connection's (it was reported dropped
    // while its update was in the model).
    if (auto idx = round_.secure->index.find(id);
        idx != round_.secure->index.end() && round_.secure->masking.count(idx->second)) {
      note_secure_failure(id, why);
      return;
    }
  }
  release_upload(id);
  settle(id, Stage::dropped, why);
}

void Orchestrator::reject_if_pending(const std::string& id, const std::string& why) {
  auto sel = round_.selected.find(id);
  // Under SecAgg+ the protocol must see it leave (a dropout); evaluation keeps its own outcome.
  if (!round_.open || round_.secure || sel == round_.selected.end() ||
      sel->second.stage != Stage::waiting)
    return drop_if_pending(id, why);
  drop_evaluation(id, why);
  settle(id, Stage::rejected, why);
}

void Orchestrator::settle(const std::string& id, Stage stage, std::string reason) {
  auto sel = round_.selected.find(id);
  if (sel == round_.selected.end()) return;
  Selected& s = sel->second;
  if (s.stage == Stage::accepted || s.stage == Stage::rejected || s.stage == Stage::dropped) return;
  if (s.stage == Stage::aggregating) --round_.in_flight;
  s.stage = stage;
  s.reason = std::move(reason);
  if (statistics_limb_bits_ >
      0) {  // a secure statistics round (orchestrator_table.cpp): no update events
    cv_.notify_all();
    return;
  }
  UpdateEvent e{round_.round,
                round_.attempt,
                {id, UpdateOutcome::dropped, s.reason, s.num_examples, s.metrics}};
  switch (stage) {
    case Stage::accepted:
      ++round_.accepted;
      e.outcome.outcome = UpdateOutcome::accepted;
      break;
    case Stage::rejected:
      ++round_.rejected;
      e.outcome.outcome = UpdateOutcome::rejected;
      break;
    case Stage::dropped:
      ++round_.dropped;
      break;
    case Stage::aggregating:
      ++round_.in_flight;
      return;  // not an outcome yet
    default:
      return;
  }
  events_.queue(std::move(e));
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Transport events

Status Orchestrator::on_connect(const std::shared_ptr<ClientLink>& link) {
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  const std::string& id = link->id();
  if (!opt_.members.empty() && !opt_.members.count(id)) {
    Error e =
        make_error(ErrorCode::permission_denied, "'" + id + "' is not a member of this federation");
    events_.queue(ClientRefused{id, link->address(), e});
    return e;
  }
  if (stopping_) return make_error(ErrorCode::unavailable, "the coordinator is shutting down");
  auto it = clients_.find(id);
  if (it != clients_.end()) {
    // A reconnect while the old connection is not yet known dead: the newest wins.
    spdlog::info("client '{}' reconnected; dropping its previous connection", id);
    it->second.link->close_with_error(wire::Error::UNKNOWN, "replaced by a newer connection");
    clients_.erase(it);
    drop_if_pending(id, "replaced by a newer connection");
    events_.queue(ClientLeft{id, "replaced by a newer connection"});
  }
  clients_[id] = Client{link, false, 0};
  spdlog::debug("client '{}' connected", id);
  return {};
}

void Orchestrator::on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) {
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  auto it = clients_.find(link->id());
  if (it == clients_.end() || it->second.link != link) return;  // an already replaced link
  spdlog::info("client '{}' disconnected: {}", link->id(), why);
  const std::string id = link->id();
  const bool was_ready = it->second.ready;
  clients_.erase(it);
  drop_if_pending(id, "disconnected: " + why);
  forget_statistics(id);
  if (was_ready) events_.queue(ClientLeft{id, why});
  cv_.notify_all();
}

void Orchestrator::on_refused(const std::string& address, const std::string& why) {
  events_.queue(ClientRefused{"", address, make_error(ErrorCode::unauthenticated, why)});
  events_.flush();
}

Status Orchestrator::on_message(const std::shared_ptr<ClientLink>& link,
                                const wire::Envelope& msg) {
  // Chunks carry the bulk of the data: they are copied outside the state lock.
  if (msg.payload_case() == wire::Envelope::kChunk) return on_chunk(link, view_of(msg.chunk()));
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  auto it = clients_.find(link->id());
  if (it == clients_.end() || it->second.link != link)
    return make_error(ErrorCode::failed_precondition, "connection was replaced");
  Client& c = it->second;
  if (msg.payload_case() == wire::Envelope::kTableReport)
    return handle_table_report(c, msg.table_report());
  if (!c.ready && msg.payload_case() != wire::Envelope::kHello)
    return make_error(ErrorCode::failed_precondition,
                      std::string("expected hello first, got ") + payload_name(msg));
  switch (msg.payload_case()) {
    case wire::Envelope::kHello:
      return handle_hello(c, msg.hello());
    case wire::Envelope::kUpdateHeader:
      return handle_update_header(c, msg.update_header());
    case wire::Envelope::kSecaggMaskedInput:
      return handle_masked_header(c, msg.secagg_masked_input());
    case wire::Envelope::kEvaluateResult:
      return handle_evaluate_result(c, msg.evaluate_result());
    case wire::Envelope::kSecaggAdvertiseKeys:
    case wire::Envelope::kSecaggShareKeys:
    case wire::Envelope::kSecaggUnmaskResponse:
      return handle_secagg(c, msg);
    case wire::Envelope::kStatisticsResult:
      return handle_statistics_result(c, msg.statistics_result());
    case wire::Envelope::kError:
      log_client_error(link->id(), msg.error().message());
      // BAD_UPDATE from a client: its trainer failed, a rejection with the client's reason
      // (issue 10); any other error (try later, stopped, secure protocol) is a dropout.
      if (msg.error().code() == wire::Error::BAD_UPDATE)
        reject_if_pending(link->id(), "client reported: " + printable(msg.error().message()));
      else
        drop_if_pending(link->id(), "client reported: " + printable(msg.error().message()));
      forget_statistics(link->id());
      return {};
    default:
      return make_error(ErrorCode::invalid_argument, std::string("unexpected message '") +
                                                         payload_name(msg) + "' from a client");
  }
}

Status Orchestrator::handle_hello(Client& c, const wire::Hello& hello) {
  const std::string& id = c.link->id();
  if (c.ready) return make_error(ErrorCode::invalid_argument, "second hello");
  if (hello.protocol_version() != kProtocolVersion) {
    c.link->close_with_error(wire::Error::PROTOCOL_VERSION,
                             "protocol version " + std::to_string(hello.protocol_version()) +
                                 " not supported; this coordinator speaks " +
                                 std::to_string(kProtocolVersion));
    return {};
  }
  if (Status fit = check_data_shape(hello); !fit) {
    refuse(c, fit);
    return {};
  }
  if (Status fit = check_table_hello(c, hello); !fit) {
    refuse(c, fit);
    return {};
  }
  c.software = printable(hello.software(), 64);
  c.num_train_examples = std::min(hello.num_train_examples(), opt_.max_examples_per_client);
  if (hello.num_train_examples() > opt_.max_examples_per_client)
    spdlog::warn("client '{}' announced {} examples; counted as {} (--max-examples-per-client)", id,
                 hello.num_train_examples(), opt_.max_examples_per_client);
  c.evaluates = hello.evaluates();
  wire::Envelope w;
  w.mutable_welcome()->set_protocol_version(kProtocolVersion);
  w.mutable_welcome()->set_client_id(id);
  w.mutable_welcome()->set_federation(opt_.federation);
  // A table site joins once its report fits (handle_table_report).
  c.table = hello.table() && table_;
  if (c.table) w.mutable_welcome()->set_table(table_->schema_json());
  c.link->send(serialize_shared(w));
  if (c.table) {
    c.table_pending = true;
    return {};
  }
  join(c);
  return {};
}

void Orchestrator::join(Client& c) {
  c.ready = true;
  spdlog::info("client '{}' joined ({} examples, {} ready)", c.link->id(), c.num_train_examples,
               ready_count());
  events_.queue(ClientJoined{c.link->id(), c.link->address(), c.num_train_examples, c.software});
  cv_.notify_all();
}

void Orchestrator::refuse(Client& c, const Status& why) {
  spdlog::warn("client '{}' refused: {}", c.link->id(), printable(why.message()));
  events_.queue(ClientRefused{c.link->id(), c.link->address(), why.error()});
  c.link->close_with_error(wire::Error::DATA_MISMATCH, why.message());
}

Status Orchestrator::check_data_shape(const wire::Hello& hello) const {
  if (hello.num_features() != 0 && model_features_ != 0 && hello.num_features() != model_features_)
    return make_error(ErrorCode::failed_precondition,
                      "its data has " + std::to_string(hello.num_features()) +
                          " input features; the model " + opt_.train.model + " takes " +
                          std::to_string(model_features_));
  if (hello.num_classes() != 0 && model_classes_ > 0 &&
      hello.num_classes() > std::uint32_t(model_classes_))
    return make_error(ErrorCode::failed_precondition,
                      "its data has " + std::to_string(hello.num_classes()) +
                          " classes; the model " + opt_.train.model + " has " +
                          std::to_string(model_classes_) + " outputs");
  return {};
}

void Orchestrator::log_client_error(const std::string& id, const std::string& message) {
  auto& limiter = client_logs_[id];
  if (!limiter) limiter = std::make_unique<LogLimiter>(std::chrono::seconds(10));
  if (auto suppressed = limiter->allow())
    spdlog::warn(
        "client '{}' reported an error: {}{}", id, printable(message),
        *suppressed ? fmt::format(" ({} more from it not logged)", *suppressed) : std::string());
}

}  // namespace federa
