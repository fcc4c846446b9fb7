// What the admin API shows, built from the orchestrator's events (coordinator/events.hpp) and
// nothing else: the clients (connected since, address, rounds taken part in, last outcome and
// its reason), every round (per-client outcomes, the metrics line, failed attempts), the round in
// progress (phase, deadline) and the counters /metrics exports. It also turns each event into
// a JSON message for the event stream (/api/v1/events).
//
//   AdminState state({.federation = "demo", .total_rounds = 10, .min_clients = 2},
//                    [&](std::string_view event, std::string json) { hub.publish(event, json); });
//   orchestrator.add_observer(&state);
//   boost::json::object s = state.status(facts);   // facts: the orchestrator's getters, now
//
// Thread-safe: events arrive on orchestrator threads, readers are the admin listener's threads.
// The publisher is called outside the state's lock, in event order.
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/events.hpp"

namespace federa::admin {

struct AdminSettings {
  std::string federation = "federa";
  std::uint64_t total_rounds = 0;
  std::size_t min_clients = 1;
  bool secure = false;
  std::size_t max_rounds_kept = 10000;  // round summaries kept (oldest dropped)
  std::size_t max_round_details = 100;  // rounds whose per-client outcomes are kept
  std::size_t max_refusals = 50;        // recent refused connections kept
};

// The orchestrator's and the listener's figures at the moment of a request.
struct LiveFacts {
  std::uint64_t completed = 0;
  std::size_t connected = 0;
  bool paused = false;
  std::set<std::string> members;  // empty: any client the CA signed
  bool members_file = false;      // a --members file backs the list
  std::uint64_t bytes_received = 0;
  std::size_t sse_subscribers = 0;
  std::size_t admin_connections = 0;
  std::map<unsigned, std::uint64_t> admin_responses;  // HTTP status -> count
};

// A low-cardinality label for an update's reason ("deadline", "disconnected", "revoked", ...),
// so /metrics can count outcomes by reason without one series per message.
std::string_view reason_class(UpdateOutcome outcome, std::string_view reason);

class AdminState : public OrchestratorObserver {
 public:
  using Clock = std::chrono::system_clock;
  using Publisher = std::function<void(std::string_view event, std::string json)>;

  explicit AdminState(AdminSettings settings, Publisher publish = {});

  // Rounds committed before this process started (the --metrics-out lines of a resumed run),
  // so the chart keeps its history. Lines that do not parse are skipped.
  void seed_rounds(const std::vector<std::string>& metrics_lines);
  // An action taken through the admin API, for the event stream ("paused", "members_changed").
  void note_action(std::string_view event, boost::json::object data);
  void note_stopping(std::string reason);

  void on_client_joined(const ClientJoined& e) override;
  void on_client_left(const ClientLeft& e) override;
  void on_client_refused(const ClientRefused& e) override;
  void on_round_started(const RoundStarted& e) override;
  void on_update(const UpdateEvent& e) override;
  void on_round_failed(const RoundFailed& e) override;
  void on_round_committed(const RoundReport& r) override;
  void on_statistics(const StatisticsComputed& e) override;
  void on_job_finished(const Status& s) override;

  boost::json::object status(const LiveFacts& facts) const;
  boost::json::object clients(const LiveFacts& facts) const;
  boost::json::object rounds() const;
  std::optional<boost::json::object> round(std::uint64_t n) const;
  std::string prometheus(const LiveFacts& facts) const;
  // Whether a round attempt is open (started, not yet committed or failed).
  bool round_open() const;
  bool finished() const;

 private:
  struct ClientRecord {
    bool connected = false;
    std::string address, software;
    std::uint64_t examples = 0;
    Clock::time_point since{}, left_at{};
    std::string left_reason;
    std::uint64_t selected = 0, accepted = 0, rejected = 0, dropped = 0;
    std::uint64_t last_round = 0;
    std::string last_outcome, last_reason;
  };
  struct Attempt {
    std::uint32_t attempt = 1;
    std::string reason;
    std::size_t selected = 0, accepted = 0, rejected = 0, dropped = 0;
  };
  struct RoundRecord {
    std::uint64_t round = 0;
    std::uint32_t attempt = 1;
    Clock::time_point started{}, committed{};
    boost::json::object metrics;         // the committed metrics line
    std::vector<ClientOutcome> clients;  // empty once trimmed, or for seeded rounds
    std::vector<Attempt> failed;
    bool secure = false;
  };
  struct Current {
    bool open = false;
    std::uint64_t round = 0;
    std::uint32_t attempt = 0;
    TaskKind kind = TaskKind::fit;
    bool secure = false;
    std::vector<std::string> selected;
    std::size_t connected = 0;
    Clock::time_point started{}, deadline{}, last_outcome{};
    std::map<std::string, ClientOutcome> outcomes;
    std::size_t accepted = 0, rejected = 0, dropped = 0;
  };
  struct PhaseTotals {
    double seconds = 0;
    std::uint64_t count = 0;
  };

  void publish(std::string_view event, boost::json::object data);
  std::string phase_locked(const LiveFacts& facts) const;
  boost::json::object round_json_locked(const RoundRecord& r, bool detail) const;
  void trim_rounds_locked();

  AdminSettings settings_;
  Publisher publish_;
  std::mutex publish_mu_;  // one publication at a time, in event order
  mutable std::mutex mu_;
  Clock::time_point started_at_ = Clock::now();
  std::map<std::string, ClientRecord> clients_;
  std::deque<boost::json::object> refusals_;
  std::map<std::uint64_t, RoundRecord> rounds_;
  std::map<std::uint64_t, std::vector<Attempt>> failures_;  // of rounds not yet committed
  Current current_;
  std::string stopping_;
  std::optional<Status> finished_;
  // counters for /metrics (this process only)
  std::uint64_t rounds_committed_here_ = 0;
  std::vector<std::uint64_t> duration_buckets_;
  double duration_sum_ = 0;
  std::map<std::string, PhaseTotals> phases_;
  std::uint64_t rounds_failed_ = 0;
  boost::json::value statistics_ = nullptr;  // the table statistics in force, when computed
  std::map<std::pair<std::string, std::string>, std::uint64_t> updates_;  // (outcome, reason class)
  std::uint64_t joins_ = 0, leaves_ = 0, refused_ = 0;
};

}  // namespace federa::admin
