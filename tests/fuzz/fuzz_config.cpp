// Fuzz target: the JSON config loader (common/options.cpp parse_options with --config FILE) with
// the coordinator's real flags, then the coordinator's checks of the values (coordinator/cli.cpp
// coordinator_config). Option parsing is the one place allowed to throw, and only OptionsError:
// any other exception, or a crash, is a finding.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "coordinator/cli.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  federa::fuzz::MemFile file(data, size);
  std::string prog = "federa-coordinator", flag = "--config", path = file.path();
  std::vector<char*> argv{prog.data(), flag.data(), path.data(), nullptr};
  try {
    auto desc = federa::coordinator_flags();
    auto vm = federa::parse_options(3, argv.data(), desc);
    if (vm) (void)federa::coordinator_config(*vm);
  } catch (const federa::OptionsError&) {
    // the documented outcome for a bad file
  }
  // Anything else propagates: libFuzzer reports an uncaught exception as a crash.
  return 0;
}
