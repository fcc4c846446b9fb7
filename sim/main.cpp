// federa-sim: a federation of virtual clients in one process (or over MPI ranks), on the real
// orchestrator, strategies and aggregation backends.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "common/options.hpp"
#include "sim/rank_group.hpp"
#include "sim/report.hpp"
#include "sim/simulation.hpp"

using namespace federa;

namespace {

void describe_flags(po::options_description& desc) {
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  // clang-format off
  desc.add_options()
      ("clients", po::value<std::size_t>()->default_value(100), "virtual clients")
      ("per-round", po::value<std::size_t>()->default_value(10), "clients selected each round")
      ("min-clients", po::value<std::size_t>()->default_value(1), "accepted updates a round needs, else it is retried")
      ("round-retries", po::value<int>()->default_value(3), "times a round below --min-clients is retried before the run fails")
      ("rounds", po::value<std::uint64_t>()->default_value(5), "rounds to run")
      ("model", po::value<std::string>()->default_value("mlp:784,128,10"), "built-in model: softmax:IN,CLASSES | mlp:IN,H..,CLASSES | cnn:fmnist")
      ("local-epochs", po::value<std::uint32_t>()->default_value(1), "local epochs per round")
      ("batch-size", po::value<std::uint32_t>()->default_value(32), "local minibatch size")
      ("lr", po::value<float>()->default_value(0.05f), "local learning rate")
      ("momentum", po::value<float>()->default_value(0.0f), "local SGD momentum")
      ("weight-decay", po::value<float>()->default_value(0.0f), "local L2 weight decay")
      ("seed", po::value<std::uint64_t>()->default_value(1), "seed for the model, partition, sampling, training, dropouts and latencies")
      ("data", po::value<std::string>()->default_value("fashion-mnist"), "training data: fashion-mnist | idx:IMAGES,LABELS | csv:FILE:label=COLUMN")
      ("train-limit", po::value<std::size_t>()->default_value(0), "use only the first N training rows (0 = all)")
      ("partition", po::value<std::string>()->default_value("iid"), "iid | dirichlet:ALPHA | labels:K | quantity:ALPHA")
      ("eval-data", po::value<std::string>(), "held-out set for central evaluation (default: fashion-mnist's test split when --data is fashion-mnist; 'none' to skip)")
      ("eval-limit", po::value<std::size_t>()->default_value(0), "use only the first N evaluation rows (0 = all)")
      ("test-fraction", po::value<double>()->default_value(0.0), "share of each virtual client's rows held out for federated evaluation (0 = none)")
      ("evaluate-every", po::value<std::uint64_t>()->default_value(1), "federated evaluation after every Nth round and the last (0 = never; needs --test-fraction)")
      ("fraction-evaluate", po::value<double>()->default_value(1.0), "share of the clients asked to evaluate each time (0, 1]")
      ("min-evaluate-clients", po::value<std::size_t>()->default_value(1), "answers with held-out data needed for fed_loss and fed_accuracy")
      ("metrics-out", po::value<std::string>()->default_value(""), "JSON lines per round, as the coordinator writes; a plot goes beside it (.svg)")
      ("device", po::value<std::string>()->default_value("auto"), "aggregation device: auto | cpu | cuda")
      ("agg-threads", po::value<unsigned>()->default_value(1), "aggregation threads (keep fixed when comparing runs: norms are summed per thread)")
      ("threads", po::value<unsigned>()->default_value(hw), "client-training threads per process")
      ("dropout", po::value<double>()->default_value(0.0), "probability that a selected client drops out of a round")
      ("straggler", po::value<std::string>()->default_value("none"), "client latency on the simulated clock: none | constant:S | uniform:LO,HI | exponential:MEAN | lognormal:MEAN,SIGMA (seconds)")
      ("round-timeout", po::value<double>()->default_value(600), "round deadline on the simulated clock, seconds (0 = none)")
      ("target-accuracy", po::value<double>()->default_value(0.0), "report the first round reaching this accuracy (0..1)")
      ("secure-aggregation", po::value<std::string>()->default_value("off"), "off | secagg+ (the orchestrator's SecAgg+ rounds; virtual clients run the client protocol)")
      ("progress", po::value<bool>()->default_value(true), "progress bar on stderr when it is a terminal")
      ("baseline", po::bool_switch(), "afterwards, time the same local training in a plain loop and print the ratio");
  // clang-format on
  add_strategy_options(desc);  // --strategy, --mu (FedProx), --server-lr, --dp-...
}

SimOptions sim_options(const po::variables_map& vm) {
  SimOptions o;
  o.clients = vm["clients"].as<std::size_t>();
  o.per_round = vm["per-round"].as<std::size_t>();
  o.min_clients = vm["min-clients"].as<std::size_t>();
  o.round_retries = vm["round-retries"].as<int>();
  o.rounds = vm["rounds"].as<std::uint64_t>();
  o.seed = vm["seed"].as<std::uint64_t>();
  o.train.model = vm["model"].as<std::string>();
  o.train.local_epochs = vm["local-epochs"].as<std::uint32_t>();
  o.train.batch_size = vm["batch-size"].as<std::uint32_t>();
  o.train.lr = vm["lr"].as<float>();
  o.train.momentum = vm["momentum"].as<float>();
  o.train.weight_decay = vm["weight-decay"].as<float>();
  if (o.train.local_epochs == 0 || o.train.batch_size == 0)
    throw OptionsError("--local-epochs and --batch-size must be positive");
  if (!(o.train.lr > 0)) throw OptionsError("--lr must be positive");
  auto sopts = strategy_options_from(vm);
  if (!sopts) throw OptionsError(sopts.error().message);
  o.strategy = *sopts;
  // The DP accountant's sampling rate is known here: the cohort over the population.
  if (vm["dp-sampling-rate"].defaulted() && o.clients > 0)
    o.strategy.dp_sampling_rate = double(std::min(o.per_round, o.clients)) / double(o.clients);
  o.device = vm["device"].as<std::string>();
  o.agg_threads = vm["agg-threads"].as<unsigned>();
  o.threads = std::max(1u, vm["threads"].as<unsigned>());
  o.data = vm["data"].as<std::string>();
  o.train_limit = vm["train-limit"].as<std::size_t>();
  o.partition = vm["partition"].as<std::string>();
  if (vm.count("eval-data")) {
    o.eval_data = vm["eval-data"].as<std::string>();
    if (o.eval_data == "none") o.eval_data.clear();
  } else if (o.data == "fashion-mnist") {
    o.eval_data = "fashion-mnist";
  }
  o.eval_limit = vm["eval-limit"].as<std::size_t>();
  o.test_fraction = vm["test-fraction"].as<double>();
  o.evaluation.every = vm["evaluate-every"].as<std::uint64_t>();
  o.evaluation.fraction = vm["fraction-evaluate"].as<double>();
  o.evaluation.min_clients = vm["min-evaluate-clients"].as<std::size_t>();
  if (!(o.evaluation.fraction > 0 && o.evaluation.fraction <= 1))
    throw OptionsError("--fraction-evaluate must be in (0, 1]");
  if (o.evaluation.min_clients == 0)
    throw OptionsError("--min-evaluate-clients must be at least 1");
  o.metrics_out = vm["metrics-out"].as<std::string>();
  o.dropout = vm["dropout"].as<double>();
  auto latency = parse_latency(vm["straggler"].as<std::string>());
  if (!latency) throw OptionsError(latency.error().message);
  o.latency = *latency;
  o.round_timeout_s = vm["round-timeout"].as<double>();
  const std::string secagg = vm["secure-aggregation"].as<std::string>();
  if (secagg == "secagg+")
    o.secure_aggregation = true;
  else if (secagg != "off")
    throw OptionsError("--secure-aggregation: expected off or secagg+, not '" + secagg + "'");
  o.progress = vm["progress"].as<bool>();
  o.baseline = vm["baseline"].as<bool>();
  return o;
}

// The summary, the plot beside --metrics-out and where things went.
void report(const SimOptions& o, const SimReport& r, double target) {
  auto points = parse_metrics(r.metrics_lines);
  std::cout << format_summary(summarize(r, points, target));
  if (!o.metrics_out.empty()) {
    auto svg = plot_path_for(o.metrics_out);
    std::string title = o.strategy.strategy + ", " + o.train.model + ", " + o.partition + ", " +
                        std::to_string(o.clients) + " clients (" + std::to_string(o.per_round) +
                        " per round)";
    if (Status s = write_text_file(svg, render_svg(points, title)); !s)
      throw std::runtime_error(s.message());
    std::cout << "  metrics               " << o.metrics_out.string()
              << "\n  plot                  " << svg.string() << "\n";
  }
  std::cout << "  processes             " << r.group << ", " << o.threads
            << " training threads each\n";
}

int run(int argc, char** argv) {
  po::options_description desc(
      "federa-sim: simulate a federation of virtual clients on the real orchestrator and "
      "strategies.\n\n"
      "usage: federa-sim [flags]          (or --config FILE; every key is a flag name)\n"
      "       mpirun -np R federa-sim [flags]   spreads the clients' training over R ranks\n\n"
      "flags");
  describe_flags(desc);
  auto vm_opt = parse_options(argc, argv, desc,
                              {{"data", resolve_data_spec},
                               {"eval-data", resolve_data_spec},
                               {"metrics-out", resolve_path}});
  if (!vm_opt) {
    std::cout << desc << "\n";
    return 0;
  }
  auto& vm = *vm_opt;
  // Ten thousand clients joining would be ten thousand info lines: quieter unless asked.
  setup_logging(vm["log-level"].defaulted() ? "error" : vm["log-level"].as<std::string>(), "sim");

  SimOptions o = sim_options(vm);
  auto group = make_rank_group();
  if (!group) throw OptionsError(group.error().message);
  const bool root = (*group)->rank() == 0;
  o.print_rounds = root;
  if (root)
    spdlog::info("{} clients, {} per round, {} rounds, model {}, partition {}, {}", o.clients,
                 o.per_round, o.rounds, o.train.model, o.partition, (*group)->description());

  Result<SimReport> r = run_simulation(o, **group);
  if (!r) {
    std::fprintf(
        stderr, "federa-sim%s: %s\n",
        (*group)->size() > 1 ? (" (rank " + std::to_string((*group)->rank()) + ")").c_str() : "",
        r.error().message.c_str());
    return 1;
  }
  if (r->is_root) report(o, *r, vm["target-accuracy"].as<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_program("federa-sim", argc, argv, run); }
