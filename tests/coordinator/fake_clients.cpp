#include "tests/coordinator/fake_clients.hpp"

#include <algorithm>
#include <stdexcept>

namespace federa::testing {

void FakeLink::send(std::shared_ptr<const std::string> bytes) {
  wire::Envelope e;
  if (!e.ParseFromString(*bytes)) return;
  {
    std::lock_guard lk(mu_);
    if (closed_) return;
    ++counts_[e.payload_case()];
    inbox_.push_back(std::move(e));
  }
  cv_.notify_all();
}

void FakeLink::close_with_error(wire::Error::Code code, const std::string& reason) {
  {
    std::lock_guard lk(mu_);
    if (closed_) return;
    inbox_.push_back(make_error_envelope(code, reason));
    closed_ = true;
    close_code_ = code;
  }
  cv_.notify_all();
}

void FakeLink::close() {
  {
    std::lock_guard lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::optional<wire::Envelope> FakeLink::wait_for(wire::Envelope::PayloadCase want,
                                                 std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    while (!inbox_.empty()) {
      wire::Envelope e = std::move(inbox_.front());
      inbox_.pop_front();
      if (e.payload_case() == want) return e;
    }
    if (cv_.wait_until(lk, until) == std::cv_status::timeout && inbox_.empty()) return std::nullopt;
  }
}

std::optional<wire::Envelope> FakeLink::poll() {
  std::lock_guard lk(mu_);
  if (inbox_.empty()) return std::nullopt;
  wire::Envelope e = std::move(inbox_.front());
  inbox_.pop_front();
  return e;
}

bool FakeLink::closed() const {
  std::lock_guard lk(mu_);
  return closed_;
}

std::optional<wire::Error::Code> FakeLink::close_code() const {
  std::lock_guard lk(mu_);
  return close_code_;
}

std::size_t FakeLink::received(wire::Envelope::PayloadCase kind) const {
  std::lock_guard lk(mu_);
  auto it = counts_.find(kind);
  return it == counts_.end() ? 0 : it->second;
}

FakeClient::FakeClient(TransportHandler& handler, std::string id)
    : handler_(handler), link_(std::make_shared<FakeLink>(std::move(id))) {}

FakeClient::~FakeClient() { disconnect(); }

Status FakeClient::join(std::uint64_t num_examples) {
  wire::Envelope h;
  h.mutable_hello()->set_protocol_version(kProtocolVersion);
  h.mutable_hello()->set_software("fake-client");
  h.mutable_hello()->set_num_train_examples(num_examples);
  return join_with(h);
}

Status FakeClient::join_with(const wire::Envelope& hello) {
  if (Status s = handler_.on_connect(link_); !s) return s;
  connected_ = true;
  return send(hello);
}

Status FakeClient::send(const wire::Envelope& e) {
  if (!connected_) return make_error(ErrorCode::failed_precondition, "not connected");
  Status s = handler_.on_message(link_, e);
  if (!s) disconnect(s.message());  // what a transport does with an Error
  return s;
}

void FakeClient::disconnect(const std::string& why) {
  if (!connected_) return;
  connected_ = false;
  handler_.on_disconnect(link_, why);
}

std::optional<FakeClient::Task> FakeClient::wait_for_task(std::chrono::milliseconds timeout) {
  auto t = link_->wait_for(wire::Envelope::kFitTask, timeout);
  if (!t) return std::nullopt;
  Task task{t->fit_task(), std::vector<float>(t->fit_task().total_elements())};
  ChunkAssembler in;
  if (!in.begin(task.task.round(), task.task.total_elements(), task.task.num_chunks(),
                task.task.chunk_elements(), task.global))
    return std::nullopt;
  while (!in.complete()) {
    auto c = link_->wait_for(wire::Envelope::kChunk, timeout);
    if (!c || !in.add(c->chunk())) return std::nullopt;
  }
  return task;
}

Status FakeClient::upload(std::uint64_t round, const std::vector<float>& weights,
                          std::uint64_t num_examples, std::uint64_t layout_hash,
                          std::size_t chunk_elements) {
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(round);
  uh->set_num_examples(num_examples);
  uh->set_layout_hash(layout_hash);
  uh->set_total_elements(weights.size());
  uh->set_num_chunks(chunk_count(weights.size(), chunk_elements));
  (*uh->mutable_metrics())["train_loss"] = 0.5;
  if (Status s = send(h); !s) return s;
  if (!link_->wait_for(wire::Envelope::kUploadReady))
    return make_error(ErrorCode::deadline_exceeded, "no upload_ready");
  for (const auto& e : make_chunks(round, weights, chunk_elements))
    if (Status s = send(e); !s) return s;
  return {};
}

Status FakeFederation::add(const MemberSpec& spec) {
  entries_.push_back(
      Entry{std::make_unique<FakeClient>(handler_, spec.id), Member(spec.attack, spec.options)});
  Entry& e = entries_.back();
  return e.client->join_with(e.member.hello());
}

void FakeFederation::start() {
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void FakeFederation::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

FakeClient& FakeFederation::client(const std::string& id) {
  for (auto& e : entries_)
    if (e.client->id() == id) return *e.client;
  throw std::out_of_range("no member " + id);
}

const Member& FakeFederation::member(const std::string& id) const {
  for (const auto& e : entries_)
    if (e.client->id() == id) return e.member;
  throw std::out_of_range("no member " + id);
}

void FakeFederation::loop() {
  while (!stop_) {
    bool any = false;
    for (auto& e : entries_) {
      while (auto in = e.client->link().poll()) {
        any = true;
        if (!e.client->connected()) continue;
        if (e.member.attack() == Attack::leaves_in_unmask && in->has_secagg_unmask_request()) {
          e.client->disconnect("closed by the client");
          continue;
        }
        for (const auto& out : e.member.on_message(*in))
          if (!e.client->send(out)) break;  // the orchestrator ended the session
      }
      if (e.client->connected())
        for (const auto& out : e.member.tick()) {
          any = true;
          if (!e.client->send(out)) break;
        }
      // What a transport does once the orchestrator closed a link.
      if (e.client->connected() && e.client->link().closed())
        e.client->disconnect("closed by the coordinator");
    }
    if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void EventLog::add(std::string line) {
  {
    std::lock_guard lk(mu_);
    lines_.push_back(std::move(line));
  }
  cv_.notify_all();
}

void EventLog::on_round_started(const RoundStarted& e) {
  {
    std::lock_guard lk(mu_);
    started_.push_back(e);
  }
  add("started " + std::to_string(e.round) + "." + std::to_string(e.attempt));
}

void EventLog::on_update(const UpdateEvent& e) {
  {
    std::lock_guard lk(mu_);
    updates_.push_back(e);
  }
  add(std::string(outcome_name(e.outcome.outcome)) + " " + e.outcome.client);
}

void EventLog::on_round_failed(const RoundFailed& e) {
  {
    std::lock_guard lk(mu_);
    failures_.push_back(e);
  }
  add("failed " + std::to_string(e.round) + "." + std::to_string(e.attempt));
}

void EventLog::on_round_committed(const RoundReport& r) {
  {
    std::lock_guard lk(mu_);
    reports_.push_back(r);
  }
  add("committed " + std::to_string(r.round));
}

std::vector<std::string> EventLog::lines() const {
  std::lock_guard lk(mu_);
  return lines_;
}
std::vector<RoundStarted> EventLog::started() const {
  std::lock_guard lk(mu_);
  return started_;
}
std::vector<UpdateEvent> EventLog::updates() const {
  std::lock_guard lk(mu_);
  return updates_;
}
std::vector<RoundFailed> EventLog::failures() const {
  std::lock_guard lk(mu_);
  return failures_;
}
std::vector<RoundReport> EventLog::reports() const {
  std::lock_guard lk(mu_);
  return reports_;
}

bool EventLog::wait_for(const std::string& prefix, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] {
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
  });
}

}  // namespace federa::testing
