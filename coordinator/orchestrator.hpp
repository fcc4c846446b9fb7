// The round orchestrator: select -> broadcast -> collect (with a deadline) -> aggregate ->
// evaluate -> commit. It sits above the Transport seam (it is the TransportHandler) and below
// nothing: the TLS server, the in-process simulator and the unit tests' fake links all drive it.
//
//   Orchestrator orch(options, std::move(strategy), initial_model, store, evaluator);
//   MetricsWriter metrics;  orch.add_observer(&metrics);       // coordinator/round_log.hpp
//   WebSocketServer server(io, tls, orch, server_options);     // feeds it connections
//   Status done = orch.run();        // blocks until every round is committed, or stop()
//
// Threading. Transport threads call on_connect/on_message/on_disconnect (never two at once for
// one link); they take the state lock only for bookkeeping. Reassembling an upload's chunks runs
// on the link's own thread outside the lock; the completed update goes to the aggregation worker
// (coordinator/aggregation_worker.hpp), which alone calls the Strategy and the SecAgg+ server.
// run() drives rounds on the caller's thread and commits to disk outside the lock. Events reach
// observers in order, outside the lock (coordinator/events.hpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/dataset.hpp"
#include "common/model.hpp"
#include "common/nn.hpp"
#include "common/train_config.hpp"
#include "common/wire.hpp"
#include "coordinator/aggregation_worker.hpp"
#include "coordinator/event_bus.hpp"
#include "coordinator/events.hpp"
#include "coordinator/secagg_server.hpp"
#include "coordinator/state_store.hpp"
#include "coordinator/strategy.hpp"
#include "coordinator/transport.hpp"
#include "coordinator/upload_pool.hpp"

namespace federa {

struct OrchestratorOptions {
  std::uint64_t rounds = 10;
  std::size_t min_clients = 2;       // updates needed to complete a round (and the least selected)
  std::size_t min_available = 0;     // ready clients needed to start a round; 0 = min_clients
  double fraction_fit = 1.0;         // share of ready clients selected each round
  std::size_t clients_per_round = 0; // exactly this many (capped by those ready); 0 = fraction_fit
  std::chrono::milliseconds round_timeout{std::chrono::minutes(10)};
  int round_retries = 3;             // a round below min_clients is retried this often
  std::uint64_t seed = 1;
  TrainConfig train;                 // base task config; the strategy may add to it
  std::size_t chunk_elements = kDefaultChunkElements;
  std::size_t max_inflight_uploads = 8;  // updates reassembled at once (memory bound)
  std::set<std::string> members;     // allowed certificate CNs; empty = any the CA signed
  std::string federation = "federa";
  // Secure aggregation: "" (off) or "secagg+". The coordinator then sees only the cohort's sum.
  std::string secure_aggregation;
  std::uint32_t secagg_neighbors = 0;   // 0: derived from the cohort size and the fractions below
  std::uint32_t secagg_threshold = 0;   // 0: derived
  double secagg_dropout = 0.1;          // expected dropout fraction the parameters must tolerate
  double secagg_corrupt = 0.05;         // assumed fraction of corrupt clients
  double secagg_clip = 8.0;             // each coordinate of an update delta is clipped to [-c, c]
  std::chrono::milliseconds secagg_phase_timeout{std::chrono::seconds(60)};
  unsigned secagg_threads = 1;
  // Optional, not owned: upload buffers come from this backend (pinned memory for CUDA) and the
  // mod-2^32 sum of masked inputs runs on it. Null: plain host memory.
  AggregationBackend* backend = nullptr;
};

// Centralised evaluation at the coordinator on a held-out set.
struct Evaluator {
  std::unique_ptr<Network> network;
  Dataset data;
};

class Orchestrator : public TransportHandler {
  using Clock = std::chrono::steady_clock;

 public:
  Orchestrator(OrchestratorOptions options, std::unique_ptr<Strategy> strategy, Model global,
               std::optional<StateStore> store, std::optional<Evaluator> evaluator);
  ~Orchestrator() override;

  // Observers get every event from then on; add them before run(). Not owned.
  void add_observer(OrchestratorObserver* observer) { events_.add(observer); }
  // Restores a committed state (from --resume): global model, strategy state, round counter.
  Status restore(CommittedState state);
  // Runs the remaining rounds. Returns ok when all are committed; an Error when a round failed
  // beyond its retries or a commit failed; ErrorCode::cancelled after stop(). The open round of
  // a stopped job is abandoned (never half-committed); the last committed round stays.
  Status run();
  // Thread-safe. stop() ends run(); pause() lets the open round finish but starts no new one
  // until resume().
  void stop();
  void pause();
  void resume();
  // Replaces the member list (empty = any client the CA signed); sessions of removed members
  // are closed at once. Thread-safe.
  void set_members(std::set<std::string> members);
  // Closes every client connection (after run() returned); the transport's sessions are gone
  // once its io_context stops. Called by the program before the transport is torn down.
  void release_links();

  std::uint64_t completed_rounds() const;
  std::size_t connected_clients() const;
  bool paused() const;
  // The member list in force (empty = any client the CA signed). Thread-safe.
  std::set<std::string> members() const;
  // The global model; stable only while run() is not running.
  const Model& global() const { return global_; }

  // TransportHandler
  Status on_connect(const std::shared_ptr<ClientLink>& link) override;
  Status on_message(const std::shared_ptr<ClientLink>& link, const wire::Envelope& msg) override;
  void on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) override;
  void on_refused(const std::string& address, const std::string& why) override;

 private:
  // Where a selected client stands in the current round attempt.
  enum class Stage { waiting, uploading, aggregating, accepted, rejected, dropped };
  struct Upload;
  struct Selected {
    Stage stage = Stage::waiting;
    std::string reason;
    std::uint64_t num_examples = 0;
    std::map<std::string, double> metrics;
  };
  struct Client {
    std::shared_ptr<ClientLink> link;
    bool ready = false;  // Hello received
    std::uint64_t num_train_examples = 0;
  };
  struct SecureState;
  struct RoundState {
    std::uint64_t round = 0;
    std::uint32_t attempt = 0;
    std::uint64_t generation = 0;  // unique per attempt: stale uploads and jobs are ignored
    bool open = false;
    std::map<std::string, Selected> selected;
    std::map<std::string, std::shared_ptr<Upload>> uploads;
    std::deque<std::string> waiting;  // announced updates waiting for a slot, in arrival order
    std::size_t accepted = 0, rejected = 0, dropped = 0, in_flight = 0;
    double train_loss_sum = 0, train_weight = 0;
    std::unique_ptr<SecureState> secure;
  };

  // Transport side (orchestrator.cpp, orchestrator_upload.cpp, orchestrator_secure.cpp). The
  // handlers expect mu_ held unless they say otherwise.
  Status handle_hello(Client& c, const wire::Hello& hello);
  Status handle_update_header(Client& c, const wire::UpdateHeader& h);
  Status handle_chunk(const std::shared_ptr<ClientLink>& link, const wire::TensorChunk& chunk);  // takes mu_
  Status begin_upload(Upload& up);
  void aggregate_upload(std::shared_ptr<Upload> up);  // on the worker
  void grant_slots();
  void release_upload(const std::string& id);
  // Settles a selected client's stage and queues its UpdateEvent.
  void settle(const std::string& id, Stage stage, std::string reason);
  void drop_if_pending(const std::string& id, const std::string& why);
  std::size_t ready_count() const;

  // SecAgg+ (orchestrator_secure.cpp).
  Status setup_secure_round(std::uint64_t round, const std::vector<std::string>& cohort);
  Status handle_secagg(Client& c, const wire::Envelope& msg);
  Status handle_masked_header(Client& c, const wire::SecAggMaskedInputHeader& h);
  void sum_masked_input(std::shared_ptr<Upload> up);  // on the worker
  void secure_reject(const std::string& id, const std::string& why);
  void note_secure_failure(const std::string& id, const std::string& why);
  Status collect_secure(Clock::time_point deadline);  // the round thread; takes mu_ as needed
  void wait_secure_phase(Clock::time_point until);
  template <typename Message>
  void relay_phase(const std::vector<Message>& messages, int next_phase);
  Status abandon_secure(const std::string& why);
  Status apply_secure_result(const secagg::AggregateResult& result);

  // Rounds (orchestrator_round.cpp), on the thread that called run().
  Status run_round(std::uint64_t round, std::uint32_t attempt);
  Status wait_for_clients(std::uint64_t round);
  std::vector<std::string> select_cohort(std::uint64_t round, std::uint32_t attempt) const;  // mu_ held
  Status open_round(std::uint64_t round, std::uint32_t attempt, std::vector<std::string>& cohort);  // mu_ held
  void broadcast_task(std::uint64_t round, std::uint32_t attempt, const TrainConfig& cfg,
                      const std::vector<std::string>& cohort);  // mu_ held
  Status collect_plain(Clock::time_point deadline);
  void close_round();
  Status aggregate_and_commit(std::uint64_t round, std::uint32_t attempt, Clock::time_point started);
  RoundReport make_report(std::uint64_t round, std::uint32_t attempt, double duration_ms,
                          const RoundStats& stats, const EvalResult* eval) const;  // mu_ held
  std::string shortfall_reason(std::size_t needed) const;  // mu_ held
  void say_goodbye();

  OrchestratorOptions opt_;
  std::unique_ptr<Strategy> strategy_;  // touched only on worker_
  Model global_;
  std::optional<StateStore> store_;
  std::optional<Evaluator> evaluator_;
  EventBus events_;
  UploadPool pool_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Client> clients_;
  RoundState round_;
  std::uint64_t generation_ = 0;
  std::uint64_t completed_ = 0;
  std::string last_metrics_line_;
  bool stopping_ = false;
  bool paused_ = false;

  // Declared last: destroyed first, so queued jobs never outlive what they use.
  AggregationWorker worker_;
};

}  // namespace federa
