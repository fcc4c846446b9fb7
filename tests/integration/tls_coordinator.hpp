// A running coordinator for in-process tests over real TLS 1.3 on 127.0.0.1: the orchestrator
// (FedAvg on the CPU backend, o.train.model initialised from o.seed), the WebSocket server, its
// io threads and the thread running Orchestrator::run(). Shared by the integration suites so
// that each builds only what differs (its evaluator, its observers).
//
//   struct Writers { MetricsWriter metrics; };             // observers outlive the coordinator:
//   struct Coordinator : Writers, TlsCoordinator { ... };  // a base declared first does
//   TlsCoordinator coord(pki, options, std::nullopt, {&metrics});
//   ... clients connect to coord.port() ...
//   REQUIRE(coord.wait_finished());  CHECK(coord.result.ok());
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "common/nn.hpp"
#include "common/tls.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/server.hpp"
#include "coordinator/strategies.hpp"

namespace federa::testing {

// A member's connection settings for these tests: its kit (ca.pem, cert.pem, key.pem), the
// coordinator on 127.0.0.1, quick reconnects, and giving up after a minute without one.
inline ClientOptions client_options(const std::filesystem::path& kit, unsigned short port) {
  ClientOptions o;
  o.coordinator = {"127.0.0.1", port};
  o.ca_pem = (kit / "ca.pem").string();
  o.cert_pem = (kit / "cert.pem").string();
  o.key_pem = (kit / "key.pem").string();
  o.backoff_initial = std::chrono::milliseconds(100);
  o.backoff_max = std::chrono::milliseconds(500);
  o.give_up_after = std::chrono::seconds(60);
  return o;
}

struct TlsCoordinator {
  std::unique_ptr<AggregationBackend> backend;
  std::unique_ptr<Orchestrator> orch;
  boost::asio::io_context io;
  std::unique_ptr<WebSocketServer> server;
  std::vector<std::thread> threads;
  std::thread runner;
  Status result;
  std::atomic<bool> finished{false};

  // `pki` is a `federa-pki init` folder; `observers` (not owned) must outlive this object. With
  // a `store`, rounds are committed there, and a state it already holds is resumed.
  TlsCoordinator(const std::filesystem::path& pki, const OrchestratorOptions& o,
                 std::optional<Evaluator> evaluator,
                 const std::vector<OrchestratorObserver*>& observers,
                 std::optional<StateStore> store = std::nullopt, ServerOptions sopt = {}) {
    auto b = make_backend("cpu", 2);
    REQUIRE(b.ok());
    backend = std::move(b.value());
    auto s = make_strategy(StrategyOptions{}, *backend);
    REQUIRE(s.ok());
    auto net = make_network(o.train.model);
    REQUIRE(net.ok());
    Model global((*net)->layout());
    (*net)->init(global.data, o.seed);
    std::optional<CommittedState> committed;
    if (store) {
      auto loaded = store->load();
      REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
      committed = std::move(*loaded);
    }
    orch = std::make_unique<Orchestrator>(o, std::move(s.value()), std::move(global),
                                          std::move(store), std::move(evaluator));
    if (committed) {
      Status restored = orch->restore(std::move(*committed));
      REQUIRE_MESSAGE(restored.ok(), restored.message());
    }
    for (auto* observer : observers) orch->add_observer(observer);
    auto tls =
        make_server_tls_context((pki / "ca.pem").string(), (pki / "coordinator/cert.pem").string(),
                                (pki / "coordinator/key.pem").string());
    REQUIRE(tls.ok());
    sopt.listen = {"127.0.0.1", 0};
    server = std::make_unique<WebSocketServer>(io, *tls, *orch, sopt);
    REQUIRE(server->start().ok());
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { io.run(); });
    runner = std::thread([this] {
      result = orch->run();
      finished = true;
    });
  }
  TlsCoordinator(const TlsCoordinator&) = delete;
  TlsCoordinator& operator=(const TlsCoordinator&) = delete;

  unsigned short port() const { return server->bound_port(); }
  // Waits (up to `limit`) for run() to return: clients may finish a moment before it does.
  bool wait_finished(std::chrono::seconds limit = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!finished.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return finished.load();
  }
  ~TlsCoordinator() {
    orch->stop();
    if (runner.joinable()) runner.join();
    server->stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    io.stop();
    for (auto& t : threads) t.join();
  }
};

}  // namespace federa::testing
