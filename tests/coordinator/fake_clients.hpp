// Test doubles for the coordinator's Transport seam: a ClientLink that records what the
// orchestrator sends, and a scripted client that speaks the wire protocol through it. No TLS,
// no simulator: the orchestrator's logic alone.
//
//   Orchestrator orch(...);
//   FakeClient a(orch, "site-a");  a.join(100);            // on_connect + Hello
//   auto task = a.wait_for_task();                          // FitTask + the global model
//   a.upload(task->round, weights, 100);                    // header, UploadReady, chunks
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/model.hpp"
#include "common/wire.hpp"
#include "coordinator/events.hpp"
#include "coordinator/transport.hpp"
#include "tests/coordinator/attack_member.hpp"

namespace federa::testing {

class FakeLink : public ClientLink {
 public:
  explicit FakeLink(std::string id) : id_(std::move(id)) {}
  const std::string& id() const override { return id_; }
  std::string address() const override { return "fake:" + id_; }
  void send(std::shared_ptr<const std::string> bytes) override;
  void close_with_error(wire::Error::Code code, const std::string& reason) override;
  void close() override;

  // The next envelope the orchestrator sent that matches `want` (others before it are
  // discarded), or nullopt after `timeout`.
  std::optional<wire::Envelope> wait_for(
      wire::Envelope::PayloadCase want,
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The next envelope the orchestrator sent, whatever it is, if there is one.
  std::optional<wire::Envelope> poll();
  bool closed() const;
  std::optional<wire::Error::Code> close_code() const;
  std::size_t received(wire::Envelope::PayloadCase kind) const;

 private:
  std::string id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<wire::Envelope> inbox_;
  std::map<int, std::size_t> counts_;
  bool closed_ = false;
  std::optional<wire::Error::Code> close_code_;
};

class FakeClient {
 public:
  FakeClient(TransportHandler& handler, std::string id);
  ~FakeClient();
  Status join(std::uint64_t num_examples);
  // on_connect, then this Hello.
  Status join_with(const wire::Envelope& hello);
  bool connected() const { return connected_; }
  // The next FitTask and the global model it carries.
  struct Task {
    wire::FitTask task;
    std::vector<float> global;
  };
  std::optional<Task> wait_for_task(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Header, then chunks once UploadReady came. Returns the orchestrator's answer to the last
  // message it was handed (an Error closes the session as a transport would).
  Status upload(std::uint64_t round, const std::vector<float>& weights, std::uint64_t num_examples,
                std::uint64_t layout_hash, std::size_t chunk_elements = kDefaultChunkElements);
  Status send(const wire::Envelope& e);
  void disconnect(const std::string& why = "test disconnect");
  FakeLink& link() { return *link_; }
  const std::string& id() const { return link_->id(); }

 private:
  TransportHandler& handler_;
  std::shared_ptr<FakeLink> link_;
  bool connected_ = false;
};

// Runs scripted members (tests/coordinator/attack_member.hpp) over fake links on one thread, in
// a fixed order: in every pass member 0's messages are answered first, so who answers first in
// a phase is the order they were added in.
//
//   FakeFederation fed(orchestrator);
//   fed.add({"a", Attack::honest});  fed.add({"evil", Attack::poison});
//   fed.start();  ... orchestrator.run() ...;  fed.stop();
class FakeFederation {
 public:
  explicit FakeFederation(TransportHandler& handler) : handler_(handler) {}
  ~FakeFederation() { stop(); }
  // Connects and sends the member's Hello; returns the orchestrator's answer.
  Status add(const MemberSpec& spec);
  void start();
  void stop();
  FakeClient& client(const std::string& id);
  const Member& member(const std::string& id) const;

 private:
  struct Entry {
    std::unique_ptr<FakeClient> client;
    Member member;
  };
  void loop();
  TransportHandler& handler_;
  std::vector<Entry> entries_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// Records every event in order, as text and as structs.
class EventLog : public OrchestratorObserver {
 public:
  void on_client_joined(const ClientJoined& e) override { add("joined " + e.client); }
  void on_client_left(const ClientLeft& e) override { add("left " + e.client); }
  void on_client_refused(const ClientRefused& e) override { add("refused " + e.client); }
  void on_round_started(const RoundStarted& e) override;
  void on_update(const UpdateEvent& e) override;
  void on_round_failed(const RoundFailed& e) override;
  void on_round_committed(const RoundReport& r) override;
  void on_job_finished(const Status& s) override {
    add(s ? "finished ok" : "finished " + s.message());
  }

  std::vector<std::string> lines() const;
  std::vector<RoundStarted> started() const;
  std::vector<UpdateEvent> updates() const;
  std::vector<RoundFailed> failures() const;
  std::vector<RoundReport> reports() const;
  // Waits until some line starts with `prefix`.
  bool wait_for(const std::string& prefix,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

 private:
  void add(std::string line);
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::vector<RoundStarted> started_;
  std::vector<UpdateEvent> updates_;
  std::vector<RoundFailed> failures_;
  std::vector<RoundReport> reports_;
};

}  // namespace federa::testing
