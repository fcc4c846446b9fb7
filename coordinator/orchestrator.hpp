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
#include "coordinator/evaluation.hpp"
#include "coordinator/event_bus.hpp"
#include "coordinator/event_text.hpp"
#include "coordinator/events.hpp"
#include "coordinator/federation_table.hpp"
#include "coordinator/model_broadcast.hpp"
#include "coordinator/orchestrator_screen.hpp"
#include "coordinator/secagg_server.hpp"
#include "coordinator/state_store.hpp"
#include "coordinator/strategy.hpp"
#include "coordinator/transport.hpp"
#include "coordinator/upload_pool.hpp"

namespace federa {

struct OrchestratorOptions {
  std::uint64_t rounds = 10;
  std::size_t min_clients = 2;        // updates needed to complete a round (and the least selected)
  std::size_t min_available = 0;      // ready clients needed to start a round; 0 = min_clients
  double fraction_fit = 1.0;          // share of ready clients selected each round
  std::size_t clients_per_round = 0;  // exactly this many (capped by those ready); 0 = fraction_fit
  std::chrono::milliseconds round_timeout{std::chrono::minutes(10)};
  int round_retries = 3;  // a round below min_clients is retried this often
  std::uint64_t seed = 1;
  TrainConfig train;  // base task config; the strategy may add to it
  std::size_t chunk_elements = kDefaultChunkElements;
  std::size_t max_inflight_uploads = 8;  // updates reassembled at once (memory bound)
  // An upload slot whose client sends no chunk for this long is released and the client counted
  // as dropped, so one staller cannot hold a slot until the round's deadline.
  std::chrono::milliseconds upload_stall_timeout{std::chrono::seconds(60)};
  // Robustness (docs/robustness.md). An update's weight is min(num_examples, what the client
  // announced in Hello, max_examples_per_client); the SecAgg+ quantisation bound comes from here
  // too, never from a client alone.
  std::uint64_t max_examples_per_client = 1'000'000;
  // Plain updates whose change from the global model is longer than this factor times the
  // median of recently accepted changes are rejected (orchestrator_screen.hpp); 0 = off.
  double outlier_factor = 10.0;
  std::set<std::string> members;  // allowed certificate CNs; empty = any the CA signed
  std::string federation = "federa";
  // Secure aggregation: "" (off) or "secagg+". The coordinator then sees only the cohort's sum.
  std::string secure_aggregation;
  std::uint32_t secagg_neighbors = 0;  // 0: derived from the cohort size and the fractions below
  std::uint32_t secagg_threshold = 0;  // 0: derived
  double secagg_dropout = 0.1;         // expected dropout fraction the parameters must tolerate
  double secagg_corrupt = 0.05;        // assumed fraction of corrupt clients
  double secagg_clip = 8.0;            // each coordinate of an update delta is clipped to [-c, c]
  std::chrono::milliseconds secagg_phase_timeout{std::chrono::seconds(60)};
  unsigned secagg_threads = 1;
  // Optional, not owned: upload buffers come from this backend (pinned memory for CUDA) and the
  // mod-2^32 sum of masked inputs runs on it. Null: plain host memory.
  AggregationBackend* backend = nullptr;
  // Federated evaluation on the clients' held-out data (coordinator/evaluation.hpp).
  EvaluationOptions evaluation;
  // Tables (coordinator/orchestrator_table.cpp): with a schema (--schema) the federation is
  // tabular from the start; without one it becomes tabular when a client announces a table, and
  // derives the schema from the sites' reports. --min-examples applies to table sites. Unset:
  // no tabular federation at all.
  std::optional<FederationTable::Options> table;
};

// Centralised evaluation at the coordinator on a held-out set.
struct Evaluator {
  std::unique_ptr<Network> network;
  Dataset data;
  // A CSV file ("csv:FILE:label=COLUMN"): in a tabular federation `data` is read through the
  // federation's schema and standardised with its statistics once they are known.
  std::string table_spec{};
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
  // A tabular federation's statistics are computed again before the next round (sites may have
  // joined or changed their data); the new global means and standard deviations go with every
  // task from then on, and are committed with that round. Fails, saying why, when the federation
  // has no table yet. Thread-safe.
  Status request_statistics();
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
  Status on_chunk(const std::shared_ptr<ClientLink>& link, const ChunkView& chunk) override;
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
    bool ready = false;                    // Hello received
    std::uint64_t num_train_examples = 0;  // as announced, capped at max_examples_per_client
    bool evaluates = false;                // takes evaluate tasks (Hello)
    bool table = false;                    // announced a table (Hello.table)
    bool table_pending = false;            // welcomed, its TableReport not yet in
    std::string software{};                // from Hello, for the join event
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
    std::size_t copying = 0;  // chunk copies running outside the lock
    Clock::time_point next_stall_check;
    double train_loss_sum = 0, train_weight = 0;
    std::unique_ptr<SecureState> secure;
  };

  // Transport side (orchestrator.cpp, orchestrator_upload.cpp, orchestrator_secure.cpp). The
  // handlers expect mu_ held unless they say otherwise.
  Status handle_hello(Client& c, const wire::Hello& hello);
  Status check_data_shape(const wire::Hello& hello) const;
  Status handle_update_header(Client& c, const wire::UpdateHeader& h);
  void take_metrics(const std::string& id, const wire::UpdateHeader& h,
                    std::map<std::string, double>& out);
  Status begin_upload(Upload& up);
  void aggregate_upload(std::shared_ptr<Upload> up);  // on the worker
  void grant_slots();
  void release_upload(const std::string& id);
  // Settles a selected client's stage and queues its UpdateEvent.
  void settle(const std::string& id, Stage stage, std::string reason);
  void drop_if_pending(const std::string& id, const std::string& why);
  void reject_if_pending(const std::string& id, const std::string& why);  // a failed trainer
  std::size_t ready_count() const;
  // Releases the slots of uploads that made no progress for upload_stall_timeout; returns when
  // to look again.
  Clock::time_point reap_stalled_uploads();
  // Logs what a client reported about itself, escaped, cut short and rate-limited.
  void log_client_error(const std::string& id, const std::string& message);

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
  void note_blame();
  std::string with_names(
      const std::string& text) const;  // mu_ held: "client 3" -> "client 'site-c'"
  Status apply_secure_result(const secagg::AggregateResult& result);

  // Federated evaluation (orchestrator_evaluate.cpp), on the thread that called run() unless
  // noted.
  std::optional<FederatedEvaluation> evaluate_if_due(std::uint64_t round);
  Result<FederatedEvaluation> evaluate_federated(std::uint64_t round, std::uint32_t attempt);
  Status open_evaluation(std::uint64_t round, std::uint32_t attempt,
                         Clock::time_point deadline);  // mu_ held
  FederatedEvaluation close_evaluation();              // mu_ held
  Status run_evaluate_only();
  Status wait_for_evaluators();
  Status handle_evaluate_result(Client& c, const wire::EvaluateResult& r);  // mu_ held
  void drop_evaluation(const std::string& id, const std::string& why);      // mu_ held
  void attach_evaluation(RoundReport& report, std::optional<FederatedEvaluation> evaluation) const;
  void prepare_best();                                             // --keep-best, before the rounds
  void keep_best(std::uint64_t round, const RoundReport& report);  // after each commit
  // Tables (orchestrator_table.cpp): joins, the schema, the statistics phase before round 1.
  void join(Client& c);                                           // mu_ held: counts as joined
  void refuse(Client& c, const Status& why);                      // mu_ held: DATA_MISMATCH
  Status check_table_hello(Client& c, const wire::Hello& hello);  // mu_ held
  Status handle_table_report(Client& c, const wire::TableReport& report);
  Status handle_statistics_result(Client& c, const wire::StatisticsResult& result);
  void forget_statistics(const std::string& id);  // mu_ held: it left or failed
  Status prepare_table();                         // the round thread, before round 1
  Status run_statistics(const std::vector<std::string>& sites, bool requested);
  Status refresh_statistics_if_requested();
  Status prepare_evaluator();
  void scale_screen();  // the round thread: a regression's outlier bound follows its target
  Status run_secure_statistics(const std::vector<std::string>& sites);
  Status collect_plain_statistics(const std::vector<std::string>& sites);
  void shape_statistics_round(secagg::RoundOptions& ro) const;  // mu_ held
  Status apply_secure_statistics(const secagg::AggregateResult& result);
  void fill_table_config(TrainConfig& cfg) const;  // mu_ held

  // Rounds (orchestrator_round.cpp), on the thread that called run().
  Status run_round(std::uint64_t round, std::uint32_t attempt);
  Status wait_for_clients(std::uint64_t round);
  std::vector<std::string> select_cohort(std::uint64_t round,
                                         std::uint32_t attempt) const;  // mu_ held
  Status open_round(std::uint64_t round, std::uint32_t attempt,
                    std::vector<std::string>& cohort);  // mu_ held
  void broadcast_task(std::uint64_t round, std::uint32_t attempt, const TrainConfig& cfg,
                      const std::vector<std::string>& cohort);  // mu_ held
  // `task` and the global model's chunks, made as each link drains (model_broadcast.hpp).
  std::shared_ptr<ModelBroadcast> model_broadcast(std::uint64_t round,
                                                  const wire::Envelope& task);  // mu_ held
  // Before global_ changes: no broadcast reads it any longer.
  void freeze_broadcasts();
  Status collect_plain(Clock::time_point deadline);
  void close_round();
  Status aggregate_and_commit(std::uint64_t round, std::uint32_t attempt,
                              Clock::time_point started);
  Result<RoundStats> aggregate_finite();  // on the worker: finish_round, never a non-finite model
  void exclude_culprits(
      std::uint64_t round);  // mu_ held: rejected and blamed ones sit out the retry
  RoundReport make_report(std::uint64_t round, std::uint32_t attempt, double duration_ms,
                          const RoundStats& stats, const EvalResult* eval) const;  // mu_ held
  std::string shortfall_reason(std::size_t needed) const;                          // mu_ held
  void say_goodbye();

  OrchestratorOptions opt_;
  std::unique_ptr<Strategy> strategy_;  // touched only on worker_
  UpdateScreen screen_;                 // touched only on worker_
  StrategyState committed_strategy_;    // worker_: the strategy as of the last commit
  std::map<std::string, double>
      round_norms_;                   // worker_: accepted updates' change norms this attempt
  std::string suspect_, suspect_id_;  // worker_: who a non-finite aggregate is pinned on, and why
  Model global_;
  std::optional<StateStore> store_;
  std::optional<Evaluator> evaluator_;
  EventBus events_;
  UploadPool pool_;
  std::mutex broadcasts_mu_;                               // a leaf lock
  std::vector<std::weak_ptr<ModelBroadcast>> broadcasts_;  // those that may still read global_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Client> clients_;
  RoundState round_;
  std::uint64_t generation_ = 0;
  std::uint64_t completed_ = 0;
  std::string last_metrics_line_;
  // Clients left out of the current round's retries (they spoiled an attempt), with the reason.
  std::uint64_t excluded_round_ = 0;
  std::map<std::string, std::string> excluded_;
  // Clients the SecAgg+ protocol blamed in the current attempt (bad shares, shares that do not
  // match their commitment), with the reason.
  std::map<std::string, std::string> blamed_;
  // What the model can take, from --model (0 = unknown): a Hello announcing other data is refused.
  std::size_t model_features_ = 0;
  int model_classes_ = 0;
  std::map<std::string, std::unique_ptr<LogLimiter>> client_logs_;
  std::optional<EvaluationRound> evaluation_;  // the open federated evaluation
  bool told_no_evaluators_ = false;            // round thread
  std::optional<double> best_value_;           // round thread: --keep-best's best so far
  // A tabular federation (opt_.table set): its schema and figures, whether it is tabular yet,
  // and the statistics request in flight (its sites not yet answered).
  std::unique_ptr<FederationTable> table_;
  bool tabular_ = false;
  std::uint64_t statistics_request_ = 0;
  std::set<std::string> statistics_waiting_;
  std::size_t statistics_received_ = 0;
  int statistics_limb_bits_ = 0;  // > 0 while a SecAgg+ statistics round runs
  bool statistics_requested_ = false;
  bool stopping_ = false;
  bool paused_ = false;

  // Declared last: destroyed first, so queued jobs never outlive what they use.
  AggregationWorker worker_;
};

}  // namespace federa
