// federa-client: joins a federation and trains on data that never leaves this machine. A
// long-lived agent by default: it stays connected between jobs and reconnects forever;
// SIGINT/SIGTERM close the connection cleanly and exit 0.
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "client/builtin_trainer.hpp"
#include "client/client.hpp"
#include "common/dataset.hpp"
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

void describe_flags(po::options_description& desc) {
  // clang-format off
  desc.add_options()
      ("coordinator", po::value<std::string>(), "coordinator address HOST:PORT (required)")
      ("kit", po::value<std::string>(), "startup kit folder with ca.pem, cert.pem, key.pem from `federa-pki issue` (required)")
      ("data", po::value<std::string>(), "training data: fashion-mnist | idx:IMAGES,LABELS | csv:FILE:label=COLUMN (required)")
      ("partition", po::value<std::string>()->default_value("iid"), "use a share of --data: iid | dirichlet:ALPHA | labels:K | quantity:ALPHA")
      ("partition-index", po::value<std::size_t>()->default_value(0), "which share this client takes, 0-based")
      ("partition-count", po::value<std::size_t>()->default_value(1), "how many shares --data is split into (1 = use it all)")
      ("test-fraction", po::value<double>()->default_value(0.0), "share of this client's examples held out for local evaluation")
      ("seed", po::value<std::uint64_t>()->default_value(1), "partition seed: every client of one split must use the same")
      ("retry-max", po::value<double>()->default_value(30), "longest wait between reconnection attempts, seconds")
      ("give-up-after", po::value<double>()->default_value(0), "exit after this many seconds without reaching the coordinator (0 = never)")
      ("once", po::bool_switch(), "exit when the federation completes (default: stay connected and serve the next job)");
  // clang-format on
}

// The connection: coordinator, kit, reconnect policy.
ClientOptions connection_options(const po::variables_map& vm) {
  ClientOptions opt;
  opt.coordinator = parse_host_port(vm["coordinator"].as<std::string>(), "coordinator");
  const std::string kit = vm["kit"].as<std::string>();
  opt.ca_pem = kit + "/ca.pem";
  opt.cert_pem = kit + "/cert.pem";
  opt.key_pem = kit + "/key.pem";
  for (const auto& f : {opt.ca_pem, opt.cert_pem, opt.key_pem})
    if (!std::filesystem::exists(f))
      throw OptionsError(
          "--kit: " + f +
          " is missing (a kit from `federa-pki issue` holds ca.pem, cert.pem, key.pem)");
  opt.backoff_max =
      std::chrono::milliseconds(static_cast<long long>(vm["retry-max"].as<double>() * 1000));
  opt.give_up_after =
      std::chrono::seconds(static_cast<long long>(vm["give-up-after"].as<double>()));
  opt.stay_connected = !vm["once"].as<bool>();
  opt.seed = vm["seed"].as<std::uint64_t>() * 1000003 + vm["partition-index"].as<std::size_t>();
  return opt;
}

// This client's rows of --data (its share of a split, less the held-out ones), kept in memory
// alone (a tenth of the file for a 10-way split), and the built-in trainer over them.
std::unique_ptr<Trainer> load_trainer(const po::variables_map& vm, std::uint64_t client_seed) {
  auto count = vm["partition-count"].as<std::size_t>();
  auto index = vm["partition-index"].as<std::size_t>();
  if (count == 0) throw OptionsError("--partition-count must be at least 1");
  if (index >= count) throw OptionsError("--partition-index must be below --partition-count");
  double test_fraction = vm["test-fraction"].as<double>();
  if (!(test_fraction >= 0 && test_fraction < 1))
    throw OptionsError("--test-fraction must be in [0, 1)");
  auto data = load_dataset(vm["data"].as<std::string>(), Split::train);
  if (!data) throw OptionsError("--data: " + data.error().message);
  std::vector<std::size_t> mine;
  if (count == 1) {
    mine.resize(data->rows);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = i;
  } else {
    auto parts =
        partition_dataset(data->labels, data->num_classes, vm["partition"].as<std::string>(), count,
                          vm["seed"].as<std::uint64_t>());
    if (!parts) throw OptionsError("--partition: " + parts.error().message);
    mine = std::move((*parts)[index]);
  }
  std::size_t n_test = static_cast<std::size_t>(test_fraction * double(mine.size()));
  std::vector<std::size_t> keep(mine);
  mine.resize(mine.size() - n_test);
  if (mine.empty()) throw OptionsError("this client's partition holds no training examples");
  spdlog::info("data: {} examples for training, {} held out (partition {}/{} of {}, {})",
               mine.size(), n_test, index, count, vm["data"].as<std::string>(),
               vm["partition"].as<std::string>());
  auto own = select_rows(*data, keep);  // training rows first, then the held-out ones
  if (!own) throw OptionsError("--data: " + own.error().message);
  std::vector<std::size_t> train_idx(mine.size()), test_idx(n_test);
  for (std::size_t i = 0; i < train_idx.size(); ++i) train_idx[i] = i;
  for (std::size_t i = 0; i < test_idx.size(); ++i) test_idx[i] = mine.size() + i;
  auto shared = std::make_shared<const Dataset>(std::move(own.value()));
  return make_builtin_trainer(shared, std::move(train_idx), std::move(test_idx), client_seed);
}

int run(int argc, char** argv) {
  po::options_description desc(
      "federa-client: join a federation and train locally; only model updates leave this "
      "machine.\n\n"
      "usage: federa-client --coordinator HOST:PORT --kit DIR --data SPEC [flags]   (or --config "
      "FILE)\n\n"
      "flags",
      110);
  describe_flags(desc);
  // In a --config file, the kit and the data files are relative to the file.
  auto vm = parse_options(argc, argv, desc, {{"kit", resolve_path}, {"data", resolve_data_spec}});
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>(), "client");
  for (const char* req : {"coordinator", "kit", "data"})
    if (!vm->count(req)) throw OptionsError(std::string("--") + req + " is required");
  ClientOptions opt = connection_options(*vm);
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
