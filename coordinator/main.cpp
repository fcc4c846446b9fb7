// federa-coordinator: serves federated training rounds to authenticated clients.
//
// Exit status: 0 when every round is committed or a SIGINT/SIGTERM stopped the job cleanly (the
// open round abandoned, the last committed round kept); 1 when the job failed (a round beyond its
// retries, a commit, the listener); 2 for bad flags or configuration.
// `federa-coordinator doctor [flags]` checks a setup instead (coordinator/doctor.hpp).
#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "common/nn.hpp"
#include "common/tls.hpp"
#include "coordinator/admin/admin_listener.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cert_expiry.hpp"
#include "coordinator/cli.hpp"
#include "coordinator/doctor.hpp"
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

std::optional<Evaluator> build_evaluator(const CoordinatorConfig& cfg, const Network& net) {
  if (cfg.eval_data.empty()) return std::nullopt;
  auto data = load_dataset(cfg.eval_data, Split::test);
  if (!data) throw OptionsError("--eval-data: " + data.error().message);
  if (data->features != net.input_features())
    throw OptionsError("--eval-data has " + std::to_string(data->features) + " features; the model expects " +
                       std::to_string(net.input_features()));
  auto eval_net = make_network(cfg.orchestrator.train.model);
  if (!eval_net) throw OptionsError("--model: " + eval_net.error().message);
  spdlog::info("centralised evaluation on {} ({} examples)", cfg.eval_data, data->rows);
  return Evaluator{std::move(*eval_net), std::move(*data)};
}

std::optional<CommittedState> load_committed(const CoordinatorConfig& cfg) {
  StateStore store(cfg.state_dir);
  auto committed = store.load();
  if (!committed) throw OptionsError("--state-dir: " + committed.error().message);
  if (*committed && !cfg.resume)
    throw OptionsError("--state-dir " + cfg.state_dir + " already holds a federation committed at round " +
                       std::to_string((*committed)->round) + "; pass --resume to continue it or choose another folder");
  if (!*committed) {
    if (cfg.resume) spdlog::info("--resume: nothing committed in {} yet; starting at round 1", cfg.state_dir);
    return std::nullopt;
  }
  if ((*committed)->model_spec != cfg.orchestrator.train.model)
    throw OptionsError("--resume: the state was made with --model " + (*committed)->model_spec + ", not " +
                       cfg.orchestrator.train.model);
  return std::move(**committed);
}

Parts build(const CoordinatorConfig& cfg) {
  Parts p;
  auto net = make_network(cfg.orchestrator.train.model);
  if (!net) throw OptionsError("--model: " + net.error().message);
  p.global = Model((*net)->layout());
  (*net)->init(p.global.data, cfg.orchestrator.seed);
  p.evaluator = build_evaluator(cfg, **net);
  auto backend = make_backend(cfg.device, cfg.threads);
  if (!backend) throw OptionsError("--device: " + backend.error().message);
  p.backend = std::move(*backend);
  auto strategy = make_strategy(cfg.strategy, *p.backend);
  if (!strategy) throw OptionsError(strategy.error().message);
  p.strategy = std::move(*strategy);
  if (!cfg.orchestrator.secure_aggregation.empty() && !p.strategy->supports_secure_aggregation())
    throw OptionsError("--strategy " + p.strategy->name() + " needs each client's update (or clips each one), "
                       "which secure aggregation hides; use a FedAvg-family strategy with --secure-aggregation");
  p.committed = load_committed(cfg);
  spdlog::info("strategy {} on the {} backend, model {} ({} parameters)", p.strategy->name(), p.backend->name(),
               cfg.orchestrator.train.model, p.global.data.size());
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
    spdlog::warn("signal {}: stopping; the open round is abandoned, committed rounds stay in {}", sig, cfg.state_dir);
    orch.stop();
  });
}

int serve(const CoordinatorConfig& cfg, Parts parts) {
  // Declared in this order so that each part is destroyed before what it uses: the transport's
  // sessions before the orchestrator they report to, both before the TLS context and io_context.
  net::io_context io(static_cast<int>(cfg.threads));
  CertificateExpiryWatch expiry(
      {.own_cert = cfg.pki + "/coordinator/cert.pem", .pki_dir = cfg.pki, .members = cfg.orchestrator.members});
  auto tls = make_server_tls_context(cfg.pki + "/ca.pem", cfg.pki + "/coordinator/cert.pem",
                                     cfg.key_file);
  if (!tls) throw OptionsError("--pki: " + tls.error().message);
  expiry.attach(**tls);  // warns about members' certificates as they connect
  expiry.check();        // and about our own, now and once a day
  expiry.start_daily(io);
  OrchestratorOptions oo = cfg.orchestrator;
  oo.backend = parts.backend.get();
  MetricsWriter metrics;  // observers outlive the orchestrator that calls them
  ConsolePrinter console(oo.rounds);
  admin::AdminListener admin;  // an observer too: declared before the orchestrator
  std::atomic<bool> stopped = false;
  const std::uint64_t start = parts.committed ? parts.committed->round : 0;
  const std::string start_line = parts.committed ? parts.committed->metrics_line : "";
  Orchestrator orch(oo, std::move(parts.strategy), std::move(parts.global), StateStore(cfg.state_dir),
                    std::move(parts.evaluator));
  if (parts.committed) {
    if (Status s = orch.restore(std::move(*parts.committed)); !s) throw OptionsError("--resume: " + s.message());
    spdlog::info("resuming after committed round {}", start);
  }
  if (Status s = metrics.open(cfg.metrics_out, start, start_line); !s) throw OptionsError("--metrics-out: " + s.message());
  orch.add_observer(&metrics);
  orch.add_observer(&console);

  ServerOptions so;
  so.listen = cfg.listen;
  WebSocketServer server(io, *tls, orch, so);
  // Before the federation listener starts, so the admin view misses no client.
  if (Status s = admin.start(cfg, orch, [&] { stopped = true; orch.stop(); }, [&] { return server.bytes_received(); });
      !s) {
    if (s.code() != ErrorCode::unavailable) throw OptionsError("--admin-listen: " + s.message());
    spdlog::error("--admin-listen: {}", s.message());
    return 1;
  }
  if (Status s = server.start(); !s) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info("listening on {}:{} (TLS 1.3, mutual authentication), {} rounds, --min-clients {}", cfg.listen.host,
               server.bound_port(), oo.rounds, oo.min_clients);
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
  if (result) {
    spdlog::info("done: {} rounds committed; global model in {}/global.safetensors", orch.completed_rounds(),
                 cfg.state_dir);
    return 0;
  }
  if (result.code() == ErrorCode::cancelled && stopped) {
    spdlog::info("stopped after {} committed rounds", orch.completed_rounds());
    return 0;
  }
  spdlog::error("{}", result.message());
  return 1;
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "doctor") return run_coordinator_doctor(argc - 1, argv + 1, std::cout);
  po::options_description desc = coordinator_flags();
  auto vm = parse_options(argc, argv, desc, coordinator_path_keys());
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>(), "coordinator");
  CoordinatorConfig cfg = coordinator_config(*vm);
  return serve(cfg, build(cfg));
}

}  // namespace

int main(int argc, char** argv) { return run_program("federa-coordinator", argc, argv, run); }
