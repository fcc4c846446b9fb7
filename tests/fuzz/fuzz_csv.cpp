// Fuzz target: the CSV dataset loader (common/dataset.cpp, "csv:FILE:label=COLUMN"), which reads
// an agency's own tables. Any bytes give a dataset or an error naming the line; a dataset it
// returns is consistent (rows x features values, every label in [0, num_classes)).
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "common/dataset.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  federa::fuzz::MemFile file(data, size);
  auto d = federa::load_dataset("csv:" + file.path() + ":label=label", federa::Split::train);
  if (!d) return 0;
  if (d->rows == 0 || d->features == 0 || d->x.size() != d->rows * d->features ||
      d->labels.size() != d->rows || d->num_classes <= 0)
    std::abort();
  for (auto l : d->labels)
    if (l < 0 || l >= d->num_classes) std::abort();
  for (float v : d->x)
    if (!std::isfinite(v)) std::abort();
  return 0;
}
