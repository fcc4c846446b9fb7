// federa-sim's engine: the real Orchestrator, strategy and aggregation backend, driven through an
// in-process transport (sim/transport.hpp) by virtual clients that each run federa-client's own
// ClientSession and built-in trainer. Only the network differs from a deployment.
//
//   SimOptions o;
//   o.clients = 1000;  o.per_round = 50;  o.rounds = 20;
//   o.train.model = "mlp:784,128,10";  o.partition = "dirichlet:0.5";
//   o.metrics_out = "runs/fedavg.jsonl";
//   auto group = make_rank_group();                   // sim/rank_group.hpp: MPI or one process
//   Result<SimReport> r = run_simulation(o, **group); // every rank calls it; rank 0 reports
//   if (r && r->is_root) std::cout << format_summary(*r, o.target_accuracy);
//
// Determinism: a client's training depends only on (seed, round, client), its dropout and
// latency draws on (seed, round, attempt, client), and rank 0 hands the round's updates to the
// orchestrator one at a time in client order, so the strategy sums them in the same order
// whatever the thread or rank count. Metrics then match bit for bit, except the wall-clock
// "duration_ms".
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/train_config.hpp"
#include "coordinator/evaluation.hpp"
#include "coordinator/strategies.hpp"
#include "sim/latency.hpp"
#include "sim/rank_group.hpp"

namespace federa {

struct SimOptions {
  std::size_t clients = 100;
  std::size_t per_round = 10;
  std::size_t min_clients = 1;  // accepted updates a round needs (else it is retried)
  int round_retries = 3;
  std::uint64_t rounds = 5;
  std::uint64_t seed = 1;
  TrainConfig train;  // model and local SGD settings sent with every task
  StrategyOptions strategy;
  std::string device = "auto";  // aggregation backend
  unsigned agg_threads = 1;     // backend threads; fixed so norms sum in one order
  std::string data = "fashion-mnist";
  std::size_t train_limit = 0;  // use the first N training rows only (0 = all)
  std::string partition = "iid";
  std::string eval_data;  // empty = no central evaluation
  // Federated evaluation: each virtual client holds out this share of its rows (0 = none, and no
  // federated evaluation) and evaluates the new model on them as the orchestrator asks.
  double test_fraction = 0.0;
  EvaluationOptions evaluation;
  std::size_t eval_limit = 0;         // first N evaluation rows only (0 = all)
  std::filesystem::path metrics_out;  // JSON lines, as the coordinator writes; empty = none
  unsigned threads = 0;               // client-training threads per rank; 0 = cores
  double dropout = 0.0;               // per client and round
  LatencyModel latency;
  double round_timeout_s = 0.0;  // deadline on the simulated clock; 0 = none
  bool secure_aggregation = false;
  bool progress = false;     // progress bar on stderr
  bool print_rounds = true;  // the coordinator's line per round on stdout
  bool baseline = false;     // also time the same training in a plain loop
};

struct SimReport {
  bool is_root = false;  // rank 0; the other fields are filled there only
  std::string group;     // "local" or the MPI description
  std::uint64_t rounds_completed = 0;
  std::uint64_t client_updates = 0;        // accepted updates over all rounds
  double wall_s = 0;                       // the federated rounds, data loading excluded
  double load_s = 0;                       // loading and partitioning the data
  std::vector<std::string> metrics_lines;  // one per committed round, as in --metrics-out
  std::optional<double> baseline_wall_s;   // with SimOptions::baseline
  std::size_t parameters = 0;
};

// Runs the whole simulation; every rank of `group` must call it with the same options.
Result<SimReport> run_simulation(const SimOptions& options, RankGroup& group);

}  // namespace federa
