// The in-process transport between the real orchestrator and the virtual clients' sessions. The
// orchestrator's side is a ClientLink per client (SimLink) and an observer of its events; both
// only queue into one Inbox, which rank 0's dispatcher (sim/driver.hpp) drains on its own thread,
// so nothing ever calls back into the orchestrator or a session from inside a call. The clients'
// side is a VirtualClient per client: the ClientSession federa-client runs, whose ServerLink and
// TaskRunner lead to the dispatcher.
//
//   Inbox inbox;
//   auto link = std::make_shared<SimLink>("sim-007", 7, inbox);   // orchestrator.on_connect(link)
//   VirtualClient vc(7, "sim-007", examples, 0, dispatcher);      // vc.session().start()
//   EventForwarder events(inbox);  orchestrator.add_observer(&events);
//   Delivery d = inbox.pop();                                     // blocks for the next one
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <variant>

#include "client/session.hpp"
#include "coordinator/events.hpp"
#include "coordinator/transport.hpp"

namespace federa {

// What the dispatcher is handed, in the order it happened.
struct MessageDelivery {  // an envelope from the orchestrator to one client
  std::size_t client = 0;
  std::shared_ptr<const std::string> bytes;
};
struct CloseDelivery {  // the orchestrator closed a client's connection
  std::size_t client = 0;
  std::string reason;
};
struct JobDone {  // Orchestrator::run() returned
  Status status;
};
using Delivery =
    std::variant<MessageDelivery, CloseDelivery, RoundStarted, RoundFailed, RoundReport, JobDone>;

class Inbox {
 public:
  void push(Delivery d);
  Delivery pop();  // blocks until there is one
  bool try_pop(Delivery& d);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Delivery> q_;
};

// The orchestrator's end of one virtual client's connection.
class SimLink final : public ClientLink {
 public:
  SimLink(std::string id, std::size_t index, Inbox& inbox)
      : id_(std::move(id)), index_(index), inbox_(inbox) {}
  const std::string& id() const override { return id_; }
  void send(std::shared_ptr<const std::string> bytes) override;
  void close_with_error(wire::Error::Code code, const std::string& reason) override;
  void close() override;

 private:
  std::string id_;
  std::size_t index_;
  Inbox& inbox_;
};

// The orchestrator's events the dispatcher acts on: the round barrier (RoundStarted comes after
// every task message of the round was queued), failed attempts and committed rounds.
class EventForwarder final : public OrchestratorObserver {
 public:
  explicit EventForwarder(Inbox& inbox) : inbox_(inbox) {}
  void on_round_started(const RoundStarted& e) override { inbox_.push(e); }
  void on_round_failed(const RoundFailed& e) override { inbox_.push(e); }
  void on_round_committed(const RoundReport& e) override { inbox_.push(e); }

 private:
  Inbox& inbox_;
};

// What a virtual client's session asks of the dispatcher (on the dispatcher's thread).
class ClientHost {
 public:
  virtual ~ClientHost() = default;
  virtual void to_coordinator(std::size_t client, const wire::Envelope& envelope) = 0;
  virtual void session_ended(std::size_t client, const SessionEnd& end) = 0;
  virtual void task_requested(std::size_t client, Task task) = 0;
  // One copy of each round's global model for every session that reassembled it.
  virtual std::shared_ptr<const Model> share_model(std::shared_ptr<const Model> model) = 0;
};

// One virtual client: the real client session behind an in-process ServerLink. Not movable (its
// session refers to it).
class VirtualClient final : public ServerLink, public TaskRunner {
 public:
  // A client with held-out examples says it evaluates.
  VirtualClient(std::size_t index, std::string name, std::uint64_t num_train_examples,
                std::uint64_t num_test_examples, ClientHost& host);
  VirtualClient(const VirtualClient&) = delete;
  VirtualClient& operator=(const VirtualClient&) = delete;

  ClientSession& session() { return session_; }
  void send(const wire::Envelope& envelope) override { host_.to_coordinator(index_, envelope); }
  void close(const SessionEnd& end) override { host_.session_ended(index_, end); }
  void run(Task task) override { host_.task_requested(index_, std::move(task)); }

 private:
  std::size_t index_;
  ClientHost& host_;
  ClientSession session_;
};

// "sim-0042" for client 42 of 1000: zero-padded so names sort in client order.
std::string client_name(std::size_t index, std::size_t count);

}  // namespace federa
