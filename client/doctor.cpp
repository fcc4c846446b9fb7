#include "client/doctor.hpp"

#include <dirent.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "client/cli.hpp"
#include "client/exec_trainer_cli.hpp"
#include "common/csv.hpp"
#include "common/dataset.hpp"
#include "common/tls.hpp"
#include "common/wire.hpp"

namespace federa {

namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using Tcp = net::ip::tcp;

constexpr auto kStepTimeout = std::chrono::seconds(10);

// One test connection, step by step; the first failing step ends it. Runs on the caller's
// io_context (run_for bounds it).
class Probe : public std::enable_shared_from_this<Probe> {
 public:
  enum class Stage { resolve, reach, tls, member };

  Probe(net::io_context& io, ssl::context& tls, HostPort target, std::chrono::milliseconds wait)
      : resolver_(io), ws_(io, tls), timer_(io), target_(std::move(target)), wait_(wait) {}

  void start() {
    resolver_.async_resolve(target_.host, std::to_string(target_.port),
                            beast::bind_front_handler(&Probe::on_resolve, shared_from_this()));
  }

  Stage stage = Stage::resolve;  // the step reached; failed there when `failure` is set
  std::string resolved;          // the addresses the name resolved to
  std::string failure;
  std::string refusal;  // the coordinator's Error when it refused the member
  bool admitted = false;

 private:
  void on_resolve(beast::error_code ec, const Tcp::resolver::results_type& results) {
    if (ec) return fail(ec.message());
    for (const auto& r : results)
      if (resolved.find(r.endpoint().address().to_string()) == std::string::npos)
        resolved += (resolved.empty() ? "" : ", ") + r.endpoint().address().to_string();
    stage = Stage::reach;
    beast::get_lowest_layer(ws_).expires_after(kStepTimeout);
    beast::get_lowest_layer(ws_).async_connect(
        results, beast::bind_front_handler(&Probe::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, const Tcp::endpoint&) {
    if (ec) return fail(ec.message());
    stage = Stage::tls;
    if (Status s = set_client_tls_hostname(ws_.next_layer().native_handle(), target_.host); !s)
      return fail(s.error().message);
    ws_.next_layer().async_handshake(ssl::stream_base::client,
                                     beast::bind_front_handler(&Probe::on_tls, shared_from_this()));
  }

  void on_tls(beast::error_code ec) {
    if (ec) return fail(describe_tls_error(ec, ws_.next_layer().native_handle()));
    ws_.binary(true);
    ws_.async_handshake(target_.host + ":" + std::to_string(target_.port), "/v1/connect",
                        beast::bind_front_handler(&Probe::on_upgrade, shared_from_this()));
  }

  // In TLS 1.3 the coordinator judges our certificate after our handshake has finished, so its
  // refusal arrives here, on the first read.
  void on_upgrade(beast::error_code ec) {
    if (ec && ec.category() == net::error::get_ssl_category())
      return fail(describe_tls_error(ec, ws_.next_layer().native_handle()));
    stage = Stage::member;
    if (ec) return fail("WebSocket upgrade at /v1/connect failed: " + ec.message());
    beast::get_lowest_layer(ws_).expires_never();
    ws_.async_read(buffer_, beast::bind_front_handler(&Probe::on_read, shared_from_this()));
    timer_.expires_after(wait_);
    timer_.async_wait(beast::bind_front_handler(&Probe::on_quiet, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (done_) return;
    timer_.cancel();
    if (ec) return fail("the coordinator closed the connection: " + ec.message());
    wire::Envelope msg;
    const auto data = buffer_.data();
    if (msg.ParseFromArray(data.data(), static_cast<int>(data.size())) && msg.has_error())
      refusal = msg.error().message();
    else
      admitted = true;  // it spoke first without refusing: not expected, but not a refusal
    finish();
  }

  // No refusal within `wait_`: the coordinator waits for our Hello, which we never send.
  void on_quiet(beast::error_code ec) {
    if (ec || done_) return;
    admitted = true;
    finish();
  }

  void fail(std::string why) {
    failure = std::move(why);
    done_ = true;
  }

  void finish() {
    done_ = true;
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      beast::get_lowest_layer(self->ws_).close();
    });
  }

  Tcp::resolver resolver_;
  websocket::stream<ssl::stream<beast::tcp_stream>> ws_;
  net::steady_timer timer_;
  HostPort target_;
  std::chrono::milliseconds wait_;
  beast::flat_buffer buffer_;
  bool done_ = false;
};

void report_probe(DoctorReport& report, const Probe& p, const HostPort& target,
                  const std::string& name) {
  const std::string where = target.host + ":" + std::to_string(target.port);
  std::string problem = p.failure;  // at p.stage; the stages before it passed
  if (problem.empty() && !p.admitted && p.refusal.empty()) problem = "no answer in time";
  using Stage = Probe::Stage;
  if (!problem.empty() && p.stage == Stage::resolve) {
    report.add(check_fail("coordinator", "cannot resolve " + target.host + ": " + problem,
                          "check \"coordinator\" in the config and this host's DNS"));
    return;
  }
  report.add(check_ok("coordinator", target.host + " resolves to " + p.resolved));
  if (!problem.empty() && p.stage == Stage::reach) {
    report.add(check_fail(
        "reach", "cannot connect to " + where + ": " + problem,
        "is the coordinator running, and is the port open on the firewalls between? (the central "
        "team checks theirs with `federa-coordinator doctor`)"));
    return;
  }
  report.add(check_ok("reach", "TCP connection to " + where));
  if (!problem.empty() && p.stage == Stage::tls) {
    report.add(check_fail(
        "tls", problem,
        "install the kit the central team issued for this federation (its ca.pem, cert.pem and "
        "key.pem together), and dial a name the coordinator's certificate lists"));
    return;
  }
  report.add(check_ok(
      "tls", "TLS 1.3 both ways: the coordinator's certificate is from this kit's CA and names " +
                 target.host + ", and it accepted ours"));
  if (!p.refusal.empty())
    report.add(check_fail("member", "the coordinator refuses '" + name + "': " + p.refusal,
                          "ask the central team to add '" + name + "' to its member list"));
  else if (!problem.empty())
    report.add(check_fail("member", problem,
                          "check the coordinator's log; is \"coordinator\" a federa coordinator?"));
  else
    report.add(check_ok("member", "the coordinator accepts the name '" + name +
                                      "' (no refusal after the upgrade)"));
}

// The federa-client processes on this host (not this one) that use one of `ours` (our --config
// and --kit, canonical) as their own --config or --kit, each read relative to that process's
// working directory: the agent a test connection under the same name would replace.
std::optional<long> agent_using(const std::vector<std::filesystem::path>& ours) {
  namespace fs = std::filesystem;
  const long self = static_cast<long>(::getpid());
  std::unique_ptr<DIR, int (*)(DIR*)> proc(::opendir("/proc"), ::closedir);
  if (!proc) return std::nullopt;
  while (const dirent* e = ::readdir(proc.get())) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    const fs::path dir = fs::path("/proc") / e->d_name;
    std::ifstream comm(dir / "comm");
    std::string name;
    if (!std::getline(comm, name) || name != "federa-client") continue;
    std::ifstream cmdline(dir / "cmdline");
    std::vector<std::string> args;
    for (std::string arg; std::getline(cmdline, arg, '\0');) args.push_back(arg);
    std::error_code ec;
    const fs::path cwd = fs::read_symlink(dir / "cwd", ec);
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] != "--config" && args[i] != "--kit") continue;
      fs::path p(args[i + 1]);
      if (p.is_relative()) p = cwd / p;
      const fs::path canonical = fs::weakly_canonical(p, ec);
      for (const auto& mine : ours)
        if (!ec && canonical == mine) return pid;
    }
  }
  return std::nullopt;
}

void check_kit(DoctorReport& report, const ClientOptions& opt, bool* usable) {
  const std::string renew =
      "ask the central team for a renewed kit (federa-pki renew --client NAME) and install it";
  CheckResult files = check_files_present("kit", {opt.ca_pem, opt.cert_pem, opt.key_pem},
                                          "install the startup kit from `federa-pki issue`: ca.pem "
                                          "and cert.pem (0644), key.pem (0600)");
  *usable = files.level == CheckLevel::ok;
  report.add(files);
  if (!*usable) return;
  CheckResult chain =
      check_certificate_chain("certificate", opt.ca_pem, opt.cert_pem, CertificateKind::client,
                              "ask the central team for this member's kit (federa-pki issue)");
  report.add(chain);
  report.add(check_certificate_expiry("expiry", opt.cert_pem, renew));
  report.add(check_certificate_expiry("ca-expiry", opt.ca_pem,
                                      "ask the central team about the federation's new CA"));
  CheckResult key = check_private_key("key", opt.key_pem, opt.cert_pem);
  *usable = chain.level == CheckLevel::ok && key.level == CheckLevel::ok;
  report.add(key);
}

// A CSV file: what the agent's start checks (client/tabular_data.hpp), and its shape. Its model
// input width depends on the federation's schema, so none is promised here.
void check_table_data(DoctorReport& report, const po::variables_map& vm, const ClientOptions& opt) {
  const std::string spec = vm["data"].as<std::string>();
  auto source = parse_csv_spec(spec);
  auto scan = source ? scan_csv(*source) : Result<CsvScan>(source.error());
  if (!scan) {
    report.add(check_fail(
        "data", scan.error().message,
        "point \"data\" at this site's data, readable by the user federa and outside /home"));
    return;
  }
  std::string detail;
  try {
    auto trainer = load_trainer(vm, opt.seed);  // --missing, the partition flags, as the agent
    detail = std::to_string(trainer->num_train_examples()) + " to train on";
  } catch (const OptionsError& e) {
    report.add(check_fail("data", e.what(), "correct the file or the flags it names"));
    return;
  }
  const ColumnScan& label = scan->columns[scan->label_index];
  report.add(check_ok(
      "data", spec + ": " + std::to_string(scan->rows) + " examples, " +
                  std::to_string(scan->columns.size() - 1) + " features, " +
                  (label.too_many_values ? std::string("a label of many values (regression)")
                                         : std::to_string(label.values.size()) + " classes") +
                  "; " + detail + " (read through the federation's schema when it is sent)"));
}

void check_data(DoctorReport& report, const po::variables_map& vm, const ClientOptions& opt) {
  const std::string spec = vm["data"].as<std::string>();
  if (spec.starts_with("csv:")) return check_table_data(report, vm, opt);
  auto data = load_dataset(spec, Split::train);
  if (!data) {
    report.add(check_fail(
        "data", data.error().message,
        "point \"data\" at this site's data, readable by the user federa and outside /home"));
    return;
  }
  const std::size_t features = data->features;
  std::string detail = spec + ": " + std::to_string(data->rows) + " examples, " +
                       std::to_string(features) + " features, " +
                       std::to_string(data->num_classes) + " classes";
  data = Dataset{};  // load_trainer reads it again, as the agent does
  try {
    auto trainer = load_trainer(vm, opt.seed);  // the partition flags, as the agent applies them
    detail += "; " + std::to_string(trainer->num_train_examples()) + " to train on";
  } catch (const OptionsError& e) {
    report.add(check_fail("data", e.what(), "correct the partition flags"));
    return;
  }
  report.add(check_ok("data", detail + " (the coordinator's model must take " +
                                  std::to_string(features) + " inputs)"));
}

// The built-in trainer reads --data; an external one is found and given a task folder (a dry
// run needs a model: `federa-client trainer-test`).
void check_trainer(DoctorReport& report, const po::variables_map& vm, const ClientOptions& opt) {
  try {
    if (!uses_exec_trainer(vm)) {
      check_data(report, vm, opt);
      report.add(check_skip("trainer", "the built-in trainer (no external trainer to dry-run)"));
      return;
    }
    auto exec = check_exec_setup(exec_trainer_options(vm));
    if (!exec) {
      report.add(
          check_fail("trainer", exec.error().message, "fix trainer-command or trainer-work-root"));
      return;
    }
    report.add(check_ok("trainer", *exec + "; dry-run it on a model: federa-client trainer-test "
                                           "--model FILE with the same flags"));
  } catch (const OptionsError& e) {
    report.add(check_fail("trainer", e.what(), "fix the trainer flags"));
  }
}

}  // namespace

void check_coordinator(DoctorReport& report, const HostPort& coordinator, const std::string& ca_pem,
                       const std::string& cert_pem, const std::string& key_pem,
                       const std::string& name, std::chrono::milliseconds wait) {
  auto tls = make_client_tls_context(ca_pem, cert_pem, key_pem);
  if (!tls) {
    report.add(check_fail("tls", tls.error().message, "fix the kit files named above"));
    return;
  }
  net::io_context io;
  auto probe = std::make_shared<Probe>(io, **tls, coordinator, wait);
  probe->start();
  io.run_for(3 * kStepTimeout + wait);
  report_probe(report, *probe, coordinator, name);
}

int run_client_doctor(int argc, char** argv, std::ostream& out) {
  po::options_description desc = client_flags();
  DoctorReport report(out);
  std::optional<po::variables_map> vm;
  ClientOptions opt;
  std::string edit;
  try {
    vm = parse_doctor_options(argc, argv, desc, client_path_resolvers(), out, edit);
    if (!vm) return 0;
    require_client_flags(*vm);
    opt = connection_options(*vm);
    report.add(check_config_parsed(edit));
  } catch (const OptionsError& e) {
    report.add(check_config_failed(e.what(), edit, "federa-client"));
    return report.exit_status();
  }
  bool kit_usable = false;
  check_kit(report, opt, &kit_usable);
  std::vector<std::filesystem::path> ours;
  std::error_code ec;
  if (vm->count("config"))
    ours.push_back(std::filesystem::weakly_canonical((*vm)["config"].as<std::string>(), ec));
  ours.push_back(std::filesystem::weakly_canonical((*vm)["kit"].as<std::string>(), ec));
  if (auto pid = agent_using(ours)) {
    report.add(
        check_skip("coordinator", "federa-client (pid " + std::to_string(*pid) +
                                      ") runs here with this config or kit: a test connection "
                                      "under the same name would replace its connection; its log "
                                      "says how it is doing (journalctl -u federa-client)"));
  } else if (kit_usable) {
    auto cn = read_certificate_info(opt.cert_pem);
    check_coordinator(report, opt.coordinator, opt.ca_pem, opt.cert_pem, opt.key_pem,
                      cn ? cn->common_name : std::string("?"));
  } else {
    report.add(check_skip("coordinator", "the connection test needs a usable kit (see above)"));
  }
  check_trainer(report, *vm, opt);
  return report.exit_status();
}

}  // namespace federa
