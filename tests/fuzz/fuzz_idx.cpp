// Fuzz target: the IDX (MNIST-format) loader (common/dataset.cpp, "idx:IMAGES,LABELS"), plain or
// gzip-compressed. The input is two records (fuzz_util.hpp): the images file, then the labels
// file. Any bytes give a dataset or an error; a dataset it returns is consistent.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/dataset.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  federa::fuzz::Records records(data, size);
  std::string_view images, labels;
  if (!records.next(images)) return 0;
  records.next(labels);
  federa::fuzz::MemFile fi(images), fl(labels);
  auto d = federa::load_dataset("idx:" + fi.path() + "," + fl.path(), federa::Split::train);
  if (!d) return 0;
  if (d->x.size() != d->rows * d->features || d->labels.size() != d->rows || d->num_classes <= 0)
    std::abort();
  for (auto l : d->labels)
    if (l < 0 || l >= d->num_classes) std::abort();
  for (float v : d->x)
    if (!(v >= 0.0f && v <= 1.0f)) std::abort();
  return 0;
}
