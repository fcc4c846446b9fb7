// Fuzz target: the coordinator's --members file reader (coordinator/cli.cpp), re-read on every
// SIGHUP while the federation runs. Any bytes give a set of names or an error; names it returns
// are trimmed, non-empty and free of comments.
#include <cstdint>
#include <cstdlib>

#include "coordinator/cli.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  federa::fuzz::MemFile file(data, size);
  auto members = federa::read_members_file(file.path());
  if (!members) return 0;
  if (members->empty()) std::abort();
  for (const auto& name : *members) {
    if (name.empty() || name.find('#') != std::string::npos || name.find('\n') != std::string::npos)
      std::abort();
    const char first = name.front(), last = name.back();
    if (first == ' ' || first == '\t' || last == ' ' || last == '\t' || last == '\r') std::abort();
  }
  return 0;
}
