// The client's side of the Transport seam over TLS WebSockets, plus the task loop: connect,
// say hello, train on each FitTask with the Trainer, upload the update when the coordinator
// grants a slot, reconnect with exponential backoff and jitter when the connection drops.
//
//   ClientOptions opt{.coordinator = {"127.0.0.1", 8443}, .ca = kit + "/ca.pem", ...};
//   FederatedClient client(opt, *trainer);
//   int code = client.run();   // 0: federation complete; 3: refused; 1: fatal error
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
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
  std::chrono::seconds give_up_after{0};
  std::chrono::seconds handshake_timeout{15};
  std::chrono::seconds idle_timeout{120};
  std::uint64_t seed = 0;  // jitter
  // Observes every serialized Envelope before it is sent (tests check what leaves the site).
  std::function<void(std::string_view)> on_send;
};

enum ClientExit : int { exit_complete = 0, exit_error = 1, exit_refused = 3, exit_stopped = 130 };

class FederatedClient {
 public:
  FederatedClient(ClientOptions options, Trainer& trainer);
  ~FederatedClient();
  int run();
  // Thread-safe: ends the current connection and makes run() return exit_stopped.
  void stop();
  std::uint64_t rounds_trained() const { return rounds_trained_.load(); }

 private:
  struct Connection;
  ClientOptions opt_;
  Trainer& trainer_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> rounds_trained_{0};
  std::mutex mu_;
  std::shared_ptr<Connection> current_;
};

}  // namespace federa
