// federa-client's transport: the ClientSession (client/session.hpp) over TLS 1.3 WebSockets,
// with a worker thread for training and a reconnect loop with exponential backoff and jitter.
// Every rule of the protocol lives in the session; this file moves bytes and runs the trainer.
//
//   ClientOptions opt{.coordinator = {"127.0.0.1", 8443}, .ca_pem = kit + "/ca.pem", ...};
//   FederatedClient client(opt, *trainer);
//   int code = client.run();   // 0: federation complete or stopped; 3: refused; 1: fatal error
//
// With `stay_connected` (federa-client's default; `--once` turns it off) the client is a
// long-lived agent: a completed federation is one job among many, and it reconnects for the
// next until stop().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "client/trainer.hpp"
#include "common/options.hpp"

namespace federa {

struct ClientOptions {
  HostPort coordinator{"127.0.0.1", 8443};
  std::string ca_pem, cert_pem, key_pem;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(30)};
  // Give up after this long without a successful connection; 0 = keep trying forever.
  std::chrono::milliseconds give_up_after{0};
  std::chrono::seconds handshake_timeout{15};
  std::chrono::seconds idle_timeout{120};
  std::uint64_t seed = 0;  // jitter
  // Keep serving after a federation completes: reconnect for the next job instead of returning.
  bool stay_connected = false;
  // Ask the coordinator to keep this client's evaluation results out of its logs and files.
  bool private_metrics = false;
  // Observes every serialized Envelope before it is sent (tests check what leaves the site).
  std::function<void(std::string_view)> on_send;
};

enum ClientExit : int { exit_complete = 0, exit_error = 1, exit_refused = 3 };

class FederatedClient {
 public:
  FederatedClient(ClientOptions options, Trainer& trainer);
  ~FederatedClient();
  // Connects and serves until the federation completes (unless stay_connected), the coordinator
  // refuses this client, a fatal error, or stop(). Returns a ClientExit.
  int run();
  // Thread-safe (not async-signal-safe: call it from a signal_set handler, not a C signal
  // handler): ends the current connection with a WebSocket close and makes run() return
  // exit_complete.
  void stop();
  std::uint64_t rounds_trained() const { return rounds_trained_.load(); }
  // Federations this client saw complete (with stay_connected, more than one).
  std::uint64_t federations_completed() const { return federations_completed_.load(); }

 private:
  struct Connection;
  // Waits up to `wait`, returning early on stop().
  void pause(std::chrono::milliseconds wait);

  ClientOptions opt_;
  Trainer& trainer_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> rounds_trained_{0};
  std::atomic<std::uint64_t> federations_completed_{0};
  std::mutex mu_;
  std::condition_variable stop_cv_;
  std::shared_ptr<Connection> current_;
};

}  // namespace federa
