// federa-coordinator's command line: the flags (every one also a --config key), parsed into one
// plain struct that the program builds its parts from. Shared by the program and its `doctor`
// (coordinator/doctor.hpp).
//
//   po::options_description desc = coordinator_flags();
//   auto vm = parse_options(argc, argv, desc);          // common/options.hpp
//   CoordinatorConfig cfg = coordinator_config(*vm);    // throws OptionsError on a bad value
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "common/options.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"

namespace federa {

struct CoordinatorConfig {
  OrchestratorOptions orchestrator;
  StrategyOptions strategy;
  HostPort listen;
  std::string pki;
  std::string key_file;      // the coordinator's private key; default PKI/coordinator/key.pem
  std::string members_file;  // empty: any client the CA signed
  std::string eval_data;
  std::string state_dir;
  bool resume = false;
  std::string metrics_out;
  std::size_t keep_models = 5;          // committed models kept in STATE_DIR/history
  std::size_t max_connections = 10000;  // open client connections, handshakes included
  std::string client_metrics_out;       // per-client evaluation results (JSON lines)
  std::string device = "auto";
  unsigned threads = 1;
  std::string log_level = "info";
  // The admin listener (coordinator/admin): HTTPS API, /metrics and dashboard; off when unset.
  std::optional<HostPort> admin_listen;
  std::string admin_token_file;  // bearer tokens from `federa-pki token`; empty: certificates only
  std::string admin_audit_log;   // append-only JSON lines; default STATE_DIR/admin-audit.jsonl
};

po::options_description coordinator_flags();
// The keys whose values name files: in a --config file they are relative to that file.
std::map<std::string, PathResolver> coordinator_path_keys();
CoordinatorConfig coordinator_config(const po::variables_map& vm);
// Reads a members file: one name per line, '#' comments. Errors name the file and the line.
Result<std::set<std::string>> read_members_file(const std::string& path);

}  // namespace federa
