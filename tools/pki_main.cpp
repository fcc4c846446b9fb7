// federa-pki: the federation's certificate authority on the command line.
//   federa-pki init   --dir DIR [--coordinator-host NAME]...
//   federa-pki issue  --dir DIR --client NAME
//   federa-pki issue-coordinator --dir DIR [--coordinator-host NAME]...
//   federa-pki verify (--dir DIR | --ca FILE) --cert FILE
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "common/pki.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

void print_overview(std::ostream& out) {
  out << "federa-pki: create and use the federation's certificate authority\n\n"
         "usage:\n"
         "  federa-pki init   --dir DIR [--coordinator-host NAME]...  CA + coordinator "
         "certificate\n"
         "  federa-pki issue  --dir DIR --client NAME                 a member's startup kit\n"
         "  federa-pki verify (--dir DIR | --ca FILE) --cert FILE     check a certificate\n"
         "  federa-pki issue-coordinator --dir DIR [--coordinator-host NAME]...\n"
         "                                   a new coordinator certificate from the same CA\n\n"
         "Run `federa-pki COMMAND --help` for the options of one command.\n"
         "See certs/README.md for the trust model: which file goes where, and revocation.\n";
}

struct command {
  const char* name;
  const char* summary;
  po::options_description options;
};

command init_command() {
  command c{"init",
            "Creates DIR/ca.pem + DIR/ca.key (the federation CA) and DIR/coordinator/{cert.pem,"
            "key.pem,ca.pem}.\nRefuses to run when DIR already holds a CA.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder to create (e.g. pki)")(
      "coordinator-host", po::value<std::vector<std::string>>()->composing()->value_name("NAME"),
      "a name or IP address clients use to reach the coordinator; repeat for several. IP "
      "addresses become IP SANs, names DNS SANs. Default: 127.0.0.1 and localhost");
  return c;
}

command issue_coordinator_command() {
  command c{
      "issue-coordinator",
      "Issues a new coordinator certificate and key from the CA in DIR, for when the old one\n"
      "nears expiry or the coordinator's names change. Member kits stay valid. Refuses\n"
      "while DIR/coordinator exists: move the old folder away first.",
      po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "coordinator-host", po::value<std::vector<std::string>>()->composing()->value_name("NAME"),
      "a name or IP address clients use to reach the coordinator; repeat for several. "
      "Default: 127.0.0.1 and localhost");
  return c;
}

command issue_command() {
  command c{"issue",
            "Issues a member's startup kit DIR/clients/NAME/{ca.pem,cert.pem,key.pem}, signed by "
            "DIR/ca.key.\nNAME becomes the certificate's CN, the member's identity. Refuses to "
            "overwrite an existing kit.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "client", po::value<std::string>()->required()->value_name("NAME"),
      "member name: 1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.'");
  return c;
}

command verify_command() {
  command c{"verify",
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

void print_command_help(const command& c, std::ostream& out) {
  out << "usage: federa-pki " << c.name << " [options]\n\n" << c.summary << "\n\n" << c.options;
}

// Parses argv after the command word. Returns false when --help was asked for (and printed);
// throws po::error on usage errors, which main turns into exit code 2.
bool parse(const command& c, int argc, char** argv, po::variables_map& vm) {
  po::store(po::command_line_parser(argc, argv).options(c.options).positional({}).run(), vm);
  if (vm.count("help")) {
    print_command_help(c, std::cout);
    return false;
  }
  po::notify(vm);
  return true;
}

void list_files(const std::vector<fs::path>& files) {
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    const char* what = name == "ca.key"
                           ? "CA private key: stays with the central team, offline if you can"
                       : name == "key.pem"  ? "private key (mode 0600)"
                       : name == "cert.pem" ? "certificate"
                                            : "CA certificate (trust anchor)";
    std::cout << "  " << p.string() << "  " << what << "\n";
  }
}

void print_coordinator_names(const fs::path& dir) {
  auto info = federa::read_certificate_info(dir / "coordinator" / "cert.pem");
  if (!info) return;
  std::cout << "the coordinator certificate is valid for:";
  for (const auto& ip : info->ip_addresses) std::cout << " " << ip;
  for (const auto& dns : info->dns_names) std::cout << " " << dns;
  std::cout << " (until " << info->not_after << ")\n";
}

int run_init(int argc, char** argv) {
  command c = init_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return exit_ok;
  const std::string dir = vm["dir"].as<std::string>();
  std::vector<std::string> hosts;
  if (vm.count("coordinator-host")) hosts = vm["coordinator-host"].as<std::vector<std::string>>();

  auto written = federa::init_pki(dir, hosts);
  if (!written) {
    std::cerr << "federa-pki init: " << written.error().message << "\n";
    return exit_failure;
  }
  std::cout << "created the federation CA and the coordinator certificate:\n";
  list_files(*written);
  print_coordinator_names(dir);
  std::cout << "next: federa-pki issue --dir " << dir
            << " --client NAME   (once per member), then start federa-coordinator --pki " << dir
            << "\n";
  return exit_ok;
}

int run_issue_coordinator(int argc, char** argv) {
  command c = issue_coordinator_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return exit_ok;
  const std::string dir = vm["dir"].as<std::string>();
  std::vector<std::string> hosts;
  if (vm.count("coordinator-host")) hosts = vm["coordinator-host"].as<std::vector<std::string>>();
  auto written = federa::issue_coordinator(dir, hosts);
  if (!written) {
    std::cerr << "federa-pki issue-coordinator: " << written.error().message << "\n";
    return exit_failure;
  }
  std::cout << "issued a new coordinator certificate:\n";
  list_files(*written);
  print_coordinator_names(dir);
  std::cout << "restart federa-coordinator --pki " << dir << " --resume to use it\n";
  return exit_ok;
}

int run_issue(int argc, char** argv) {
  command c = issue_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return exit_ok;
  const std::string dir = vm["dir"].as<std::string>();
  const std::string name = vm["client"].as<std::string>();

  auto written = federa::issue_client(dir, name);
  if (!written) {
    std::cerr << "federa-pki issue: " << written.error().message << "\n";
    return exit_failure;
  }
  const fs::path kit = fs::path(dir) / "clients" / name;
  std::cout << "issued the startup kit of client '" << name << "':\n";
  list_files(*written);
  std::cout << "hand the folder " << kit.string()
            << " to the agency over a secure channel; they run: federa-client --kit "
            << kit.string() << " --coordinator HOST:PORT ...\n";
  return exit_ok;
}

int run_verify(int argc, char** argv) {
  command c = verify_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return exit_ok;
  if (vm.count("dir") == vm.count("ca"))
    throw po::error("give exactly one of --dir DIR or --ca FILE");
  const fs::path ca = vm.count("ca") ? fs::path(vm["ca"].as<std::string>())
                                     : fs::path(vm["dir"].as<std::string>()) / "ca.pem";
  const fs::path cert = vm["cert"].as<std::string>();

  auto cn = federa::verify_certificate(ca, cert);
  if (!cn) {
    std::cerr << "federa-pki verify: " << cn.error().message << "\n";
    return exit_failure;
  }
  std::cout << "OK: " << cert.string() << " is signed by " << ca.string() << "\n";
  std::cout << "  common name: " << *cn << "\n";
  if (auto info = federa::read_certificate_info(cert); info) {
    const char* role = info->is_ca                              ? "certificate authority"
                       : info->server_auth && info->client_auth ? "coordinator and client"
                       : info->server_auth                      ? "coordinator (serverAuth)"
                       : info->client_auth                      ? "client (clientAuth)"
                                                                : "no TLS role";
    std::cout << "  role: " << role << "\n";
    std::cout << "  valid: " << info->not_before << " to " << info->not_after << "\n";
    std::cout << "  serial: " << info->serial_hex << "\n";
    if (!info->ip_addresses.empty() || !info->dns_names.empty()) {
      std::cout << "  names:";
      for (const auto& ip : info->ip_addresses) std::cout << " " << ip;
      for (const auto& dns : info->dns_names) std::cout << " " << dns;
      std::cout << "\n";
    }
  }
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_overview(std::cerr);
    return exit_usage;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_overview(std::cout);
    return exit_ok;
  }
  try {
    // argv[1] (the command word) stands in for the program name when parsing the rest.
    if (cmd == "init") return run_init(argc - 1, argv + 1);
    if (cmd == "issue") return run_issue(argc - 1, argv + 1);
    if (cmd == "verify") return run_verify(argc - 1, argv + 1);
    if (cmd == "issue-coordinator") return run_issue_coordinator(argc - 1, argv + 1);
    std::cerr << "federa-pki: unknown command '" << cmd << "'\n\n";
    print_overview(std::cerr);
    return exit_usage;
  } catch (const po::error& e) {
    std::cerr << "federa-pki " << cmd << ": " << e.what() << "\n(see federa-pki " << cmd
              << " --help)\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "federa-pki " << cmd << ": " << e.what() << "\n";
    return exit_failure;
  }
}
