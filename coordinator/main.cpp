// federa-coordinator: serves federated training rounds to authenticated clients.
//
// Exit status: 0 when every round is committed or a SIGINT/SIGTERM stopped the job cleanly (the
// open round abandoned, the last committed round kept); 1 when the job failed (a round beyond its
// retries, a commit, the listener); 2 for bad flags or configuration.
// `federa-coordinator doctor [flags]` checks a setup instead (coordinator/doctor.hpp).
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/csv.hpp"
#include "common/nn.hpp"
#include "common/tls.hpp"
#include "coordinator/admin/admin_listener.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cert_expiry.hpp"
#include "coordinator/cli.hpp"
#include "coordinator/doctor.hpp"
#include "coordinator/initial_model.hpp"
#include "coordinator/round_log.hpp"
#include "coordinator/server.hpp"

using namespace federa;
namespace net = boost::asio;

namespace {

// Everything the job needs before it listens; any failure here is a configuration error.
struct Parts {
  std::unique_ptr<AggregationBackend> backend;
  std::unique_ptr<Strategy> strategy;
  Model global;
  std::optional<Evaluator> evaluator;
  std::optional<CommittedState> committed;
};

std::optional<Evaluator> build_evaluator(const CoordinatorConfig& cfg, const Network* net_or_null) {
  if (cfg.eval_data.empty()) return std::nullopt;
  if (!net_or_null)
    throw OptionsError(
        "--eval-data evaluates built-in models only; a --model from a file is evaluated by the "
        "clients (federated evaluation)");
  const Network& net = *net_or_null;
  auto eval_net = make_network(cfg.orchestrator.train.model);
  if (!eval_net) throw OptionsError("--model: " + eval_net.error().message);
  auto data = load_dataset(cfg.eval_data, Split::test);
  if (cfg.eval_data.rfind("csv:", 0) == 0 && cfg.orchestrator.table) {
    // A table is read again through the federation's schema before round 1 (its own columns
    // may not be the model's input yet: categories are one-hot encoded from the schema).
    if (!data && !parse_csv_spec(cfg.eval_data))
      throw OptionsError("--eval-data: " + data.error().message);
    Evaluator ev{std::move(*eval_net),
                 data && data->features == net.input_features() ? std::move(*data) : Dataset{},
                 cfg.eval_data};
    spdlog::info("centralised evaluation on {}", cfg.eval_data);
    return ev;
  }
  if (!data) throw OptionsError("--eval-data: " + data.error().message);
  if (data->features != net.input_features())
    throw OptionsError("--eval-data has " + std::to_string(data->features) +
                       " features; the model expects " + std::to_string(net.input_features()));
  spdlog::info("centralised evaluation on {} ({} examples)", cfg.eval_data, data->rows);
  return Evaluator{std::move(*eval_net), std::move(*data), {}};
}

// Rounds a metrics file already records (non-empty lines); 0 when there is none.
std::size_t recorded_rounds(const std::string& path) {
  if (path.empty()) return 0;
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

// --resume with nothing committed starts at round 1 (a service's first start, whose config always
// says resume); but when --metrics-out records rounds, the --state-dir is the wrong one (a typo, an
// empty value) and retraining from round 1 would contradict that history: refused.
void check_resume_target(const CoordinatorConfig& cfg) {
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(cfg.state_dir) / "state.json", ec)) return;
  const bool exists = std::filesystem::exists(cfg.state_dir, ec);
  if (std::size_t rounds = recorded_rounds(cfg.metrics_out); rounds > 0)
    throw OptionsError("--resume: " + cfg.state_dir +
                       (exists ? " holds no committed federation" : " does not exist") +
                       ", but --metrics-out " + cfg.metrics_out + " records " +
                       std::to_string(rounds) +
                       " rounds; check the --state-dir path (nothing was started or changed)");
  spdlog::warn(
      "--resume: nothing committed in {}{}; starting a new federation at round 1", cfg.state_dir,
      exists ? "" : " (it does not exist yet; check the path if you meant to continue one)");
}

std::optional<CommittedState> load_committed(const CoordinatorConfig& cfg) {
  if (cfg.state_dir.empty()) throw OptionsError("--state-dir must name a folder");
  StateStore store(cfg.state_dir, cfg.keep_models);
  if (cfg.resume) check_resume_target(cfg);
  if (Status s = store.check_usable(); !s) throw OptionsError("--state-dir: " + s.message());
  auto committed = store.load();
  if (!committed) throw OptionsError("--state-dir: " + committed.error().message);
  if (*committed && !cfg.resume)
    throw OptionsError("--state-dir " + cfg.state_dir +
                       " already holds a federation committed at round " +
                       std::to_string((*committed)->round) +
                       "; pass --resume to continue it or choose another folder");
  if (!*committed) return std::nullopt;
  if ((*committed)->model_spec != cfg.orchestrator.train.model)
    throw OptionsError("--resume: the state was made with --model " + (*committed)->model_spec +
                       ", not " + cfg.orchestrator.train.model);
  return std::move(**committed);
}

// Sets cfg.orchestrator.train.model to what the clients are told (coordinator/initial_model.hpp).
Parts build(CoordinatorConfig& cfg) {
  Parts p;
  auto initial = load_initial_model(cfg.orchestrator.train.model, cfg.orchestrator.seed);
  if (!initial)
    throw OptionsError("--model: " +
                       initial.error().message);  // the message names the spec or file
  spdlog::info("model {}: {}", cfg.orchestrator.train.model, initial->description);
  cfg.orchestrator.train.model = initial->wire_spec;
  p.global = std::move(initial->model);
  p.evaluator = build_evaluator(cfg, initial->network.get());
  auto backend = make_backend(cfg.device, cfg.threads);
  if (!backend) throw OptionsError("--device: " + backend.error().message);
  p.backend = std::move(*backend);
  auto strategy = make_strategy(cfg.strategy, *p.backend);
  if (!strategy) throw OptionsError(strategy.error().message);
  p.strategy = std::move(*strategy);
  if (!cfg.orchestrator.secure_aggregation.empty() && !p.strategy->supports_secure_aggregation())
    throw OptionsError(
        "--strategy " + p.strategy->name() +
        " needs each client's update (or clips each one), "
        "which secure aggregation hides; use a FedAvg-family strategy with --secure-aggregation");
  // --evaluate-only commits nothing: the state folder is neither read nor written.
  if (!cfg.orchestrator.evaluation.only) p.committed = load_committed(cfg);
  if (cfg.strategy.dp_enabled())
    spdlog::info(
        "central DP clips every update; the outlier rule (--outlier-factor) is off with it");
  spdlog::info("strategy {} on the {} backend, model {} ({} parameters)", p.strategy->name(),
               p.backend->name(), cfg.orchestrator.train.model, p.global.data.size());
  return p;
}

// SIGINT/SIGTERM stop the job; SIGHUP re-reads --members (revocation applies at once).
void watch_signals(net::signal_set& signals, Orchestrator& orch, CertificateExpiryWatch& expiry,
                   const CoordinatorConfig& cfg, std::atomic<bool>& stopped) {
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      if (cfg.members_file.empty()) {
        spdlog::info("SIGHUP: no --members file to reload");
      } else if (auto m = read_members_file(cfg.members_file); !m) {
        spdlog::error("SIGHUP: --members: {}; keeping the current members", m.error().message);
      } else {
        spdlog::info("SIGHUP: {} members reloaded from {}", m->size(), cfg.members_file);
        expiry.set_members(*m);
        orch.set_members(std::move(*m));
      }
      return watch_signals(signals, orch, expiry, cfg, stopped);
    }
    stopped = true;
    spdlog::warn("signal {}: stopping; the open round is abandoned, committed rounds stay in {}",
                 sig, cfg.state_dir);
    orch.stop();
  });
}

// Every connection is a file descriptor. The soft limit is raised to the hard one, and the
// connection cap leaves descriptors in reserve for the state store, logs and the process itself,
// so a flood of connections meets a refusal rather than "Too many open files" everywhere.
std::size_t connection_budget(std::size_t wanted) {
  constexpr std::size_t kReserved = 64;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return wanted;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur =
        lim.rlim_max == RLIM_INFINITY ? std::max<rlim_t>(lim.rlim_cur, 1 << 20) : lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  const std::size_t fds =
      lim.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : std::size_t(lim.rlim_cur);
  const std::size_t budget =
      fds > 2 * kReserved ? fds - kReserved : std::max<std::size_t>(1, fds / 2);
  if (budget < wanted)
    spdlog::info(
        "{} open files allowed (RLIMIT_NOFILE): at most {} client connections (--max-connections "
        "{})",
        fds, budget, wanted);
  return std::min(wanted, budget);
}

// --metrics-out (appended, or continued on --resume) and --client-metrics-out.
void open_outputs(const CoordinatorConfig& cfg, std::uint64_t start, const std::string& start_line,
                  MetricsWriter& metrics, ClientMetricsWriter& per_client) {
  if (Status s = metrics.open(cfg.metrics_out, start, start_line,
                              cfg.resume ? MetricsStart::resume : MetricsStart::new_run);
      !s)
    throw OptionsError("--metrics-out: " + s.message());
  if (Status s = per_client.open(cfg.client_metrics_out, start); !s)
    throw OptionsError("--client-metrics-out: " + s.message());
}

// 0 for a completed job or a stop asked for (signal, admin API), 1 for a failed job.
int exit_status(const Status& result, bool stopped, std::uint64_t committed,
                const CoordinatorConfig& cfg) {
  if (result) {
    if (cfg.orchestrator.evaluation.only)
      spdlog::info("done: the model was evaluated across the federation (nothing committed)");
    else
      spdlog::info("done: {} rounds committed; global model in {}/global.safetensors", committed,
                   cfg.state_dir);
    return 0;
  }
  if (result.code() == ErrorCode::cancelled && stopped) {
    spdlog::info("stopped after {} committed rounds", committed);
    return 0;
  }
  spdlog::error("{}", result.message());
  return 1;
}

int serve(const CoordinatorConfig& cfg, Parts parts) {
  // Declared in this order so that each part is destroyed before what it uses: the transport's
  // sessions before the orchestrator they report to, both before the TLS context and io_context.
  net::io_context io(static_cast<int>(cfg.threads));
  CertificateExpiryWatch expiry({.own_cert = cfg.pki + "/coordinator/cert.pem",
                                 .pki_dir = cfg.pki,
                                 .members = cfg.orchestrator.members});
  auto tls =
      make_server_tls_context(cfg.pki + "/ca.pem", cfg.pki + "/coordinator/cert.pem", cfg.key_file);
  if (!tls) throw OptionsError("--pki: " + tls.error().message);
  expiry.attach(**tls);  // warns about members' certificates as they connect
  expiry.check();        // and about our own, now and once a day
  expiry.start_daily(io);
  OrchestratorOptions oo = cfg.orchestrator;
  oo.backend = parts.backend.get();
  MetricsWriter metrics;  // observers outlive the orchestrator that calls them
  ClientMetricsWriter per_client;
  ConsolePrinter console(oo.rounds);
  admin::AdminListener admin;  // an observer too: declared before the orchestrator
  std::atomic<bool> stopped = false;
  const std::uint64_t start = parts.committed ? parts.committed->round : 0;
  const std::string start_line = parts.committed ? parts.committed->metrics_line : "";
  std::optional<StateStore> store;
  if (!oo.evaluation.only) store.emplace(cfg.state_dir, cfg.keep_models);
  Orchestrator orch(oo, std::move(parts.strategy), std::move(parts.global), std::move(store),
                    std::move(parts.evaluator));
  if (parts.committed) {
    if (Status s = orch.restore(std::move(*parts.committed)); !s)
      throw OptionsError("--resume: " + s.message());
    spdlog::info("resuming after committed round {}", start);
  }
  open_outputs(cfg, start, start_line, metrics, per_client);
  orch.add_observer(&metrics);
  orch.add_observer(&console);
  orch.add_observer(&per_client);

  ServerOptions so;
  so.listen = cfg.listen;
  so.max_connections = connection_budget(cfg.max_connections);
  WebSocketServer server(io, *tls, orch, so);
  // Before the federation listener starts, so the admin view misses no client.
  if (Status s = admin.start(
          cfg, orch,
          [&] {
            stopped = true;
            orch.stop();
          },
          [&] { return server.bytes_received(); });
      !s) {
    if (s.code() != ErrorCode::unavailable) throw OptionsError("--admin-listen: " + s.message());
    spdlog::error("--admin-listen: {}", s.message());
    return 1;
  }
  if (Status s = server.start(); !s) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info("listening on {}:{} (TLS 1.3, mutual authentication), {} rounds, --min-clients {}",
               cfg.listen.host, server.bound_port(), oo.rounds, oo.min_clients);
  net::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  watch_signals(signals, orch, expiry, cfg, stopped);
  auto guard = net::make_work_guard(io);
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < cfg.threads; ++i) pool.emplace_back([&io] { io.run(); });

  Status result = orch.run();
  admin.stop();
  server.stop();
  orch.release_links();                               // close every session gracefully
  server.wait_for_sessions(std::chrono::seconds(2));  // goodbyes flush, closes complete
  signals.cancel();
  expiry.stop();
  guard.reset();
  io.stop();
  for (auto& t : pool) t.join();
  return exit_status(result, stopped, orch.completed_rounds(), cfg);
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "doctor")
    return run_coordinator_doctor(argc - 1, argv + 1, std::cout);
  po::options_description desc = coordinator_flags();
  auto vm = parse_options(argc, argv, desc, coordinator_path_keys());
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>(), "coordinator");
  CoordinatorConfig cfg = coordinator_config(*vm);
  Parts parts = build(cfg);
  return serve(cfg, std::move(parts));
}

}  // namespace

int main(int argc, char** argv) { return run_program("federa-coordinator", argc, argv, run); }
