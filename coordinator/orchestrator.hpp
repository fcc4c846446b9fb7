// The round orchestrator: select -> broadcast -> collect (with a deadline) -> aggregate ->
// evaluate -> commit, as in DESIGN.md. It sits above the Transport seam (it is the
// TransportHandler) and below nothing: the TLS server and the in-process simulator both drive it.
//
//   Orchestrator orch(options, std::move(strategy), initial_model, store, evaluator);
//   WebSocketServer server(io, tls, orch, server_options);   // feeds it connections
//   Status done = orch.run();                                // blocks until all rounds commit
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
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
#include "common/secagg_wire.hpp"
#include "common/wire.hpp"
#include "coordinator/secagg_server.hpp"
#include "coordinator/state_store.hpp"
#include "coordinator/strategy.hpp"
#include "coordinator/transport.hpp"

namespace federa {

struct OrchestratorOptions {
  std::uint64_t rounds = 10;
  std::size_t min_clients = 2;       // updates needed to complete a round (and the least selected)
  std::size_t min_available = 0;     // ready clients needed to start a round; 0 = min_clients
  double fraction_fit = 1.0;         // share of ready clients selected each round
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
  // Optional, not owned: the mod-2^32 sum of masked inputs runs on this backend (the GPU with
  // the CUDA backend). Null: summed in host memory.
  AggregationBackend* secagg_backend = nullptr;
  std::filesystem::path metrics_out;
  bool print_rounds = true;          // a human line per round on stdout
};

// Centralised evaluation at the coordinator on a held-out set.
struct Evaluator {
  std::unique_ptr<Network> network;
  Dataset data;
};

class Orchestrator : public TransportHandler {
  using clock_type_point = std::chrono::steady_clock::time_point;

 public:
  Orchestrator(OrchestratorOptions options, std::unique_ptr<Strategy> strategy, Model global,
               std::optional<StateStore> store, std::optional<Evaluator> evaluator);
  ~Orchestrator() override;

  // Restores a committed state (from --resume): global model, strategy state, round counter.
  Status restore(CommittedState state);
  // Runs the remaining rounds. Returns when all are committed (ok), a round failed beyond its
  // retries or a commit failed (error), or stop() was called (error "stopped").
  Status run();
  void stop();

  std::uint64_t completed_rounds() const;
  const Model& global() const { return global_; }
  std::size_t connected_clients() const;

  // TransportHandler
  Status on_connect(const std::shared_ptr<ClientLink>& link) override;
  Status on_message(const std::shared_ptr<ClientLink>& link, const wire::Envelope& msg) override;
  void on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) override;

 private:
  struct Upload {
    std::uint64_t num_examples = 0;
    std::map<std::string, double> metrics;
    std::vector<float>* buffer = nullptr;  // from the pool while granted
    ChunkAssembler assembler;
    bool waiting_for_slot = false;
  };
  struct Client {
    std::shared_ptr<ClientLink> link;
    bool ready = false;                // Hello received
    std::uint64_t num_train_examples = 0;
  };
  enum class Outcome { pending, accepted, rejected, dropped };
  struct RoundState {
    std::uint64_t round = 0;
    bool open = false;
    std::map<std::string, Outcome> selected;
    std::map<std::string, Upload> uploads;
    std::vector<std::string> waiting;  // clients waiting for an upload slot, in arrival order
    std::size_t accepted = 0, rejected = 0, dropped = 0;
    // Secure aggregation: the round's protocol server, cohort indices and masked uploads.
    std::optional<secagg::Server> sa;
    std::map<std::string, std::uint32_t> sa_index;
    std::vector<std::string> sa_ids;
    std::map<std::string, secagg::MaskedInputAssembler> sa_uploads;
    double train_loss_sum = 0, train_weight = 0;
  };

  Status run_round(std::uint64_t round, bool& committed);
  Status handle_update_header(Client& c, const wire::UpdateHeader& h);
  Status handle_chunk(Client& c, const wire::TensorChunk& chunk);
  Status handle_secagg(Client& c, const wire::Envelope& msg);
  Status setup_secure_round(std::uint64_t round, const std::vector<std::string>& cohort);
  // Runs the four SecAgg+ phases; on success the cohort mean is in the strategy.
  Status collect_secure(std::unique_lock<std::mutex>& lk, clock_type_point deadline);
  void finish_upload(const std::string& id, Outcome outcome);
  void grant_slots();
  void release_upload(const std::string& id);
  // The two helpers below expect mu_ held.
  std::size_t ready_count() const;
  // A selected client that left (or failed) before answering counts as dropped for the round.
  void drop_if_pending(const std::string& id);
  std::string metrics_line(std::uint64_t round, std::size_t selected, double duration_ms,
                           const RoundStats& stats, const EvalResult* eval) const;

  OrchestratorOptions opt_;
  std::unique_ptr<Strategy> strategy_;
  Model global_;
  std::optional<StateStore> store_;
  std::optional<Evaluator> evaluator_;
  MetricsLog metrics_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Client> clients_;
  RoundState round_;
  std::vector<std::unique_ptr<std::vector<float>>> free_buffers_;
  std::size_t buffers_made_ = 0;
  std::uint64_t completed_ = 0;
  std::string last_metrics_line_;
  bool stopping_ = false;
};

}  // namespace federa
