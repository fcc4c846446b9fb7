// federa-pki: the federation's certificate authority on the command line.
//   federa-pki init   --dir DIR [--coordinator-host NAME]...
//   federa-pki issue  --dir DIR (--client NAME | --admin NAME --role viewer|operator)
//   federa-pki renew  --dir DIR (--client NAME | --admin NAME | --coordinator)
//   federa-pki list   --dir DIR [--json]
//   federa-pki token  --dir DIR --name NAME --role viewer|operator
//   federa-pki issue-coordinator --dir DIR [--coordinator-host NAME]...
//   federa-pki verify (--dir DIR | --ca FILE) --cert FILE
// Each command lives in tools/pki_issue.cpp or tools/pki_lifecycle.cpp.
#include <iostream>
#include <string>

#include "tools/pki_cli.hpp"

namespace {

using namespace federa::pki_cli;

void print_overview(std::ostream& out) {
  out << "federa-pki: create and use the federation's certificate authority\n\n"
         "usage:\n"
         "  federa-pki init   --dir DIR [--coordinator-host NAME]...  CA + coordinator "
         "certificate\n"
         "  federa-pki issue  --dir DIR --client NAME                 a member's startup kit\n"
         "  federa-pki issue  --dir DIR --admin NAME --role ROLE      an administrator's kit\n"
         "  federa-pki renew  --dir DIR --client NAME | --admin NAME | --coordinator\n"
         "                                   new key and certificate, same name, same CA\n"
         "  federa-pki list   --dir DIR [--json]                      certificates, expiry, "
         "tokens\n"
         "  federa-pki token  --dir DIR --name NAME --role ROLE       an admin bearer token\n"
         "  federa-pki verify (--dir DIR | --ca FILE) --cert FILE     check a certificate\n"
         "  federa-pki issue-coordinator --dir DIR [--coordinator-host NAME]...\n"
         "                                   a coordinator certificate with new names\n\n"
         "ROLE is viewer or operator. Run `federa-pki COMMAND --help` for one command's options.\n"
         "See certs/README.md for the trust model: which file goes where, renewal, revocation.\n";
}

int dispatch(const std::string& cmd, int argc, char** argv) {
  if (cmd == "init") return run_init(argc, argv);
  if (cmd == "issue") return run_issue(argc, argv);
  if (cmd == "renew") return run_renew(argc, argv);
  if (cmd == "list") return run_list(argc, argv);
  if (cmd == "token") return run_token(argc, argv);
  if (cmd == "verify") return run_verify(argc, argv);
  if (cmd == "issue-coordinator") return run_issue_coordinator(argc, argv);
  std::cerr << "federa-pki: unknown command '" << cmd << "'\n\n";
  print_overview(std::cerr);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_overview(std::cerr);
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_overview(std::cout);
    return kExitOk;
  }
  try {
    // argv[1] (the command word) stands in for the program name when parsing the rest.
    return dispatch(cmd, argc - 1, argv + 1);
  } catch (const po::error& e) {
    std::cerr << "federa-pki " << cmd << ": " << e.what() << "\n(see federa-pki " << cmd
              << " --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "federa-pki " << cmd << ": " << e.what() << "\n";
    return kExitFailure;
  }
}
