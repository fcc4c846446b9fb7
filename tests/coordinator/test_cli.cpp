// Duration flags of the coordinator and the client (coordinator/cli.cpp, client/cli.cpp): a number
// of seconds that cannot be a deadline is an OptionsError naming the flag, never a conversion whose
// result is undefined (the fuzzer found `--round-timeout 1e45` overflowing the cast to integer
// milliseconds: a float-cast-overflow under UBSan, a meaningless deadline without it).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "client/cli.hpp"
#include "coordinator/cli.hpp"

using namespace federa;

namespace {

po::variables_map parse(po::options_description desc, std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto vm = parse_options(static_cast<int>(argv.size()), argv.data(), desc);
  REQUIRE(vm.has_value());
  return *vm;
}

// The message of the OptionsError `f` throws, or "" when it throws none.
template <class F>
std::string options_error(F&& f) {
  try {
    f();
  } catch (const OptionsError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("coordinator: a duration no deadline can hold is refused, naming its flag") {
  for (const char* flag : {"--round-timeout", "--upload-stall-timeout", "--secagg-phase-timeout",
                           "--evaluate-timeout"}) {
    for (const char* value : {"1e45", "inf", "1e300", "nan"}) {
      const std::string shown = std::string(flag) + " " + value;
      CAPTURE(shown);
      auto vm = parse(coordinator_flags(), {"--pki", "pki", flag, value});
      const std::string why = options_error([&] { (void)coordinator_config(vm); });
      CHECK(why.find(flag) != std::string::npos);
    }
  }
  // a long deadline that is still a deadline stays accepted, exactly
  auto vm = parse(coordinator_flags(), {"--pki", "pki", "--round-timeout", "86400.5"});
  CHECK(coordinator_config(vm).orchestrator.round_timeout == std::chrono::milliseconds(86400500));
}

TEST_CASE("client: reconnection durations no clock can hold are refused, naming their flag") {
  for (const char* flag : {"--retry-max", "--give-up-after"}) {
    for (const char* value : {"1e45", "-1", "inf"}) {
      const std::string shown = std::string(flag) + " " + value;
      CAPTURE(shown);
      auto vm = parse(client_flags(), {"--coordinator", "127.0.0.1:8443", "--kit", "kit", "--data",
                                       "d", flag, value});
      const std::string why = options_error([&] { (void)connection_options(vm); });
      CHECK(why.find(flag) != std::string::npos);
    }
  }
  auto vm = parse(client_flags(), {"--coordinator", "127.0.0.1:8443", "--kit", "kit", "--data", "d",
                                   "--give-up-after", "90"});
  CHECK(connection_options(vm).give_up_after == std::chrono::seconds(90));
  CHECK(connection_options(vm).backoff_max == std::chrono::seconds(30));
}
