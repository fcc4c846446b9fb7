// federa-pki renew, list and token.
#include <boost/json.hpp>
#include <iomanip>
#include <iostream>

#include "common/pki.hpp"
#include "tools/pki_cli.hpp"

namespace federa::pki_cli {

namespace fs = std::filesystem;

namespace {

Command renew_command() {
  Command c{"renew",
            "Replaces a kit's key and certificate with new ones from the same CA, keeping what\n"
            "the old certificate says: the name, an admin's role, the coordinator's names. The\n"
            "new kit is swapped in with one rename; the old key is deleted. For a certificate\n"
            "near its expiry; a stolen key needs a new name instead (see certs/README.md).",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "client", po::value<std::string>()->value_name("NAME"), "renew DIR/clients/NAME")(
      "admin", po::value<std::string>()->value_name("NAME"), "renew DIR/admins/NAME")(
      "coordinator", po::bool_switch(), "renew DIR/coordinator");
  return c;
}

Command list_command() {
  Command c{"list",
            "Lists every certificate under DIR (the CA, the coordinator, client and admin kits)\n"
            "with its serial, expiry and days left, then the admin tokens' names and roles.\n"
            "A kit that is unreadable, expired or not from DIR's CA says so.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")("json", "print one JSON object instead of a table");
  return c;
}

Command token_command() {
  Command c{"token",
            "Creates a bearer token for the coordinator's admin listener (for Prometheus, a\n"
            "browser, scripts) and prints it once on stdout. Only its SHA-256, the name and the\n"
            "role are appended to DIR/admin-tokens (mode 0600), which the coordinator reads\n"
            "with --admin-token-file. To revoke a token, delete its line.",
            po::options_description("options")};
  c.options.add_options()("help,h", "show this help")(
      "dir", po::value<std::string>()->required()->value_name("DIR"),
      "PKI folder made by `federa-pki init`")(
      "name", po::value<std::string>()->required()->value_name("NAME"),
      "who holds the token (shown in the audit log): 1-64 characters of A-Z a-z 0-9 . _ -")(
      "role", po::value<std::string>()->required()->value_name("ROLE"),
      "viewer (read only) or operator (may also change members, pause, stop)");
  return c;
}

std::vector<AdminTokens::Entry> token_entries(const fs::path& dir, std::string& problem) {
  const fs::path file = dir / "admin-tokens";
  std::error_code ec;
  if (!fs::exists(file, ec)) return {};
  auto tokens = AdminTokens::load(file);
  if (!tokens) {
    problem = tokens.error().message;
    return {};
  }
  return tokens->entries();
}

void print_json(const std::vector<PkiEntry>& entries, const std::vector<AdminTokens::Entry>& tokens,
                const std::string& token_problem) {
  boost::json::array certs;
  for (const PkiEntry& e : entries)
    certs.push_back({{"name", e.name},
                     {"kind", certificate_kind_name(e.kind)},
                     {"role", e.admin_role},
                     {"serial", e.serial_hex},
                     {"not_after", e.not_after},
                     {"days_left", e.days_left},
                     {"path", e.cert_pem.string()},
                     {"problem", e.problem}});
  boost::json::array toks;
  for (const AdminTokens::Entry& t : tokens)
    toks.push_back({{"name", t.name}, {"role", admin_role_name(t.role)}});
  boost::json::object out{{"certificates", certs}, {"tokens", toks}};
  if (!token_problem.empty()) out["tokens_problem"] = token_problem;
  std::cout << boost::json::serialize(out) << "\n";
}

void print_table(const std::vector<PkiEntry>& entries,
                 const std::vector<AdminTokens::Entry>& tokens, const std::string& token_problem) {
  std::cout << std::left << std::setw(24) << "NAME" << std::setw(13) << "KIND" << std::setw(34)
            << "SERIAL" << std::setw(25) << "EXPIRES"
            << "DAYS LEFT\n";
  for (const PkiEntry& e : entries) {
    std::string kind(certificate_kind_name(e.kind));
    if (!e.admin_role.empty()) kind += "/" + e.admin_role;
    std::cout << std::setw(24) << e.name << std::setw(13) << kind << std::setw(34) << e.serial_hex
              << std::setw(25) << e.not_after;
    if (e.not_after.empty())
      std::cout << "-";
    else
      std::cout << e.days_left;
    if (!e.problem.empty()) std::cout << "  (" << e.problem << ")";
    std::cout << "\n";
  }
  if (!tokens.empty() || !token_problem.empty()) std::cout << "\nadmin tokens:\n";
  for (const AdminTokens::Entry& t : tokens)
    std::cout << "  " << std::setw(24) << t.name << admin_role_name(t.role) << "\n";
  if (!token_problem.empty()) std::cout << "  (" << token_problem << ")\n";
}

}  // namespace

int run_renew(int argc, char** argv) {
  Command c = renew_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  const bool coordinator = vm["coordinator"].as<bool>();
  if (vm.count("client") + vm.count("admin") + (coordinator ? 1 : 0) != 1)
    throw po::error("give exactly one of --client NAME, --admin NAME or --coordinator");
  const std::string dir = vm["dir"].as<std::string>();
  const KitKind kind = coordinator         ? KitKind::coordinator
                       : vm.count("admin") ? KitKind::admin
                                           : KitKind::client;
  const std::string name = coordinator         ? std::string()
                           : vm.count("admin") ? vm["admin"].as<std::string>()
                                               : vm["client"].as<std::string>();
  auto written = renew_kit(dir, kind, name);
  if (!written) return fail("renew", written.error());
  std::cout << "renewed " << (coordinator ? std::string("the coordinator's kit") : "'" + name + "'")
            << " (new key, new certificate, same CA):\n";
  list_files(*written);
  if (auto info = read_certificate_info(written->at(1)); info)
    std::cout << "valid until " << info->not_after << "\n";
  if (coordinator)
    std::cout << "copy the folder to the coordinator host and restart it with --resume\n";
  else
    std::cout << "hand the new folder over as before; the old certificate stays valid until it "
                 "expires\n";
  return kExitOk;
}

int run_list(int argc, char** argv) {
  Command c = list_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  const fs::path dir = vm["dir"].as<std::string>();
  auto entries = list_pki(dir);
  if (!entries) return fail("list", entries.error());
  std::string token_problem;
  const std::vector<AdminTokens::Entry> tokens = token_entries(dir, token_problem);
  if (vm.count("json"))
    print_json(*entries, tokens, token_problem);
  else
    print_table(*entries, tokens, token_problem);
  return kExitOk;
}

int run_token(int argc, char** argv) {
  Command c = token_command();
  po::variables_map vm;
  if (!parse(c, argc, argv, vm)) return kExitOk;
  auto role = parse_admin_role(vm["role"].as<std::string>());
  if (!role) throw po::error(role.error().message);
  const fs::path dir = vm["dir"].as<std::string>();
  const std::string name = vm["name"].as<std::string>();
  auto token = create_admin_token(dir, name, *role);
  if (!token) return fail("token", token.error());
  // The token alone on stdout, so `TOKEN=$(federa-pki token ...)` works; the rest on stderr.
  std::cout << *token << std::endl;
  std::cerr << "a " << admin_role_name(*role) << " token for '" << name << "' (shown once; only "
            << "its hash is in " << (dir / "admin-tokens").string() << ")\n"
            << "use it as the header  Authorization: Bearer TOKEN\n";
  return kExitOk;
}

}  // namespace federa::pki_cli
