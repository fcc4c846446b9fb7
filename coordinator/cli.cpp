#include "coordinator/cli.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <thread>

#include "coordinator/initial_model.hpp"

namespace federa {

po::options_description coordinator_flags() {
  po::options_description desc(
      "federa-coordinator: serve federated training rounds over mutual TLS.\n\n"
      "usage: federa-coordinator --pki DIR [flags]    (or --config FILE; every key is a flag "
      "name)\n"
      "       federa-coordinator doctor [flags]       check this setup, one line per check\n\n"
      "flags",
      110);
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  // clang-format off
  desc.add_options()
      ("listen", po::value<std::string>()->default_value("127.0.0.1:8443"), "HOST:PORT to accept clients on (port 0 = any free port)")
      ("pki", po::value<std::string>(), "PKI folder from `federa-pki init`: DIR/ca.pem, DIR/coordinator/{cert,key}.pem (required)")
      ("key-file", po::value<std::string>(), "the coordinator's private key (default: PKI/coordinator/key.pem); the packaged unit passes the one systemd loads, %d/coordinator-key.pem")
      ("members", po::value<std::string>(), "file of allowed client names (certificate CNs), one per line; default: any client the CA signed. SIGHUP re-reads it")
      ("federation", po::value<std::string>()->default_value("federa"), "federation name shown to clients")
      ("rounds", po::value<std::uint64_t>()->default_value(10), "rounds to run")
      ("min-clients", po::value<std::size_t>()->default_value(2), "updates needed to complete a round (also the least selected)")
      ("min-available-clients", po::value<std::size_t>()->default_value(0), "connected clients needed before a round starts (0 = --min-clients)")
      ("fraction-fit", po::value<double>()->default_value(1.0), "share of connected clients selected each round (0, 1]")
      ("clients-per-round", po::value<std::size_t>()->default_value(0), "select exactly this many connected clients each round (0 = use --fraction-fit)")
      ("round-timeout", po::value<double>()->default_value(600), "seconds a round waits for updates")
      ("round-retries", po::value<int>()->default_value(3), "times a round that misses --min-clients is retried before the job fails")
      ("model", po::value<std::string>()->default_value("mlp:784,128,10"), "built-in model: softmax:IN,CLASSES | mlp:IN,H..,CLASSES | cnn:fmnist; or safetensors:FILE, any model (F32/F16/BF16 tensors averaged, integer ones carried)")
      ("local-epochs", po::value<std::uint32_t>()->default_value(2), "local epochs per round")
      ("batch-size", po::value<std::uint32_t>()->default_value(32), "local minibatch size")
      ("lr", po::value<float>()->default_value(0.02f, "0.02"), "local learning rate")
      ("momentum", po::value<float>()->default_value(0.9f, "0.9"), "local SGD momentum")
      ("weight-decay", po::value<float>()->default_value(0.0f, "0"), "local L2 weight decay")
      ("seed", po::value<std::uint64_t>()->default_value(1), "seed for the initial model, client sampling and per-round seeds")
      ("eval-data", po::value<std::string>()->default_value(""), "held-out set for centralised evaluation, e.g. fashion-mnist (its 10k test split) or csv:FILE:label=COLUMN (read through the federation's schema)")
      ("schema", po::value<std::string>(), "tabular federations: the schema JSON file (features, label, task, classes; docs/tabular.md); default: derived from the table sites' reports at join")
      ("min-examples", po::value<std::uint64_t>()->default_value(10), "tabular federations: a site with fewer training rows is refused at join (privacy floor)")
      ("state-dir", po::value<std::string>()->default_value("federa-state"), "folder for the committed global model and federation state")
      ("resume", po::bool_switch(), "continue from the last round committed in --state-dir")
      ("metrics-out", po::value<std::string>()->default_value(""), "append one JSON line per completed round to this file (a file that already holds rounds is refused unless --resume continues that run)")
      ("keep-models", po::value<std::size_t>()->default_value(5), "committed global models kept as STATE_DIR/history/global-round-N.safetensors (0 = none)")
      ("evaluate-every", po::value<std::uint64_t>()->default_value(1), "federated evaluation of the new model after every Nth round and the last, by the clients that evaluate (0 = never)")
      ("fraction-evaluate", po::value<double>()->default_value(1.0), "share of the clients that evaluate asked each time (0, 1]")
      ("min-evaluate-clients", po::value<std::size_t>()->default_value(1), "answers with held-out data needed for the federation's figures (fed_loss, fed_accuracy)")
      ("evaluate-timeout", po::value<double>()->default_value(0), "seconds an evaluation waits for answers (0 = --round-timeout)")
      ("evaluate-only", po::bool_switch(), "with --rounds 0: evaluate --model across the federation once and train nothing")
      ("keep-best", po::value<std::string>()->default_value(""), "keep the committed model with the best value of this metrics key as STATE_DIR/best.safetensors: fed_accuracy, fed_loss, accuracy, ... (min:KEY or max:KEY to say which way)")
      ("client-metrics-out", po::value<std::string>()->default_value(""), "append each client's evaluation results to this file, one JSON line per client and evaluation (clients that ask for privacy are left out)")
      ("device", po::value<std::string>()->default_value("auto"), "aggregation device: auto | cpu | cuda")
      ("threads", po::value<unsigned>()->default_value(hw), "network and aggregation threads")
      ("max-inflight-uploads", po::value<std::size_t>()->default_value(8), "updates reassembled at once (bounds memory to this many model copies)")
      ("upload-stall-timeout", po::value<double>()->default_value(60), "seconds an upload may go without a chunk before its slot is released and the client dropped")
      ("max-connections", po::value<std::size_t>()->default_value(10000), "open client connections, TLS handshakes included (also capped by the file-descriptor limit)")
      ("max-examples-per-client", po::value<std::uint64_t>()->default_value(1000000), "an update counts as at most this many examples (and at most what its client announced at join); also bounds SecAgg+ quantisation")
      ("outlier-factor", po::value<double>()->default_value(10.0), "reject a plain update whose change from the global model is longer than this many times the median of recently accepted ones (0 = off; off with central DP)")
      ("secure-aggregation", po::value<std::string>()->default_value("none"), "none | secagg+ : the coordinator learns only the sum of each round's cohort")
      ("secagg-neighbors", po::value<std::uint32_t>()->default_value(0), "SecAgg+ graph degree k (0 = derived from the cohort size, --secagg-dropout and --secagg-corrupt)")
      ("secagg-threshold", po::value<std::uint32_t>()->default_value(0), "SecAgg+ Shamir threshold t (0 = derived)")
      ("secagg-dropout", po::value<double>()->default_value(0.1, "0.1"), "dropout fraction the SecAgg+ parameters must tolerate")
      ("secagg-corrupt", po::value<double>()->default_value(0.05, "0.05"), "fraction of corrupt clients assumed by the SecAgg+ parameters")
      ("secagg-clip", po::value<double>()->default_value(8.0), "SecAgg+ clips each coordinate of an update delta to [-c, c] before quantizing")
      ("secagg-phase-timeout", po::value<double>()->default_value(60), "seconds each key-exchange and unmasking phase waits")
      ("chunk-mb", po::value<double>()->default_value(1.0), "tensor chunk size on the wire, MiB (<= 16); each upload in flight holds about two chunks")
      ("admin-listen", po::value<std::string>(), "HOST:PORT of the admin API, /metrics and dashboard (HTTPS, TLS 1.3; default off)")
      ("admin-token-file", po::value<std::string>(), "bearer tokens for the admin listener (`federa-pki token` appends to DIR/admin-tokens); SIGHUP re-reads it")
      ("admin-audit-log", po::value<std::string>(), "append-only log of every change made through the admin listener (default STATE_DIR/admin-audit.jsonl)");
  // clang-format on
  add_strategy_options(desc);
  return desc;
}

std::map<std::string, PathResolver> coordinator_path_keys() {
  return {{"pki", resolve_path},
          {"members", resolve_path},
          {"state-dir", resolve_path},
          {"metrics-out", resolve_path},
          {"eval-data", resolve_data_spec},
          {"key-file", resolve_path},
          {"admin-token-file", resolve_path},
          {"admin-audit-log", resolve_path},
          {"model", resolve_model_spec},
          {"client-metrics-out", resolve_path},
          {"schema", resolve_path}};
}

namespace {

void read_training(const po::variables_map& vm, TrainConfig& t) {
  t.model = vm["model"].as<std::string>();
  t.local_epochs = vm["local-epochs"].as<std::uint32_t>();
  t.batch_size = vm["batch-size"].as<std::uint32_t>();
  t.lr = vm["lr"].as<float>();
  t.momentum = vm["momentum"].as<float>();
  t.weight_decay = vm["weight-decay"].as<float>();
  if (t.local_epochs == 0 || t.batch_size == 0)
    throw OptionsError("--local-epochs and --batch-size must be positive");
  if (!(t.lr > 0)) throw OptionsError("--lr must be positive");
}

void read_secure(const po::variables_map& vm, OrchestratorOptions& o) {
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
  o.secagg_phase_timeout = seconds_option(vm, "secagg-phase-timeout");
}

void read_evaluation(const po::variables_map& vm, OrchestratorOptions& o) {
  EvaluationOptions& e = o.evaluation;
  e.every = vm["evaluate-every"].as<std::uint64_t>();
  e.fraction = vm["fraction-evaluate"].as<double>();
  e.min_clients = vm["min-evaluate-clients"].as<std::size_t>();
  e.only = vm["evaluate-only"].as<bool>();
  e.keep_best = vm["keep-best"].as<std::string>();
  if (!(e.fraction > 0 && e.fraction <= 1))
    throw OptionsError("--fraction-evaluate must be in (0, 1]");
  if (e.min_clients == 0) throw OptionsError("--min-evaluate-clients must be at least 1");
  e.timeout = seconds_option(vm, "evaluate-timeout", true);
  if (e.only && o.rounds != 0)
    throw OptionsError("--evaluate-only evaluates a model without training: pass --rounds 0");
  if (!e.keep_best.empty()) {
    if (e.only)
      throw OptionsError("--keep-best keeps committed models; --evaluate-only commits none");
    if (auto rule = parse_keep_best(e.keep_best); !rule) throw OptionsError(rule.error().message);
  }
}

void read_rounds(const po::variables_map& vm, OrchestratorOptions& o) {
  o.rounds = vm["rounds"].as<std::uint64_t>();
  o.min_clients = vm["min-clients"].as<std::size_t>();
  o.min_available = vm["min-available-clients"].as<std::size_t>();
  o.fraction_fit = vm["fraction-fit"].as<double>();
  o.clients_per_round = vm["clients-per-round"].as<std::size_t>();
  if (!(o.fraction_fit > 0 && o.fraction_fit <= 1))
    throw OptionsError("--fraction-fit must be in (0, 1]");
  if (o.min_clients == 0) throw OptionsError("--min-clients must be at least 1");
  if (o.clients_per_round && o.clients_per_round < o.min_clients)
    throw OptionsError("--clients-per-round " + std::to_string(o.clients_per_round) +
                       " is below --min-clients " + std::to_string(o.min_clients) +
                       ": no round could complete");
  o.round_timeout = seconds_option(vm, "round-timeout");
  o.round_retries = vm["round-retries"].as<int>();
  if (o.round_retries < 0) throw OptionsError("--round-retries must be >= 0");
  o.seed = vm["seed"].as<std::uint64_t>();
  o.federation = vm["federation"].as<std::string>();
  o.max_inflight_uploads = std::max<std::size_t>(1, vm["max-inflight-uploads"].as<std::size_t>());
  o.upload_stall_timeout = seconds_option(vm, "upload-stall-timeout");
  o.max_examples_per_client = vm["max-examples-per-client"].as<std::uint64_t>();
  if (o.max_examples_per_client == 0)
    throw OptionsError("--max-examples-per-client must be at least 1");
  o.outlier_factor = vm["outlier-factor"].as<double>();
  if (!(o.outlier_factor == 0 || (o.outlier_factor >= 1 && std::isfinite(o.outlier_factor))))
    throw OptionsError("--outlier-factor must be 0 (off) or at least 1");
  double chunk_mb = vm["chunk-mb"].as<double>();
  if (!(chunk_mb > 0 && chunk_mb <= 16)) throw OptionsError("--chunk-mb must be in (0, 16]");
  o.chunk_elements = std::max<std::size_t>(1, static_cast<std::size_t>(chunk_mb * 1024 * 1024 / 4));
}

// Every federation may turn tabular (a site announcing a table); --schema fixes the table.
void read_table(const po::variables_map& vm, OrchestratorOptions& o) {
  FederationTable::Options t;
  t.model = o.train.model;
  t.task = FederationTable::task_of_model(o.train.model);
  t.min_examples = vm["min-examples"].as<std::uint64_t>();
  if (vm.count("schema")) {
    auto schema = read_schema_file(vm["schema"].as<std::string>());
    if (!schema) throw OptionsError("--schema: " + schema.error().message);
    if (Status s = FederationTable::check_model(*schema, o.train.model); !s)
      throw OptionsError("--schema: " + s.message());
    t.schema = std::move(*schema);
  }
  o.table = std::move(t);
}

}  // namespace

CoordinatorConfig coordinator_config(const po::variables_map& vm) {
  CoordinatorConfig c;
  c.log_level = vm["log-level"].as<std::string>();
  if (!vm.count("pki"))
    throw OptionsError("--pki DIR is required (create one with `federa-pki init --dir DIR`)");
  c.pki = vm["pki"].as<std::string>();
  c.key_file =
      vm.count("key-file") ? vm["key-file"].as<std::string>() : c.pki + "/coordinator/key.pem";
  c.listen = parse_host_port(vm["listen"].as<std::string>(), "listen");
  if (vm.count("members")) c.members_file = vm["members"].as<std::string>();
  c.eval_data = vm["eval-data"].as<std::string>();
  c.state_dir = vm["state-dir"].as<std::string>();
  c.resume = vm["resume"].as<bool>();
  c.metrics_out = vm["metrics-out"].as<std::string>();
  c.keep_models = vm["keep-models"].as<std::size_t>();
  c.max_connections = vm["max-connections"].as<std::size_t>();
  if (c.max_connections == 0) throw OptionsError("--max-connections must be at least 1");
  c.client_metrics_out = vm["client-metrics-out"].as<std::string>();
  c.device = vm["device"].as<std::string>();
  c.threads = std::max(1u, vm["threads"].as<unsigned>());
  OrchestratorOptions& o = c.orchestrator;
  read_rounds(vm, o);
  read_evaluation(vm, o);
  read_training(vm, o.train);
  read_secure(vm, o);
  read_table(vm, o);
  o.secagg_threads = c.threads;
  if (!c.members_file.empty()) {
    auto members = read_members_file(c.members_file);
    if (!members) throw OptionsError("--members: " + members.error().message);
    o.members = std::move(*members);
  }
  if (vm.count("admin-listen"))
    c.admin_listen = parse_host_port(vm["admin-listen"].as<std::string>(), "admin-listen");
  if (vm.count("admin-token-file")) c.admin_token_file = vm["admin-token-file"].as<std::string>();
  c.admin_audit_log = vm.count("admin-audit-log") ? vm["admin-audit-log"].as<std::string>()
                                                  : c.state_dir + "/admin-audit.jsonl";
  if (!c.admin_listen && (vm.count("admin-token-file") || vm.count("admin-audit-log")))
    throw OptionsError("--admin-token-file and --admin-audit-log need --admin-listen HOST:PORT");
  auto s = strategy_options_from(vm);
  if (!s) throw OptionsError(s.error().message);
  c.strategy = std::move(*s);
  // Central DP bounds every update by clipping; a rejection that depends on the other clients'
  // norms would leak through the accounting, so the outlier rule stays off with it.
  if (c.strategy.dp_enabled()) o.outlier_factor = 0;
  return c;
}

Result<std::set<std::string>> read_members_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::not_found, "cannot open " + path);
  std::set<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) out.insert(line);
  }
  if (out.empty()) return make_error(ErrorCode::invalid_argument, path + " lists no client names");
  return out;
}

}  // namespace federa
