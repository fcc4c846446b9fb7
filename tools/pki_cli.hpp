// federa-pki's commands (internal to tools/pki_*.cpp): each `run_*` parses the arguments after
// its command word and returns the process exit status.
//
//   Command c = make_command("renew", "summary", add_options);
//   po::variables_map vm;
//   if (!parse(c, argc, argv, vm)) return kExitOk;    // --help was printed
//   if (!result) return fail("renew", result.error()); // "federa-pki renew: <message>", exit 1
#pragma once

#include <boost/program_options.hpp>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace federa::pki_cli {

namespace po = boost::program_options;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;  // also what main returns for a po::error

struct Command {
  const char* name;
  const char* summary;
  po::options_description options;
};

void print_command_help(const Command& c, std::ostream& out);

// Parses argv after the command word. Returns false when --help was asked for (and printed);
// throws po::error on usage errors, which main turns into exit code 2.
bool parse(const Command& c, int argc, char** argv, po::variables_map& vm);

// Prints "federa-pki COMMAND: message" on stderr and returns kExitFailure.
int fail(const char* command, const Error& error);

// One line per written file saying what it is and who may see it.
void list_files(const std::vector<std::filesystem::path>& files);

int run_init(int argc, char** argv);
int run_issue(int argc, char** argv);
int run_issue_coordinator(int argc, char** argv);
int run_verify(int argc, char** argv);
int run_renew(int argc, char** argv);
int run_list(int argc, char** argv);
int run_token(int argc, char** argv);

}  // namespace federa::pki_cli
