#include "coordinator/doctor.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/dataset.hpp"
#include "common/doctor_checks.hpp"
#include "common/nn.hpp"
#include "common/tls.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/cli.hpp"
#include "coordinator/initial_model.hpp"
#include "coordinator/state_store.hpp"

namespace federa {

namespace {

namespace net = boost::asio;

constexpr const char* kDeployGuide = "/usr/share/doc/federa-coordinator/deploy.md";

void check_pki(DoctorReport& report, const CoordinatorConfig& cfg) {
  const std::string ca = cfg.pki + "/ca.pem";
  const std::string cert = cfg.pki + "/coordinator/cert.pem";
  const std::string renew =
      "federa-pki renew --dir PKI --coordinator on the central team's PKI, then install "
      "coordinator/cert.pem and key.pem here";
  CheckResult files =
      check_files_present("pki", {ca, cert, cfg.key_file},
                          "install ca.pem, coordinator/cert.pem (0644) and coordinator/key.pem "
                          "(0600) from the folder `federa-pki init` "
                          "made, under " +
                              cfg.pki + " (" + kDeployGuide + ", first start)");
  const bool have_files = files.level == CheckLevel::ok;
  report.add(files);
  if (!have_files) return;  // each check below would only say "missing" again
  report.add(check_certificate_chain("certificate", ca, cert, CertificateKind::coordinator,
                                     "federa-pki init --dir PKI --coordinator-host NAME"));
  report.add(check_certificate_expiry("expiry", cert, renew));
  report.add(check_certificate_expiry(
      "ca-expiry", ca, "a new CA means new kits for every member; plan it (certs/README.md)"));
  report.add(check_private_key("key", cfg.key_file, cert));
  auto tls = make_server_tls_context(ca, cert, cfg.key_file);
  if (!tls)
    report.add(check_fail("tls", tls.error().message, "fix the files named above"));
  else
    report.add(check_ok("tls", "TLS 1.3 server context with mutual authentication loads"));
}

void check_members(DoctorReport& report, const std::string& members_file) {
  if (members_file.empty()) {
    report.add(check_warn(
        "members",
        "no --members file: any client the CA signed is admitted and none can be revoked",
        "list the member names in a file and set \"members\" (certs/README.md)"));
    return;
  }
  auto members = read_members_file(members_file);
  if (!members) {
    report.add(check_fail(
        "members", members.error().message,
        "write one member name (its certificate's CN) per line; the coordinator refuses to start "
        "without one"));
    return;
  }
  const std::size_t n = members->size();
  report.add(check_ok("members",
                      std::to_string(n) + (n == 1 ? " name" : " names") + " in '" + members_file +
                          "'; `systemctl reload federa-coordinator` (SIGHUP) re-reads it"));
}

void check_listen(DoctorReport& report, const CoordinatorConfig& cfg) {
  const std::string where = cfg.listen.host + ":" + std::to_string(cfg.listen.port);
  boost::system::error_code ec;
  auto addr = net::ip::make_address(cfg.listen.host, ec);
  if (ec) {
    report.add(check_fail("listen", "'" + cfg.listen.host + "' is not an IP address",
                          "set \"listen\" to ADDRESS:PORT, e.g. 0.0.0.0:8443"));
    return;
  }
  net::io_context io;
  net::ip::tcp::acceptor acceptor(io);
  net::ip::tcp::endpoint ep(addr, cfg.listen.port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    report.add(check_fail(
        "listen", "cannot listen on " + where + ": " + ec.message(),
        "is a coordinator already running (systemctl status federa-coordinator)? otherwise "
        "choose a free port in \"listen\""));
    return;
  }
  if (cfg.listen.port != 0 && cfg.listen.port < 1024) {
    report.add(check_warn("listen",
                          where +
                              " is free, but the packaged unit has no capabilities and cannot bind "
                              "a port below 1024",
                          "use a port from 1024 up, e.g. 8443"));
    return;
  }
  report.add(check_ok("listen", where + " is free"));
}

// What the coordinator would do with --state-dir at start (coordinator/main.cpp's load_committed).
void check_committed_state(DoctorReport& report, const CoordinatorConfig& cfg) {
  auto committed = StateStore(cfg.state_dir).load();
  if (!committed) {
    report.add(check_fail("state", committed.error().message,
                          std::string("restore the folder from a backup (") + kDeployGuide +
                              "), or move it away to start a new federation"));
    return;
  }
  if (!*committed) {
    report.add(check_ok(
        "state", "nothing committed in '" + cfg.state_dir + "' yet: the job starts at round 1"));
    return;
  }
  const CommittedState& c = **committed;
  const std::string at = "'" + cfg.state_dir + "' holds round " + std::to_string(c.round);
  if (!cfg.resume)
    report.add(
        check_fail("state", at + " and --resume is off: the coordinator refuses to start",
                   "set \"resume\": true to continue it, or move the folder away for a new job"));
  else if (auto initial = load_initial_model(cfg.orchestrator.train.model, cfg.orchestrator.seed);
           initial && c.model_spec != initial->wire_spec)
    report.add(check_fail(
        "state", at + " of --model " + c.model_spec + ", not " + cfg.orchestrator.train.model,
        "set \"model\" back, or move the folder away for a new job"));
  else if (c.round >= cfg.orchestrator.rounds)
    report.add(check_warn(
        "state", at + " of " + std::to_string(cfg.orchestrator.rounds) + ": the job is complete",
        "raise \"rounds\" to continue it, or move the folder away for a new job"));
  else
    report.add(
        check_ok("state", at + "; --resume continues at round " + std::to_string(c.round + 1)));
}

void check_state(DoctorReport& report, const CoordinatorConfig& cfg,
                 const std::string& service_user) {
  const auto user = service_user_for_probes(service_user);
  CheckResult writable = check_writable_folder("state-dir", cfg.state_dir, user);
  const bool ok = writable.level == CheckLevel::ok;
  report.add(writable);
  if (ok) check_committed_state(report, cfg);
  if (!cfg.metrics_out.empty()) {
    const std::filesystem::path metrics(cfg.metrics_out);
    report.add(check_writable_folder(
        "metrics-out", metrics.has_parent_path() ? metrics.parent_path() : ".", user));
  }
}

void check_model(DoctorReport& report, const CoordinatorConfig& cfg) {
  auto initial = load_initial_model(cfg.orchestrator.train.model, cfg.orchestrator.seed);
  if (!initial) {
    report.add(check_fail("model", initial.error().message,
                          "see `federa-coordinator --help` for --model"));
    return;
  }
  report.add(check_ok("model", cfg.orchestrator.train.model + ": " + initial->description));
  if (cfg.eval_data.empty()) {
    report.add(check_skip("eval-data", "no --eval-data: no centralised evaluation"));
    return;
  }
  if (!initial->network) {
    report.add(check_fail("eval-data", "--eval-data evaluates built-in models only",
                          "drop \"eval-data\": the clients evaluate a model from a file"));
    return;
  }
  const auto& net = initial->network;
  auto data = load_dataset(cfg.eval_data, Split::test);
  if (!data) {
    report.add(check_fail("eval-data", data.error().message,
                          "point \"eval-data\" at a readable held-out set"));
  } else if (data->features != net->input_features()) {
    report.add(check_fail("eval-data",
                          cfg.eval_data + " has " + std::to_string(data->features) +
                              " features; the model expects " +
                              std::to_string(net->input_features()),
                          "use the federation's data set, or a --model for its features"));
  } else {
    report.add(check_ok("eval-data", cfg.eval_data + ": " + std::to_string(data->rows) +
                                         " examples, " + std::to_string(data->features) +
                                         " features, as the model expects"));
  }
}

void check_device(DoctorReport& report, const CoordinatorConfig& cfg) {
  auto backend = make_backend(cfg.device, 1);
  if (!backend) {
    report.add(check_fail(
        "device", backend.error().message,
        "install the NVIDIA driver and the unit's GPU drop-in (coordinator-gpu.conf), or set "
        "\"device\": \"auto\" to fall back to the CPU"));
    return;
  }
  report.add(check_ok("device", "--device " + cfg.device + ": aggregation on the " +
                                    (*backend)->name() + " backend"));
}

}  // namespace

int run_coordinator_doctor(int argc, char** argv, std::ostream& out) {
  po::options_description desc = coordinator_flags();
  desc.add_options()(
      "service-user", po::value<std::string>()->default_value("federa"),
      "doctor only: when run as root, probe folders as this user (the units' User=)");
  DoctorReport report(out);
  CoordinatorConfig cfg;
  std::string service_user, members_file, edit;
  try {
    auto vm = parse_doctor_options(argc, argv, desc, coordinator_path_keys(), out, edit);
    if (!vm) return 0;
    // The member list gets its own line below, so a fresh install's empty list is not the only
    // thing doctor reports.
    if (vm->count("members")) members_file = (*vm)["members"].as<std::string>();
    vm->erase("members");
    cfg = coordinator_config(*vm);
    cfg.members_file = members_file;
    service_user = (*vm)["service-user"].as<std::string>();
    report.add(check_config_parsed(edit));
  } catch (const OptionsError& e) {
    report.add(check_config_failed(e.what(), edit, "federa-coordinator"));
    return report.exit_status();
  }
  check_pki(report, cfg);
  check_members(report, members_file);
  check_listen(report, cfg);
  check_state(report, cfg, service_user);
  check_model(report, cfg);
  check_device(report, cfg);
  return report.exit_status();
}

}  // namespace federa
