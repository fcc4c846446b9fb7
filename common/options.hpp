// Command lines for every federa program: Boost.program_options for the flags, and a JSON
// `--config FILE` whose keys are the same names as the flags. The command line wins over the file.
// A config file's relative paths are relative to the file (so /etc/federa/client.json can say
// "kit": "kit"), a flag's to the working directory, as a shell user expects.
//
//   po::options_description desc("federa-coordinator");
//   desc.add_options()("rounds", po::value<int>()->default_value(10), "rounds to run");
//   auto vm = parse_options(argc, argv, desc, {{"kit", resolve_path}});  // throws OptionsError
//   if (!vm) { print_help(desc); return 0; }    // --help was given
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace federa {

namespace po = boost::program_options;

struct OptionsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Rewrites a config file's value for a key that names files, given the file's folder.
using PathResolver =
    std::function<std::string(const std::string& value, const std::filesystem::path& config_dir)>;

// One path: a relative one is taken relative to `config_dir`; absolute and empty ones stay.
std::string resolve_path(const std::string& value, const std::filesystem::path& config_dir);
// A dataset spec (common/dataset.hpp): the files inside idx:IMAGES,LABELS and csv:FILE:label=C.
std::string resolve_data_spec(const std::string& spec, const std::filesystem::path& config_dir);

// Adds --help, --config FILE and --log-level to `desc`, parses argv, then the JSON config (an
// object: {"rounds": 20, "listen": "0.0.0.0:8443", "resume": true}); unknown keys, wrong types
// and bad values raise OptionsError naming the key. Values of the keys in `paths` that come from
// the config file go through their resolver. Returns nullopt when --help was asked for.
std::optional<po::variables_map> parse_options(
    int argc, char** argv, po::options_description& desc,
    const std::map<std::string, PathResolver>& paths = {});

// A program's main: runs `run`, and turns an OptionsError into exit status 2 with the usage
// hint, any other exception into 1, each said on stderr as "PROGRAM: ...".
//   int main(int argc, char** argv) { return run_program("federa-client", argc, argv, run); }
int run_program(std::string_view program, int argc, char** argv, int (*run)(int, char**));

// Level names as spdlog's: trace, debug, info, warn, error, critical, off. Logs go to stderr;
// when stderr is the systemd journal (stderr_is_journal) without timestamps or colours and with
// a syslog priority prefix ("<6>" for info) so journalctl keeps each line's level.
void setup_logging(std::string_view level, std::string_view program);
// True when JOURNAL_STREAM names stderr's device and inode, as systemd sets it for a service
// whose stderr is the journal (a child that redirected stderr elsewhere is not).
bool stderr_is_journal();

// "HOST:PORT" (IPv6 as "[::1]:8443"); throws OptionsError on a malformed value.
struct HostPort {
  std::string host;
  unsigned short port = 0;
};
HostPort parse_host_port(std::string_view text, std::string_view flag);

// A flag that is a number of seconds (fractions allowed), as milliseconds. Throws OptionsError
// naming the flag unless the value is finite, at most kMaxSeconds (about 116 days: longer is
// no deadline an operator means, and the integer conversion of a larger double is undefined), and
// above zero, or zero too where `zero_ok` (for flags whose 0 means "none" or "the default").
inline constexpr double kMaxSeconds = 1e7;
std::chrono::milliseconds seconds_option(const po::variables_map& vm, const std::string& name,
                                         bool zero_ok = false);

}  // namespace federa
