// federa-coordinator: serves federated training rounds to authenticated clients.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "common/nn.hpp"
#include "common/options.hpp"
#include "common/tls.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/server.hpp"
#include "coordinator/strategies.hpp"

namespace fs = std::filesystem;
using namespace federa;

namespace {

std::set<std::string> read_members(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw OptionsError("--members: cannot open " + path);
  std::set<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) out.insert(line);
  }
  if (out.empty()) throw OptionsError("--members: " + path + " lists no client names");
  return out;
}

int run(int argc, char** argv) {
  po::options_description desc(
      "federa-coordinator: serve federated training rounds over mutual TLS.\n\n"
      "usage: federa-coordinator --pki DIR [flags]    (or --config FILE; every key is a flag name)\n\n"
      "flags",
      110);
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  // clang-format off
  desc.add_options()
      ("listen", po::value<std::string>()->default_value("127.0.0.1:8443"), "HOST:PORT to accept clients on (port 0 = any free port)")
      ("pki", po::value<std::string>(), "PKI folder from `federa-pki init`: DIR/ca.pem, DIR/coordinator/{cert,key}.pem (required)")
      ("members", po::value<std::string>(), "file of allowed client names (certificate CNs), one per line; default: any client the CA signed")
      ("federation", po::value<std::string>()->default_value("federa"), "federation name shown to clients")
      ("rounds", po::value<std::uint64_t>()->default_value(10), "rounds to run")
      ("min-clients", po::value<std::size_t>()->default_value(2), "updates needed to complete a round (also the least selected)")
      ("min-available-clients", po::value<std::size_t>()->default_value(0), "connected clients needed before a round starts (0 = --min-clients)")
      ("fraction-fit", po::value<double>()->default_value(1.0), "share of connected clients selected each round (0, 1]")
      ("round-timeout", po::value<double>()->default_value(600), "seconds a round waits for updates")
      ("round-retries", po::value<int>()->default_value(3), "times a round that misses --min-clients is retried before the job fails")
      ("model", po::value<std::string>()->default_value("mlp:784,128,10"), "built-in model: softmax:IN,CLASSES | mlp:IN,H..,CLASSES | cnn:fmnist")
      ("local-epochs", po::value<std::uint32_t>()->default_value(2), "local epochs per round")
      ("batch-size", po::value<std::uint32_t>()->default_value(32), "local minibatch size")
      ("lr", po::value<float>()->default_value(0.02f, "0.02"), "local learning rate")
      ("momentum", po::value<float>()->default_value(0.9f, "0.9"), "local SGD momentum")
      ("weight-decay", po::value<float>()->default_value(0.0f, "0"), "local L2 weight decay")
      ("seed", po::value<std::uint64_t>()->default_value(1), "seed for the initial model, client sampling and per-round seeds")
      ("eval-data", po::value<std::string>()->default_value(""), "held-out set for centralised evaluation, e.g. fashion-mnist (its 10k test split)")
      ("state-dir", po::value<std::string>()->default_value("federa-state"), "folder for the committed global model and federation state")
      ("resume", po::bool_switch(), "continue from the last round committed in --state-dir")
      ("metrics-out", po::value<std::string>()->default_value(""), "append one JSON line per completed round to this file")
      ("device", po::value<std::string>()->default_value("auto"), "aggregation device: auto | cpu | cuda")
      ("threads", po::value<unsigned>()->default_value(hw), "network and aggregation threads")
      ("max-inflight-uploads", po::value<std::size_t>()->default_value(8), "updates reassembled at once (bounds memory to this many model copies)")
      ("secure-aggregation", po::value<std::string>()->default_value("none"), "none | secagg+ : the coordinator learns only the sum of each round's cohort")
      ("secagg-neighbors", po::value<std::uint32_t>()->default_value(0), "SecAgg+ graph degree k (0 = derived from the cohort size, --secagg-dropout and --secagg-corrupt)")
      ("secagg-threshold", po::value<std::uint32_t>()->default_value(0), "SecAgg+ Shamir threshold t (0 = derived)")
      ("secagg-dropout", po::value<double>()->default_value(0.1, "0.1"), "dropout fraction the SecAgg+ parameters must tolerate")
      ("secagg-corrupt", po::value<double>()->default_value(0.05, "0.05"), "fraction of corrupt clients assumed by the SecAgg+ parameters")
      ("secagg-clip", po::value<double>()->default_value(8.0), "SecAgg+ clips each coordinate of an update delta to [-c, c] before quantizing")
      ("secagg-phase-timeout", po::value<double>()->default_value(60), "seconds each key-exchange and unmasking phase waits")
      ("chunk-mb", po::value<double>()->default_value(4.0), "tensor chunk size on the wire, MiB (<= 16)");
  // clang-format on
  add_strategy_options(desc);
  auto vm_opt = parse_options(argc, argv, desc);
  if (!vm_opt) {
    std::cout << desc << "\n";
    return 0;
  }
  auto& vm = *vm_opt;
  setup_logging(vm["log-level"].as<std::string>(), "coordinator");
  if (!vm.count("pki")) throw OptionsError("--pki DIR is required (create one with `federa-pki init --dir DIR`)");

  OrchestratorOptions o;
  o.rounds = vm["rounds"].as<std::uint64_t>();
  o.min_clients = vm["min-clients"].as<std::size_t>();
  o.min_available = vm["min-available-clients"].as<std::size_t>();
  o.fraction_fit = vm["fraction-fit"].as<double>();
  if (!(o.fraction_fit > 0 && o.fraction_fit <= 1)) throw OptionsError("--fraction-fit must be in (0, 1]");
  if (o.min_clients == 0) throw OptionsError("--min-clients must be at least 1");
  double timeout = vm["round-timeout"].as<double>();
  if (!(timeout > 0)) throw OptionsError("--round-timeout must be positive");
  o.round_timeout = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
  o.round_retries = vm["round-retries"].as<int>();
  o.seed = vm["seed"].as<std::uint64_t>();
  o.federation = vm["federation"].as<std::string>();
  o.train.model = vm["model"].as<std::string>();
  o.train.local_epochs = vm["local-epochs"].as<std::uint32_t>();
  o.train.batch_size = vm["batch-size"].as<std::uint32_t>();
  o.train.lr = vm["lr"].as<float>();
  o.train.momentum = vm["momentum"].as<float>();
  o.train.weight_decay = vm["weight-decay"].as<float>();
  if (o.train.local_epochs == 0 || o.train.batch_size == 0) throw OptionsError("--local-epochs and --batch-size must be positive");
  if (!(o.train.lr > 0)) throw OptionsError("--lr must be positive");
  o.max_inflight_uploads = std::max<std::size_t>(1, vm["max-inflight-uploads"].as<std::size_t>());
  double chunk_mb = vm["chunk-mb"].as<double>();
  if (!(chunk_mb > 0 && chunk_mb <= 16)) throw OptionsError("--chunk-mb must be in (0, 16]");
  o.chunk_elements = std::max<std::size_t>(1, static_cast<std::size_t>(chunk_mb * 1024 * 1024 / 4));
  o.metrics_out = vm["metrics-out"].as<std::string>();
  if (vm.count("members")) o.members = read_members(vm["members"].as<std::string>());
  unsigned threads = std::max(1u, vm["threads"].as<unsigned>());
  if (auto sa = vm["secure-aggregation"].as<std::string>(); sa == "secagg+") {
    o.secure_aggregation = sa;
  } else if (sa != "none") {
    throw OptionsError("--secure-aggregation must be none or secagg+");
  }
  o.secagg_neighbors = vm["secagg-neighbors"].as<std::uint32_t>();
  o.secagg_threshold = vm["secagg-threshold"].as<std::uint32_t>();
  o.secagg_dropout = vm["secagg-dropout"].as<double>();
  o.secagg_corrupt = vm["secagg-corrupt"].as<double>();
  o.secagg_clip = vm["secagg-clip"].as<double>();
  o.secagg_phase_timeout = std::chrono::milliseconds(static_cast<long long>(vm["secagg-phase-timeout"].as<double>() * 1000));
  o.secagg_threads = threads;

  auto net = make_network(o.train.model);
  if (!net) throw OptionsError("--model: " + net.error().message);
  Model global((*net)->layout());
  (*net)->init(global.data, o.seed);

  std::optional<Evaluator> evaluator;
  if (auto spec = vm["eval-data"].as<std::string>(); !spec.empty()) {
    auto data = load_dataset(spec, Split::test);
    if (!data) throw OptionsError("--eval-data: " + data.error().message);
    if (data->features != (*net)->input_features())
      throw OptionsError("--eval-data has " + std::to_string(data->features) + " features; the model expects " +
                         std::to_string((*net)->input_features()));
    spdlog::info("centralised evaluation on {} ({} examples)", spec, data->rows);
    evaluator = Evaluator{std::move(net.value()), std::move(data.value())};
  }

  auto backend = make_backend(vm["device"].as<std::string>(), threads);
  if (!backend) throw OptionsError("--device: " + backend.error().message);
  o.secagg_backend = backend->get();
  auto sopts = strategy_options_from(vm);
  if (!sopts) throw OptionsError(sopts.error().message);
  auto strategy = make_strategy(*sopts, **backend);
  if (!strategy) throw OptionsError(strategy.error().message);
  if (!o.secure_aggregation.empty() && !(*strategy)->supports_secure_aggregation())
    throw OptionsError("--strategy " + (*strategy)->name() + " needs each client's update (or clips each one), "
                       "which secure aggregation hides; use a FedAvg-family strategy with --secure-aggregation");
  spdlog::info("strategy {} on the {} backend, model {} ({} parameters)", (*strategy)->name(),
               (*backend)->name(), o.train.model, global.data.size());

  StateStore store(vm["state-dir"].as<std::string>());
  auto committed = store.load();
  if (!committed) throw OptionsError("--state-dir: " + committed.error().message);
  bool resume = vm["resume"].as<bool>();
  if (*committed && !resume)
    throw OptionsError("--state-dir " + store.dir().string() + " already holds a federation committed at round " +
                       std::to_string((*committed)->round) + "; pass --resume to continue it or choose another folder");
  Orchestrator orch(o, std::move(strategy.value()), std::move(global), store, std::move(evaluator));
  if (resume) {
    if (*committed) {
      if ((*committed)->model_spec != o.train.model)
        throw OptionsError("--resume: the state was made with --model " + (*committed)->model_spec + ", not " +
                           o.train.model);
      std::uint64_t r = (*committed)->round;
      if (Status s = orch.restore(std::move(**committed)); !s) throw OptionsError("--resume: " + s.message());
      spdlog::info("resuming after committed round {}", r);
    } else {
      spdlog::info("--resume: nothing committed in {} yet; starting at round 1", store.dir().string());
    }
  }

  const std::string pki = vm["pki"].as<std::string>();
  auto tls = make_server_tls_context(pki + "/ca.pem", pki + "/coordinator/cert.pem", pki + "/coordinator/key.pem");
  if (!tls) throw OptionsError("--pki: " + tls.error().message);

  boost::asio::io_context io(static_cast<int>(threads));
  ServerOptions so;
  so.listen = parse_host_port(vm["listen"].as<std::string>(), "listen");
  WebSocketServer server(io, *tls, orch, so);
  if (Status s = server.start(); !s) throw OptionsError(s.message());
  spdlog::info("listening on {}:{} (TLS 1.3, mutual authentication), {} rounds, --min-clients {}", so.listen.host,
               server.bound_port(), o.rounds, o.min_clients);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  bool interrupted = false;
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    interrupted = true;
    spdlog::warn("signal {}: stopping; the last committed round stays in {}", sig, store.dir().string());
    orch.stop();
  });
  auto guard = boost::asio::make_work_guard(io);
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < threads; ++i) pool.emplace_back([&io] { io.run(); });

  Status result = orch.run();
  // Let the goodbyes flush before the event loop stops.
  server.stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  guard.reset();
  io.stop();
  for (auto& t : pool) t.join();
  if (interrupted) return 130;
  if (!result) {
    spdlog::error("{}", result.message());
    return 1;
  }
  spdlog::info("done: {} rounds committed; global model in {}", orch.completed_rounds(),
               (store.dir() / "global.safetensors").string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const OptionsError& e) {
    std::cerr << "federa-coordinator: " << e.what() << "\nRun with --help for usage.\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "federa-coordinator: fatal: " << e.what() << "\n";
    return 1;
  }
}
