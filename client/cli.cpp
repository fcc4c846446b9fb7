#include "client/cli.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "client/builtin_trainer.hpp"
#include "client/exec_trainer_cli.hpp"
#include "common/csv.hpp"
#include "common/dataset.hpp"

namespace federa {

po::options_description client_flags() {
  po::options_description desc(
      "federa-client: join a federation and train locally; only model updates leave this "
      "machine.\n\n"
      "usage: federa-client --coordinator HOST:PORT --kit DIR --data SPEC [flags]   (or --config "
      "FILE)\n"
      "       federa-client doctor [flags]   check this setup, one line per check\n"
      "       federa-client trainer-test --model FILE [flags]   dry-run an external trainer "
      "(--trainer exec)\n\n"
      "flags",
      110);
  // clang-format off
  desc.add_options()
      ("coordinator", po::value<std::string>(), "coordinator address HOST:PORT (required)")
      ("kit", po::value<std::string>(), "startup kit folder with ca.pem, cert.pem, key.pem from `federa-pki issue` (required)")
      ("key-file", po::value<std::string>(), "the kit's private key (default: KIT/key.pem); the packaged unit passes the one systemd loads, %d/client-key.pem")
      ("data", po::value<std::string>(), "training data: fashion-mnist | idx:IMAGES,LABELS | csv:FILE:label=COLUMN (required)")
      ("partition", po::value<std::string>()->default_value("iid"), "use a share of --data: iid | dirichlet:ALPHA | labels:K | quantity:ALPHA")
      ("partition-index", po::value<std::size_t>()->default_value(0), "which share this client takes, 0-based")
      ("partition-count", po::value<std::size_t>()->default_value(1), "how many shares --data is split into (1 = use it all)")
      ("test-fraction", po::value<double>()->default_value(0.0), "share of this client's examples held out for federated evaluation (the client then takes evaluate tasks)")
      ("private-metrics", po::bool_switch(), "ask the coordinator to keep this client's evaluation results out of its logs and files (they still count in the federation's means)")
      ("missing", po::value<std::string>()->default_value("refuse"), "CSV data: empty cells are refused (refuse) or filled (impute: numeric with the federation's mean, categorical with a reserved category)")
      ("standardize", po::value<std::string>()->default_value("on"), "CSV data: scale numeric features with the federation's means and standard deviations (on|off)")
      ("seed", po::value<std::uint64_t>()->default_value(1), "partition seed: every client of one split must use the same")
      ("retry-max", po::value<double>()->default_value(30), "longest wait between reconnection attempts, seconds")
      ("give-up-after", po::value<double>()->default_value(0), "exit after this many seconds without reaching the coordinator (0 = never)")
      ("once", po::bool_switch(), "exit when the federation completes (default: stay connected and serve the next job)");
  // clang-format on
  add_trainer_flags(desc);
  return desc;
}

std::map<std::string, PathResolver> client_path_resolvers() {
  return with_trainer_resolvers(
      {{"kit", resolve_path}, {"key-file", resolve_path}, {"data", resolve_data_spec}});
}

void require_client_flags(const po::variables_map& vm) {
  for (const char* req : {"coordinator", "kit"})
    if (!vm.count(req)) throw OptionsError(std::string("--") + req + " is required");
  if (!uses_exec_trainer(vm) && !vm.count("data"))  // an external trainer reads its own data
    throw OptionsError("--data is required (or --trainer exec with --trainer-command)");
}

ClientOptions connection_options(const po::variables_map& vm) {
  ClientOptions opt;
  opt.coordinator = parse_host_port(vm["coordinator"].as<std::string>(), "coordinator");
  const std::string kit = vm["kit"].as<std::string>();
  opt.ca_pem = kit + "/ca.pem";
  opt.cert_pem = kit + "/cert.pem";
  opt.key_pem = vm.count("key-file") ? vm["key-file"].as<std::string>() : kit + "/key.pem";
  opt.backoff_max = seconds_option(vm, "retry-max");
  opt.give_up_after = seconds_option(vm, "give-up-after", true);
  opt.stay_connected = !vm["once"].as<bool>();
  opt.private_metrics = vm["private-metrics"].as<bool>();
  opt.seed = vm["seed"].as<std::uint64_t>() * 1000003 + vm["partition-index"].as<std::size_t>();
  return opt;
}

void require_kit_files(const po::variables_map& vm, const ClientOptions& opt) {
  for (const auto& f : {opt.ca_pem, opt.cert_pem})
    if (!std::filesystem::exists(f))
      throw OptionsError(
          "--kit: " + f +
          " is missing (a kit from `federa-pki issue` holds ca.pem, cert.pem, key.pem)");
  if (!std::filesystem::exists(opt.key_pem))
    throw OptionsError(
        (vm.count("key-file") ? "--key-file: " : "--kit: ") + opt.key_pem +
        " is missing (a kit from `federa-pki issue` holds ca.pem, cert.pem, key.pem)");
}

namespace {

// This client's rows of the data (its share of a split, less the held-out ones, which follow).
struct Rows {
  std::vector<std::size_t> keep;  // training rows first, then the held-out ones
  std::size_t train = 0;
};

Rows choose_rows(const po::variables_map& vm, std::span<const std::int32_t> labels, int num_classes,
                 std::size_t total) {
  auto count = vm["partition-count"].as<std::size_t>();
  auto index = vm["partition-index"].as<std::size_t>();
  if (count == 0) throw OptionsError("--partition-count must be at least 1");
  if (index >= count) throw OptionsError("--partition-index must be below --partition-count");
  double test_fraction = vm["test-fraction"].as<double>();
  if (!(test_fraction >= 0 && test_fraction < 1))
    throw OptionsError("--test-fraction must be in [0, 1)");
  std::vector<std::size_t> mine;
  if (count == 1) {
    mine.resize(total);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = i;
  } else {
    auto parts = partition_dataset(labels, num_classes, vm["partition"].as<std::string>(), count,
                                   vm["seed"].as<std::uint64_t>());
    if (!parts) throw OptionsError("--partition: " + parts.error().message);
    mine = std::move((*parts)[index]);
  }
  const auto n_test = static_cast<std::size_t>(test_fraction * double(mine.size()));
  if (mine.size() == n_test)
    throw OptionsError("this client's partition holds no training examples");
  spdlog::info("data: {} examples for training, {} held out (partition {}/{} of {}, {})",
               mine.size() - n_test, n_test, index, count, vm["data"].as<std::string>(),
               vm["partition"].as<std::string>());
  const std::size_t train = mine.size() - n_test;
  return {std::move(mine), train};
}

bool on_off(const po::variables_map& vm, const char* flag) {
  const auto v = vm[flag].as<std::string>();
  if (v != "on" && v != "off") throw OptionsError(std::string("--") + flag + " must be on or off");
  return v == "on";
}

// A CSV file is read through each task's schema (client/tabular_data.hpp). A split of one file
// among clients (tests, demos) partitions by the labels as the file alone numbers them.
std::unique_ptr<TabularData> open_table(const po::variables_map& vm) {
  auto source = parse_csv_spec(vm["data"].as<std::string>());
  if (!source) throw OptionsError("--data: " + source.error().message);
  const auto missing = vm["missing"].as<std::string>();
  if (missing != "refuse" && missing != "impute")
    throw OptionsError("--missing must be refuse or impute");
  TabularData::Options options;
  options.impute = missing == "impute";
  options.standardize = on_off(vm, "standardize");
  auto scan = scan_csv(*source);
  if (!scan) throw OptionsError("--data: " + scan.error().message);
  Dataset alone;  // labels for a label-skewed split only
  if (vm["partition-count"].as<std::size_t>() > 1 && vm["partition"].as<std::string>() != "iid") {
    auto d = load_dataset(vm["data"].as<std::string>(), Split::train);
    if (!d) throw OptionsError("--data: " + d.error().message);
    alone = std::move(*d);
  } else {
    alone.labels.assign(scan->rows, 0);
    alone.num_classes = 1;
  }
  Rows rows = choose_rows(vm, alone.labels, alone.num_classes, scan->rows);
  auto data = TabularData::open(*source, std::move(rows.keep), rows.train, options);
  if (!data) throw OptionsError("--data: " + data.error().message);
  return std::move(*data);
}

}  // namespace

std::unique_ptr<Trainer> with_table_of(const po::variables_map& vm,
                                       std::unique_ptr<Trainer> trainer) {
  if (!vm.count("data") || !vm["data"].as<std::string>().starts_with("csv:")) return trainer;
  return with_table(std::move(trainer), open_table(vm));
}

std::unique_ptr<Trainer> load_trainer(const po::variables_map& vm, std::uint64_t client_seed) {
  if (vm["data"].as<std::string>().starts_with("csv:"))
    return make_tabular_trainer(open_table(vm), client_seed);
  auto data = load_dataset(vm["data"].as<std::string>(), Split::train);
  if (!data) throw OptionsError("--data: " + data.error().message);
  Rows rows = choose_rows(vm, data->labels, data->num_classes, data->rows);
  auto own = select_rows(*data, rows.keep);
  if (!own) throw OptionsError("--data: " + own.error().message);
  std::vector<std::size_t> train_idx(rows.train), test_idx(rows.keep.size() - rows.train);
  for (std::size_t i = 0; i < train_idx.size(); ++i) train_idx[i] = i;
  for (std::size_t i = 0; i < test_idx.size(); ++i) test_idx[i] = rows.train + i;
  auto shared = std::make_shared<const Dataset>(std::move(own.value()));
  return make_builtin_trainer(shared, std::move(train_idx), std::move(test_idx), client_seed);
}

}  // namespace federa
