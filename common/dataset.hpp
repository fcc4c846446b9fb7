// Labelled datasets for the built-in models: dense float features (row-major) and int labels.
// Partitions are index views into one loaded Dataset, never copies.
//
//   Result<Dataset> train = load_dataset("fashion-mnist", Split::train);
//   Result<Partitions> parts = partition_dataset(train->labels, train->num_classes,
//                                                "dirichlet:0.5", 10, /*seed=*/1);
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace federa {

struct Dataset {
  std::size_t rows = 0;
  std::size_t features = 0;
  int num_classes = 0;
  std::vector<float> x;              // rows * features, row-major, images scaled to [0, 1]
  std::vector<std::int32_t> labels;  // rows, each in [0, num_classes); empty for regression
  std::vector<float> targets;        // regression (num_classes == 0): one value per row
  const float* row(std::size_t i) const { return x.data() + i * features; }
};

enum class Split { train, test };

// spec: "fashion-mnist" (Debian's dataset-fashion-mnist files; train = 60k, test = 10k),
//       "idx:IMAGES,LABELS" (IDX files, gzip-compressed or not; the split is ignored),
//       "csv:FILE:label=COLUMN[:sep=;]" (header row; the file read through its own schema:
//       numeric columns as they are, text columns one-hot, labels numbered in the file's sorted
//       order; common/csv.hpp reads it through a federation's schema instead; the split is
//       ignored). Errors name the file and what was wrong with it.
Result<Dataset> load_dataset(std::string_view spec, Split split);

// A compact copy of the rows `indices` of `d` (in that order), e.g. for a process that keeps only
// its own partition in memory instead of the whole dataset. Fails on an out-of-range index.
Result<Dataset> select_rows(const Dataset& d, std::span<const std::size_t> indices);

using Partitions = std::vector<std::vector<std::size_t>>;  // indices per partition

// spec: "iid", "dirichlet:ALPHA" (NIID-Bench label skew), "labels:K" (NIID-Bench #C=K),
//       "quantity:ALPHA" (size skew). Deterministic in (labels, spec, count, seed).
// dirichlet and quantity redraw until every partition holds at least min(10, N / count)
// examples and fail with an error after 10,000 draws. labels:K leaves out the examples of a
// label no partition drew (possible when count < num_classes), as NIID-Bench does.
Result<Partitions> partition_dataset(std::span<const std::int32_t> labels, int num_classes,
                                     std::string_view spec, std::size_t count, std::uint64_t seed);

}  // namespace federa
