// Per-feature statistics of a table, summed across sites, and the standardisation they give.
// No site can standardise alone without skewing the others: the mean and spread must be the
// federation's, so each site sends sums (count, sum, sum of squares, min, max, category counts)
// and every site then scales with the same global figures.
//
//   Result<TableStatistics> mine = compute_statistics(encoded, schema, train_rows);   // a client
//   Status s = add_statistics(total, *mine);                       // the coordinator, in the clear
//   std::vector<float> v = encode_secure_sum(*mine, bits);         // or summed under SecAgg+
//   Result<TableStatistics> sum = decode_secure_sum(summed_limbs, schema, bits);
//   Result<Standardization> z = make_standardization(total, schema);   // global mean and std
//   standardize(dataset, schema, *z);    // empty cells -> mean, then (x - mean) / std
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dataset.hpp"
#include "common/result.hpp"
#include "common/schema.hpp"

namespace federa {

struct NumericSummary {
  double count = 0;  // cells with a value (empty cells are not counted)
  double sum = 0;
  double sum_sq = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
};

struct ColumnStatistics {
  NumericSummary numeric;               // numeric columns
  std::vector<double> category_counts;  // categorical: one per category, then empty cells
};

struct TableStatistics {
  double rows = 0;
  std::vector<ColumnStatistics> columns;  // one per schema feature, in its order
  NumericSummary label;                   // regression: the target; classification: unused
  // Min and max are not sums: a secure sum cannot carry them, and sending them in the clear
  // would show one site's extremes. False after decode_secure_sum.
  bool has_extremes = true;
};

// Statistics of `rows` of `data` (all rows when empty), a dataset encoded through `schema`
// (common/csv.hpp) and not yet standardised. Empty numeric cells (NaN) are left out of the sums.
Result<TableStatistics> compute_statistics(const Dataset& data, const Schema& schema,
                                           std::span<const std::size_t> rows = {});
// total += part (sums add, extremes combine). Fails when their shapes differ.
Status add_statistics(TableStatistics& total, const TableStatistics& part);
// What one site's figures must satisfy whatever its data: counts in [0, rows], sums of squares
// >= 0 and >= sum^2 / count (within rounding), min <= max, category counts summing to rows.
// A coordinator refuses other figures, so one site cannot skew every site's scaling at will.
Status check_statistics(const TableStatistics& s, const Schema& schema);

// JSON for the wire and for people: {"rows": N, "columns": [{"name", "count", "sum", "sum_sq",
// "min", "max"} | {"name", "category_counts": [...]}], "label": {...}}.
std::string statistics_to_json(const TableStatistics& s, const Schema& schema);
Result<TableStatistics> statistics_from_json(std::string_view text, const Schema& schema);

// Secure sum: every value as a signed 128-bit fixed-point number (40 fraction bits) cut into
// `limb_bits`-bit limbs, one float each (exact), so that a SecAgg+ sum of integer-valued
// vectors (clip 2^limb_bits - 1, scale 1, weight 1: no rounding at all) adds them without
// carries; decode recombines the limbs. The only error is each site's rounding to 2^-40.
// limb_bits in [8, 16]; a cohort of n sites needs n * 2^limb_bits < 2^31.
inline constexpr int kSecureFractionBits = 40;
std::size_t secure_sum_length(const Schema& schema, int limb_bits);
int secure_limb_bits(std::uint32_t cohort);  // the widest limbs a cohort's sum cannot wrap
Result<std::vector<float>> encode_secure_sum(const TableStatistics& s, const Schema& schema,
                                             int limb_bits);
Result<TableStatistics> decode_secure_sum(std::span<const double> limb_sums, const Schema& schema,
                                          int limb_bits);

// Global mean and standard deviation (population, as scikit-learn's StandardScaler) of each
// numeric feature; categorical columns keep mean 0, std 1 (their one-hot values stay 0/1). A
// constant column gets std 1.
struct Standardization {
  std::vector<double> mean, std;  // one per schema feature
};
// Where a task's config (TrainConfig::extra) carries them, as standardization_to_json's JSON.
inline constexpr const char* kConfigStandardization = "standardization";
Result<Standardization> make_standardization(const TableStatistics& total, const Schema& schema);
std::string standardization_to_json(const Standardization& z, const Schema& schema);
Result<Standardization> standardization_from_json(std::string_view text, const Schema& schema);

// In place: empty numeric cells (NaN) become the mean, then numeric columns (x - mean) / std.
// Fails on a dataset whose width is not the schema's.
Status standardize(Dataset& data, const Schema& schema, const Standardization& z);
// Empty numeric cells become `z`'s mean without scaling (--standardize off with --missing impute).
Status impute_means(Dataset& data, const Schema& schema, const Standardization& z);

}  // namespace federa
