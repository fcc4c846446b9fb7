// federa-client: joins a federation and trains on data that never leaves this machine. A
// long-lived agent by default: it stays connected between jobs and reconnects forever;
// SIGINT/SIGTERM close the connection cleanly and exit 0 (an external trainer's program is
// stopped with it). `federa-client doctor [flags]` checks a setup instead (client/doctor.hpp),
// `federa-client trainer-test --model FILE [flags]` dry-runs the external trainer
// (client/trainer_test.hpp).
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
#include "client/exec_trainer_cli.hpp"
#include "client/exec_trainer_process.hpp"
#include "client/trainer_test.hpp"
#include "common/options.hpp"

using namespace federa;

namespace {

// SIGINT/SIGTERM through Asio: the handler runs on an ordinary thread, where stop() may lock
// and post (neither is allowed in a C signal handler).
class SignalStopper {
 public:
  SignalStopper(FederatedClient& client, ExecTrainer* exec) : signals_(io_, SIGINT, SIGTERM) {
    signals_.async_wait([&client, exec](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      spdlog::info("{}: closing the connection", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      if (exec) exec->cancel();  // its program gets SIGTERM now, SIGKILL after the grace
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
  if (argc > 1 && std::string_view(argv[1]) == "trainer-test")
    return run_trainer_test(argc - 1, argv + 1, client_flags(), client_path_resolvers(), std::cout);
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
  std::unique_ptr<Trainer> trainer;
  ExecTrainer* exec = nullptr;
  if (uses_exec_trainer(*vm)) {
    auto t = std::make_unique<ExecTrainer>(exec_trainer_options(*vm));
    exec = t.get();
    spdlog::info("trainer: the external program '{}' (deadline {} s)",
                 fmt::format("{}", fmt::join(t->options().command, "' '")),
                 t->options().timeout.count() / 1000.0);
    trainer = with_table_of(*vm, std::move(t));
  } else {
    trainer = load_trainer(*vm, opt.seed);
  }
  FederatedClient client(opt, *trainer);
  SignalStopper stopper(client, exec);
  spdlog::info("connecting to {}:{} with the kit in {}{}", opt.coordinator.host,
               opt.coordinator.port, (*vm)["kit"].as<std::string>(),
               opt.stay_connected ? "" : " (--once)");
  const int code = client.run();
  kill_all_trainer_groups();  // nothing a trainer started outlives the client
  return code;
}

}  // namespace

int main(int argc, char** argv) { return run_program("federa-client", argc, argv, run); }
