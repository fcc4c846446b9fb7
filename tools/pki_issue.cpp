// federa-pki init, issue, issue-coordinator and verify.
#include <iostream>

#include "common/pki.hpp"
#include "tools/pki_cli.hpp"

namespace federa::pki_cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHostHelp =
    "a name or IP address clients use to reach the coordinator; repeat for several. IP "
    "addresses become IP SANs, names DNS SANs. Default: 127.0.0.1 and localhost";

Command init_command() {
  Command c{"init",
            "Creates DIR/ca.pem + DIR/ca.key (the federation CA) and DIR/coordinator/{cert.pem,"
            "key.pem,ca.pem}.\nRefuses to run when DIR already holds a CA.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder to create (e.g. pki)")(
      "coordinator-host", po::value<std::vector<std::string>>()->composing()->value_name("NAME"),
      kHostHelp);
  return c;
}

Command issue_coordinator_command() {
  Command c{"issue-coordinator",
            "Issues a new coordinator certificate and key from the CA in DIR, for when the\n"
            "coordinator's names change (`federa-pki renew --coordinator` keeps the names).\n"
            "Member kits stay valid. Refuses while DIR/coordinator exists: move it away first.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "coordinator-host", po::value<std::vector<std::string>>()->composing()->value_name("NAME"),
      kHostHelp);
  return c;
}

Command issue_command() {
  Command c{"issue",
            "Issues a member's startup kit DIR/clients/NAME/{ca.pem,cert.pem,key.pem} (--client),\n"
            "or an administrator's kit DIR/admins/NAME/{ca.pem,cert.pem,key.pem} for the\n"
            "coordinator's admin listener (--admin, with --role). NAME becomes the certificate's\n"
            "CN, the identity. Signed by DIR/ca.key. Refuses to overwrite an existing kit.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "client", po::value<std::string>()->value_name("NAME"),
      "member name: 1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.'")(
      "admin", po::value<std::string>()->value_name("NAME"),
      "administrator name (same characters), instead of --client")(
      "role", po::value<std::string>()->value_name("ROLE"),
      "with --admin: viewer (read only) or operator (may also change members, pause, stop)");
  return c;
}

Command verify_command() {
  Command c{"verify",
            "Verifies a certificate against the federation CA (chain, signature, dates) and "
            "prints what it says.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->value_name("DIR"), "PKI folder; the CA is DIR/ca.pem")(
      "ca", po::value<std::string>()->value_name("FILE"),
      "CA certificate file (e.g. a kit's ca.pem), instead of --dir")(
      "cert", po::value<std::string>()->required()->value_name("FILE"),
      "certificate file to check");
  return c;
}

std::vector<std::string> hosts_of(const po::variables_map& vm) {
  if (!vm.count("coordinator-host")) return {};
  return vm["coordinator-host"].as<std::vector<std::string>>();
}

void print_coordinator_names(const fs::path& dir) {
  auto info = read_certificate_info(dir / "coordinator" / "cert.pem");
  if (!info) return;
  std::cout << "the coordinator certificate is valid for:";
  for (const auto& ip : info->ip_addresses) std::cout << " " << ip;
  for (const auto& dns : info->dns_names) std::cout << " " << dns;
  std::cout << " (until " << info->not_after << ")\n";
}

int issue_admin_kit(const std::string& dir, const std::string& name, const std::string& role_text) {
  auto role = parse_admin_role(role_text);
  if (!role) throw po::error(role.error().message);
  auto written = issue_admin(dir, name, *role);
  if (!written) return fail("issue", written.error());
  const fs::path kit = fs::path(dir) / "admins" / name;
  std::cout << "issued the admin kit of '" << name << "' (role " << role_text << "):\n";
  list_files(*written);
  std::cout << "hand the folder " << kit.string()
            << " to that administrator over a secure channel; it opens the coordinator's admin "
               "listener (--admin-listen), not the federation port\n";
  return kExitOk;
}

const char* role_sentence(const CertificateInfo& info) {
  switch (info.kind) {
    case CertificateKind::ca:
      return "certificate authority";
    case CertificateKind::coordinator:
      return "coordinator (serverAuth)";
    case CertificateKind::client:
      return "client (clientAuth)";
    case CertificateKind::admin:
      return "administrator (admin listener only)";
    case CertificateKind::other:
      break;
  }
  return info.server_auth && info.client_auth ? "coordinator and client" : "no federa role";
}

}  // namespace

int run_init(int argc, char** argv) {
  Command c = init_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  const std::string dir = vm["dir"].as<std::string>();
  auto written = init_pki(dir, hosts_of(vm));
  if (!written) return fail("init", written.error());
  std::cout << "created the federation CA and the coordinator certificate:\n";
  list_files(*written);
  print_coordinator_names(dir);
  std::cout << "next: federa-pki issue --dir " << dir
            << " --client NAME   (once per member), then start federa-coordinator --pki " << dir
            << "\n";
  return kExitOk;
}

int run_issue_coordinator(int argc, char** argv) {
  Command c = issue_coordinator_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  const std::string dir = vm["dir"].as<std::string>();
  auto written = issue_coordinator(dir, hosts_of(vm));
  if (!written) return fail("issue-coordinator", written.error());
  std::cout << "issued a new coordinator certificate:\n";
  list_files(*written);
  print_coordinator_names(dir);
  std::cout << "restart federa-coordinator --pki " << dir << " --resume to use it\n";
  return kExitOk;
}

int run_issue(int argc, char** argv) {
  Command c = issue_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  if (vm.count("client") == vm.count("admin"))
    throw po::error("give exactly one of --client NAME or --admin NAME");
  if (vm.count("admin") != vm.count("role"))
    throw po::error(vm.count("admin") ? "--admin needs --role viewer|operator"
                                      : "--role goes with --admin (a member has no role)");
  const std::string dir = vm["dir"].as<std::string>();
  if (vm.count("admin"))
    return issue_admin_kit(dir, vm["admin"].as<std::string>(), vm["role"].as<std::string>());

  const std::string name = vm["client"].as<std::string>();
  auto written = issue_client(dir, name);
  if (!written) return fail("issue", written.error());
  const fs::path kit = fs::path(dir) / "clients" / name;
  std::cout << "issued the startup kit of client '" << name << "':\n";
  list_files(*written);
  std::cout << "hand the folder " << kit.string()
            << " to the agency over a secure channel; they run: federa-client --kit "
            << kit.string() << " --coordinator HOST:PORT ...\n";
  return kExitOk;
}

int run_verify(int argc, char** argv) {
  Command c = verify_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  if (vm.count("dir") == vm.count("ca"))
    throw po::error("give exactly one of --dir DIR or --ca FILE");
  const fs::path ca = vm.count("ca") ? fs::path(vm["ca"].as<std::string>())
                                     : fs::path(vm["dir"].as<std::string>()) / "ca.pem";
  const fs::path cert = vm["cert"].as<std::string>();

  auto cn = verify_certificate(ca, cert);
  if (!cn) return fail("verify", cn.error());
  std::cout << "OK: " << cert.string() << " is signed by " << ca.string() << "\n";
  std::cout << "  common name: " << *cn << "\n";
  if (auto info = read_certificate_info(cert); info) {
    std::cout << "  role: " << role_sentence(*info);
    if (!info->admin_role.empty()) std::cout << ", " << info->admin_role;
    std::cout << "\n  valid: " << info->not_before << " to " << info->not_after << " ("
              << days_until(info->expiry) << " days left)\n";
    std::cout << "  serial: " << info->serial_hex << "\n";
    if (!info->ip_addresses.empty() || !info->dns_names.empty()) {
      std::cout << "  names:";
      for (const auto& ip : info->ip_addresses) std::cout << " " << ip;
      for (const auto& dns : info->dns_names) std::cout << " " << dns;
      std::cout << "\n";
    }
  }
  return kExitOk;
}

}  // namespace federa::pki_cli
