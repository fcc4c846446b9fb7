// A main() for the fuzz targets in builds without libFuzzer (GCC, Release): runs every file named
// on the command line, or every file in a folder named there, through LLVMFuzzerTestOneInput
// once. CTest uses it to replay the committed corpora, so a seed that once crashed a parser keeps
// being tested by every build.
//
//   federa_fuzz_safetensors tests/fuzz/corpus/safetensors      # exit 0: every input ran
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {
int run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", p.c_str());
    return 1;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::size_t runs = 0;
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg = argv[i];
    if (std::filesystem::is_directory(arg)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) failures += run_file(f), ++runs;
    } else {
      failures += run_file(arg), ++runs;
    }
  }
  std::printf("replayed %zu inputs\n", runs);
  if (runs == 0) {
    std::fprintf(stderr, "no inputs: pass corpus files or folders\n");
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
