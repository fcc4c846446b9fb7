// Command lines for every federa program: Boost.program_options for the flags, and a JSON
// `--config FILE` whose keys are the same names as the flags. The command line wins over the file.
//
//   po::options_description desc("federa-coordinator");
//   desc.add_options()("rounds", po::value<int>()->default_value(10), "rounds to run");
//   auto vm = parse_options(argc, argv, desc);   // throws OptionsError with a clear message
//   if (!vm) { print_help(desc); return 0; }    // --help was given
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace federa {

namespace po = boost::program_options;

struct OptionsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Adds --help, --config FILE and --log-level to `desc`, parses argv, then the JSON config (an
// object: {"rounds": 20, "listen": "0.0.0.0:8443", "resume": true}); unknown keys, wrong types
// and bad values raise OptionsError naming the key. Returns nullopt when --help was asked for.
std::optional<po::variables_map> parse_options(int argc, char** argv,
                                               po::options_description& desc);

// Level names as spdlog's: trace, debug, info, warn, error, critical, off.
void setup_logging(std::string_view level, std::string_view program);

// "HOST:PORT" (IPv6 as "[::1]:8443"); throws OptionsError on a malformed value.
struct HostPort {
  std::string host;
  unsigned short port = 0;
};
HostPort parse_host_port(std::string_view text, std::string_view flag);

}  // namespace federa
