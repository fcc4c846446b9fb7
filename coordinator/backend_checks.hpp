// The checks every aggregation backend makes, in one place so the CPU and CUDA backends accept and
// reject exactly the same updates with the same messages. For backend implementations only.
//
//   if (Status st = backend::check_add(x.size(), n_, weight, options); !st) return st.error();
//   std::optional<double> norm = backend::known_norm(options);   // from AddOptions::known
//   if (!norm) norm = measure_norm_on_the_device(...);           // the validation pass
//   Result<double> scale = backend::check_norm(*norm, options);  // reject or clip factor
//   if (!scale) return scale.error();                             // nothing was added
#pragma once

#include <cmath>
#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "common/result.hpp"
#include "coordinator/aggregation_backend.hpp"

namespace federa::backend {

inline constexpr const char* kNonFinite = "update has non-finite values (NaN or Inf)";

inline Error size_error(std::size_t got, std::size_t want) {
  return make_error(
      ErrorCode::invalid_argument,
      "update has " + std::to_string(got) + " values, the model has " + std::to_string(want));
}

// Shapes and the weight, before anything is read.
inline Status check_add(std::size_t size, std::size_t n, float weight, const AddOptions& o) {
  if (size != n) return size_error(size, n);
  if (!o.reference.empty() && o.reference.size() != n)
    return make_error(ErrorCode::invalid_argument,
                      "reference has " + std::to_string(o.reference.size()) +
                          " values, the model has " + std::to_string(n));
  if (!std::isfinite(weight))
    return make_error(ErrorCode::invalid_argument, "update weight is not finite");
  return {};
}

// The L2 norm the options need (of the change with a reference, else of x), when the caller
// measured it and vouched that every value is finite; nullopt when the backend must measure.
inline std::optional<double> known_norm(const AddOptions& o) {
  if (!o.known.finite) return std::nullopt;
  const std::optional<double>& s = o.reference.empty() ? o.known.sum_sq : o.known.sum_sq_delta;
  if (!s || !std::isfinite(*s) || *s < 0.0) return std::nullopt;
  return std::sqrt(*s);
}

// Validates a measured norm against the options: an Error (invalid_argument) for a non-finite
// update or one over max_norm, else the clip factor min(1, clip_norm / norm).
inline Result<double> check_norm(double norm, const AddOptions& o) {
  if (!std::isfinite(norm)) return make_error(ErrorCode::invalid_argument, kNonFinite);
  if (o.max_norm > 0.0 && norm > o.max_norm)
    return make_error(ErrorCode::invalid_argument, "update L2 norm " + std::to_string(norm) +
                                                       " exceeds the bound " +
                                                       std::to_string(o.max_norm));
  if (o.clip_norm > 0.0 && norm > o.clip_norm) return o.clip_norm / norm;
  return 1.0;
}

// UpdateSet::weighted_mean's arguments against `count` kept rows of n values; the weights' sum.
inline Result<double> check_weighted_mean(std::span<const std::size_t> rows,
                                          std::span<const float> weights, std::size_t count,
                                          std::size_t out_size, std::size_t n) {
  if (count == 0) return make_error(ErrorCode::failed_precondition, "no updates kept");
  if (out_size != 0 && out_size != n) return size_error(out_size, n);
  if (rows.empty() || rows.size() != weights.size())
    return make_error(ErrorCode::invalid_argument,
                      "weighted mean: rows and weights must be non-empty and of equal length");
  double total = 0.0;
  for (std::size_t j = 0; j < rows.size(); ++j) {
    if (rows[j] >= count)
      return make_error(ErrorCode::invalid_argument, "weighted mean: row out of range");
    total += weights[j];
  }
  if (!(total > 0.0))
    return make_error(ErrorCode::invalid_argument, "weighted mean: weights sum to zero");
  return total;
}

// median / trimmed_mean over `count` kept rows into an output of out_size (trim 0 for the median).
inline Status check_robust(std::size_t count, std::size_t out_size, std::size_t n,
                           std::size_t trim) {
  if (count == 0) return make_error(ErrorCode::failed_precondition, "no updates kept");
  if (out_size != n) return size_error(out_size, n);
  if (trim > 0 && 2 * trim >= count)
    return make_error(ErrorCode::invalid_argument,
                      "trimmed mean: trimming " + std::to_string(trim) + " from each end of " +
                          std::to_string(count) + " updates leaves nothing");
  return {};
}

}  // namespace federa::backend
