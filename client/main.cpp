// federa-client: joins a federation and trains on data that never leaves this machine. A
// long-lived agent by default: it stays connected between jobs and reconnects forever;
// SIGINT/SIGTERM close the connection cleanly and exit 0. `federa-client doctor [flags]` checks
// a setup instead (client/doctor.hpp).
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "client/cli.hpp"
#include "client/client.hpp"
#include "client/doctor.hpp"
#include "common/options.hpp"

using namespace federa;

namespace {

// SIGINT/SIGTERM through Asio: the handler runs on an ordinary thread, where stop() may lock
// and post (neither is allowed in a C signal handler).
class SignalStopper {
 public:
  explicit SignalStopper(FederatedClient& client) : signals_(io_, SIGINT, SIGTERM) {
    signals_.async_wait([this, &client](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      spdlog::info("{}: closing the connection", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      client.stop();
    });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~SignalStopper() {
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::thread thread_;
};

int run(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "doctor")
    return run_client_doctor(argc - 1, argv + 1, std::cout);
  po::options_description desc = client_flags();
  auto vm = parse_options(argc, argv, desc, client_path_resolvers());
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>(), "client");
  require_client_flags(*vm);
  ClientOptions opt = connection_options(*vm);
  require_kit_files(*vm, opt);
  auto trainer = load_trainer(*vm, opt.seed);
  FederatedClient client(opt, *trainer);
  SignalStopper stopper(client);
  spdlog::info("connecting to {}:{} with the kit in {}{}", opt.coordinator.host,
               opt.coordinator.port, (*vm)["kit"].as<std::string>(),
               opt.stay_connected ? "" : " (--once)");
  return client.run();
}

}  // namespace

int main(int argc, char** argv) { return run_program("federa-client", argc, argv, run); }
