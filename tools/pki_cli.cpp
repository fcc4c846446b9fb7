#include "tools/pki_cli.hpp"

#include <iostream>

namespace federa::pki_cli {

namespace fs = std::filesystem;

void print_command_help(const Command& c, std::ostream& out) {
  out << "usage: federa-pki " << c.name << " [options]\n\n" << c.summary << "\n\n" << c.options;
}

bool parse(const Command& c, int argc, char** argv, po::variables_map& vm) {
  po::store(po::command_line_parser(argc, argv).options(c.options).positional({}).run(), vm);
  if (vm.count("help")) {
    print_command_help(c, std::cout);
    return false;
  }
  po::notify(vm);
  return true;
}

int fail(const char* command, const Error& error) {
  std::cerr << "federa-pki " << command << ": " << error.message << "\n";
  return kExitFailure;
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

}  // namespace federa::pki_cli
