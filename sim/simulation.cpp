#include "sim/simulation.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "common/dataset.hpp"
#include "common/nn.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/state_store.hpp"
#include "sim/driver.hpp"
#include "sim/progress.hpp"
#include "sim/training.hpp"

namespace federa {

namespace {

using WallClock = std::chrono::steady_clock;

Error bad(std::string message) { return Error{ErrorCode::invalid_argument, std::move(message)}; }

Status validate(const SimOptions& o) {
  if (o.clients == 0) return bad("--clients must be at least 1");
  if (o.per_round == 0 || o.per_round > o.clients)
    return bad("--per-round must be in [1, --clients]");
  if (o.min_clients == 0 || o.min_clients > o.per_round)
    return bad("--min-clients must be in [1, --per-round]");
  if (!(o.dropout >= 0 && o.dropout <= 1)) return bad("--dropout must be in [0, 1]");
  if (!(o.round_timeout_s >= 0)) return bad("--round-timeout must be >= 0");
  if (o.rounds == 0) return bad("--rounds must be at least 1");
  if (!(o.test_fraction >= 0 && o.test_fraction < 1))
    return bad("--test-fraction must be in [0, 1)");
  return {};
}

void limit_rows(Dataset& d, std::size_t limit) {
  if (limit == 0 || limit >= d.rows) return;
  d.rows = limit;
  d.x.resize(limit * d.features);
  d.labels.resize(limit);
}

// Each client's last `fraction` of rows become its held-out ones (its test split).
Partitions hold_out(Partitions& parts, double fraction) {
  Partitions tests(parts.size());
  for (std::size_t c = 0; c < parts.size(); ++c) {
    const auto n = static_cast<std::size_t>(fraction * double(parts[c].size()));
    tests[c].assign(parts[c].end() - static_cast<std::ptrdiff_t>(n), parts[c].end());
    parts[c].resize(parts[c].size() - n);
  }
  return tests;
}

// Every rank loads and partitions the same data (deterministic in the seed); trainers are index
// views into it.
Result<ClientData> load_clients(const SimOptions& o, const Network& net) {
  auto train = load_dataset(o.data, Split::train);
  if (!train) return bad("--data: " + train.error().message);
  limit_rows(*train, o.train_limit);
  if (train->features != net.input_features())
    return bad("--data has " + std::to_string(train->features) + " features; --model " +
               o.train.model + " expects " + std::to_string(net.input_features()));
  ClientData cd;
  cd.seed = o.seed;
  auto parts = partition_dataset(train->labels, train->num_classes, o.partition, o.clients, o.seed);
  if (!parts) return bad("--partition: " + parts.error().message);
  cd.parts = std::move(*parts);
  cd.tests = hold_out(cd.parts, o.test_fraction);
  cd.data = std::make_shared<const Dataset>(std::move(*train));
  return cd;
}

Result<std::optional<Evaluator>> load_evaluator(const SimOptions& o, const Network& net) {
  if (o.eval_data.empty()) return std::optional<Evaluator>{};
  auto data = load_dataset(o.eval_data, Split::test);
  if (!data) return bad("--eval-data: " + data.error().message);
  limit_rows(*data, o.eval_limit);
  if (data->features != net.input_features())
    return bad("--eval-data has " + std::to_string(data->features) +
               " features; the model expects " + std::to_string(net.input_features()));
  auto eval_net = make_network(o.train.model);
  if (!eval_net) return eval_net.error();
  return std::optional<Evaluator>(Evaluator{std::move(*eval_net), std::move(*data)});
}

OrchestratorOptions orchestrator_options(const SimOptions& o, AggregationBackend& backend) {
  OrchestratorOptions oo;
  oo.rounds = o.rounds;
  oo.min_clients = o.min_clients;
  oo.clients_per_round = o.per_round;
  oo.round_timeout = std::chrono::hours(24 * 7);  // every client answers; the deadline is simulated
  oo.round_retries = o.round_retries;
  oo.seed = o.seed;
  oo.train = o.train;
  oo.federation = "federa-sim";
  oo.backend = &backend;
  oo.evaluation = o.evaluation;
  if (o.secure_aggregation) {
    oo.secure_aggregation = "secagg+";
    oo.secagg_threads = std::max(1u, o.agg_threads);
    // Clients answer at once on the simulated clock, but the dispatcher trains before it reads
    // the next phase's messages: no real phase timeout may cut that short.
    oo.secagg_phase_timeout = std::chrono::hours(24 * 7);
    if (o.dropout > 0.1) oo.secagg_dropout = std::min(0.45, o.dropout);
  }
  return oo;
}

// The same local training in a plain loop: no orchestrator, no transport, no strategy object;
// a weighted average in a loop, the same threads. Timed against the simulation.
double run_baseline(const SimOptions& o, const ClientData& cd, Network& net, const Evaluator* eval,
                    const std::map<std::uint64_t, RoundRecord>& records) {
  auto started = WallClock::now();
  Model global(net.layout());
  net.init(global.data, o.seed);
  std::vector<double> acc(global.data.size());
  for (const auto& [round, rec] : records) {
    if (rec.trained.empty()) continue;
    auto outs = train_clients(cd, rec.trained, global, rec.config, o.threads, nullptr);
    std::fill(acc.begin(), acc.end(), 0.0);
    double total = 0;
    for (const auto& out : outs) {
      if (!out.ok) continue;
      const double w = double(out.num_examples);
      for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += w * out.weights[i];
      total += w;
    }
    if (total > 0)
      for (std::size_t i = 0; i < acc.size(); ++i) global.data[i] = float(acc[i] / total);
    if (eval) (void)eval->network->evaluate(global.data, eval->data);
  }
  return std::chrono::duration<double>(WallClock::now() - started).count();
}

Status run_with_baseline(const SimOptions& o, RankGroup& group, const ClientData& cd, Network& net,
                         const Driver& driver, SimReport& report) {
  if (group.size() > 1) return bad("--baseline runs in one process; run it without mpirun");
  auto eval = load_evaluator(o, net);
  if (!eval) return eval.error();
  report.baseline_wall_s = run_baseline(o, cd, net, *eval ? &**eval : nullptr, driver.records());
  return {};
}

// Rank 0: the orchestrator, the dispatcher and the virtual clients.
Status run_root(const SimOptions& o, RankGroup& group, const ClientData& cd, Network& net,
                WallClock::time_point load_started, SimReport& report) {
  auto evaluator = load_evaluator(o, net);
  if (!evaluator) return evaluator.error();
  report.load_s = std::chrono::duration<double>(WallClock::now() - load_started).count();
  auto backend = make_backend(o.device, std::max(1u, o.agg_threads));
  if (!backend) return bad("--device: " + backend.error().message);
  auto strategy = make_strategy(o.strategy, **backend);
  if (!strategy) return bad(strategy.error().message);
  if (o.secure_aggregation && !(*strategy)->supports_secure_aggregation())
    return bad("--secure-aggregation: strategy " + (*strategy)->name() +
               " needs each client's update, which secure aggregation hides; use a "
               "FedAvg-family strategy");
  MetricsLog metrics;
  if (Status s = metrics.open(o.metrics_out, 0, ""); !s)
    return bad("--metrics-out: " + s.message());

  Model global(net.layout());
  net.init(global.data, o.seed);
  report.parameters = global.data.size();
  Orchestrator orch(orchestrator_options(o, **backend), std::move(*strategy), std::move(global),
                    std::nullopt, std::move(*evaluator));
  Progress progress(o.progress, o.rounds);
  Driver driver(o, group, cd, orch, progress, metrics);
  orch.add_observer(&driver.events());
  if (Status s = driver.connect_all(); !s) return s;
  Status run = driver.run(report.wall_s);
  progress.finish();
  report.metrics_lines = driver.metrics_lines();
  report.rounds_completed = driver.rounds_completed();
  report.client_updates = driver.client_updates();
  if (!run) return run;
  if (o.baseline) return run_with_baseline(o, group, cd, net, driver, report);
  return {};
}

}  // namespace

Result<SimReport> run_simulation(const SimOptions& options, RankGroup& group) {
  if (Status s = validate(options); !s) return s.error();
  SimOptions o = options;
  if (o.threads == 0) o.threads = std::max(1u, std::thread::hardware_concurrency());
  SimReport report;
  report.is_root = group.rank() == 0;
  report.group = group.description();

  const auto load_started = WallClock::now();
  auto net = make_network(o.train.model);
  if (!net) return bad("--model: " + net.error().message);
  auto cd = load_clients(o, **net);
  if (!cd) return cd.error();
  if (group.rank() != 0) {
    if (Status s = serve_worker_rank(group, *cd, (*net)->layout(), o.threads); !s) return s.error();
    return report;
  }
  // Whatever happens on rank 0, the workers are released at the end.
  struct StopWorkers {
    RankGroup& g;
    ~StopWorkers() { stop_worker_ranks(g); }
  } stop_workers{group};
  if (Status s = run_root(o, group, *cd, **net, load_started, report); !s) return s.error();
  return report;
}

}  // namespace federa
