#include "common/statistics.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>

namespace federa {

namespace json = boost::json;

namespace {

void add_value(NumericSummary& s, double v) {
  s.count += 1;
  s.sum += v;
  s.sum_sq += v * v;
  s.min = std::min(s.min, v);
  s.max = std::max(s.max, v);
}

void add_summary(NumericSummary& total, const NumericSummary& part) {
  total.count += part.count;
  total.sum += part.sum;
  total.sum_sq += part.sum_sq;
  total.min = std::min(total.min, part.min);
  total.max = std::max(total.max, part.max);
}

TableStatistics empty_statistics(const Schema& schema) {
  TableStatistics s;
  s.columns.resize(schema.features.size());
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    if (schema.features[j].type == ColumnType::categorical)
      s.columns[j].category_counts.assign(schema.features[j].categories.size() + 1, 0.0);
  }
  return s;
}

}  // namespace

Result<TableStatistics> compute_statistics(const Dataset& data, const Schema& schema,
                                           std::span<const std::size_t> rows) {
  if (data.features != schema.input_width())
    return make_error(ErrorCode::invalid_argument,
                      "statistics: the data has " + std::to_string(data.features) +
                          " encoded features, the schema " + std::to_string(schema.input_width()));
  const bool regression = schema.task == TaskType::regression;
  if (regression && data.targets.size() != data.rows)
    return make_error(ErrorCode::invalid_argument, "statistics: regression data without targets");
  TableStatistics s = empty_statistics(schema);
  const auto offsets = schema.offsets();
  const std::size_t n = rows.empty() ? data.rows : rows.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = rows.empty() ? i : rows[i];
    if (r >= data.rows)
      return make_error(ErrorCode::invalid_argument,
                        "statistics: row " + std::to_string(r) + " is outside the data");
    const float* x = data.row(r);
    for (std::size_t j = 0; j < schema.features.size(); ++j) {
      if (schema.features[j].type == ColumnType::numeric) {
        const float v = x[offsets[j]];
        if (!std::isnan(v)) add_value(s.columns[j].numeric, v);
      } else {
        auto& counts = s.columns[j].category_counts;
        for (std::size_t k = 0; k < counts.size(); ++k) counts[k] += x[offsets[j] + k];
      }
    }
    if (regression) add_value(s.label, data.targets[r]);
  }
  s.rows = static_cast<double>(n);
  return s;
}

Status add_statistics(TableStatistics& total, const TableStatistics& part) {
  if (total.columns.size() != part.columns.size())
    return make_error(ErrorCode::invalid_argument, "statistics: different column counts");
  for (std::size_t j = 0; j < total.columns.size(); ++j) {
    if (total.columns[j].category_counts.size() != part.columns[j].category_counts.size())
      return make_error(ErrorCode::invalid_argument,
                        "statistics: column " + std::to_string(j) + " differs in categories");
  }
  for (std::size_t j = 0; j < total.columns.size(); ++j) {
    add_summary(total.columns[j].numeric, part.columns[j].numeric);
    auto& c = total.columns[j].category_counts;
    for (std::size_t k = 0; k < c.size(); ++k) c[k] += part.columns[j].category_counts[k];
  }
  add_summary(total.label, part.label);
  total.rows += part.rows;
  total.has_extremes = total.has_extremes && part.has_extremes;
  return Status::success();
}

namespace {

json::object summary_json(const NumericSummary& s, bool extremes) {
  json::object o{{"count", s.count}, {"sum", s.sum}, {"sum_sq", s.sum_sq}};
  if (extremes && s.count > 0) {
    o["min"] = s.min;
    o["max"] = s.max;
  }
  return o;
}

Result<double> number(const json::object& o, std::string_view key, bool required = true) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) {
    if (!required) return std::numeric_limits<double>::quiet_NaN();
    return make_error(ErrorCode::invalid_argument,
                      "statistics: \"" + std::string(key) + "\" missing");
  }
  if (!v->is_number())
    return make_error(ErrorCode::invalid_argument,
                      "statistics: \"" + std::string(key) + "\" is not a number");
  const double d = v->to_number<double>();
  if (!std::isfinite(d))
    return make_error(ErrorCode::invalid_argument,
                      "statistics: \"" + std::string(key) + "\" is not finite");
  return d;
}

Result<NumericSummary> summary_from(const json::object& o, bool* extremes) {
  NumericSummary s;
  for (auto [key, field] :
       {std::pair{"count", &s.count}, std::pair{"sum", &s.sum}, std::pair{"sum_sq", &s.sum_sq}}) {
    auto v = number(o, key);
    if (!v) return v.error();
    *field = *v;
  }
  auto mn = number(o, "min", false), mx = number(o, "max", false);
  if (!mn) return mn.error();
  if (!mx) return mx.error();
  if (!std::isnan(*mn) && !std::isnan(*mx)) {
    s.min = *mn;
    s.max = *mx;
  } else if (s.count > 0) {
    *extremes = false;
  }
  return s;
}

}  // namespace

std::string statistics_to_json(const TableStatistics& s, const Schema& schema) {
  json::array columns;
  for (std::size_t j = 0; j < s.columns.size() && j < schema.features.size(); ++j) {
    json::object c;
    if (schema.features[j].type == ColumnType::numeric) {
      c = summary_json(s.columns[j].numeric, s.has_extremes);
    } else {
      json::array counts;
      for (double v : s.columns[j].category_counts) counts.emplace_back(v);
      c["category_counts"] = std::move(counts);
    }
    c["name"] = schema.features[j].name;
    columns.emplace_back(std::move(c));
  }
  json::object o{{"rows", s.rows}, {"columns", std::move(columns)}};
  if (schema.task == TaskType::regression) o["label"] = summary_json(s.label, s.has_extremes);
  return json::serialize(o);
}

Result<TableStatistics> statistics_from_json(std::string_view text, const Schema& schema) {
  boost::system::error_code ec;
  const json::value root = json::parse(text, ec);
  if (ec || !root.is_object())
    return make_error(ErrorCode::invalid_argument, "statistics: not a JSON object");
  const auto& o = root.get_object();
  TableStatistics s = empty_statistics(schema);
  auto rows = number(o, "rows");
  if (!rows) return rows.error();
  s.rows = *rows;
  const auto* cols = o.if_contains("columns");
  if (cols == nullptr || !cols->is_array() || cols->get_array().size() != schema.features.size())
    return make_error(ErrorCode::invalid_argument,
                      "statistics: \"columns\" must list the schema's " +
                          std::to_string(schema.features.size()) + " columns");
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    const auto& c = cols->get_array()[j];
    if (!c.is_object())
      return make_error(ErrorCode::invalid_argument, "statistics: a column is not an object");
    if (schema.features[j].type == ColumnType::numeric) {
      auto sum = summary_from(c.get_object(), &s.has_extremes);
      if (!sum) return sum.error();
      s.columns[j].numeric = *sum;
      continue;
    }
    const auto* counts = c.get_object().if_contains("category_counts");
    auto& out = s.columns[j].category_counts;
    if (counts == nullptr || !counts->is_array() || counts->get_array().size() != out.size())
      return make_error(ErrorCode::invalid_argument,
                        "statistics: column '" + schema.features[j].name + "' needs " +
                            std::to_string(out.size()) + " category counts");
    for (std::size_t k = 0; k < out.size(); ++k) {
      const auto& v = counts->get_array()[k];
      if (!v.is_number())
        return make_error(ErrorCode::invalid_argument,
                          "statistics: a category count is not a number");
      out[k] = v.to_number<double>();
    }
  }
  if (schema.task == TaskType::regression) {
    const auto* l = o.if_contains("label");
    if (l == nullptr || !l->is_object())
      return make_error(ErrorCode::invalid_argument, "statistics: \"label\" missing");
    auto sum = summary_from(l->get_object(), &s.has_extremes);
    if (!sum) return sum.error();
    s.label = *sum;
  }
  return s;
}

namespace {

constexpr int kLimbWords = 128;  // bits per fixed-point value

int limbs_per_value(int limb_bits) { return (kLimbWords + limb_bits - 1) / limb_bits; }

// The additive values of a TableStatistics, in a fixed order.
std::vector<double> additive_values(const TableStatistics& s, const Schema& schema) {
  std::vector<double> v{s.rows};
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    if (schema.features[j].type == ColumnType::numeric) {
      const auto& n = s.columns[j].numeric;
      v.insert(v.end(), {n.count, n.sum, n.sum_sq});
    } else {
      v.insert(v.end(), s.columns[j].category_counts.begin(), s.columns[j].category_counts.end());
    }
  }
  if (schema.task == TaskType::regression)
    v.insert(v.end(), {s.label.count, s.label.sum, s.label.sum_sq});
  return v;
}

std::size_t additive_count(const Schema& schema) {
  std::size_t n = 1;
  for (const auto& c : schema.features)
    n += c.type == ColumnType::numeric ? 3 : c.categories.size() + 1;
  return n + (schema.task == TaskType::regression ? 3 : 0);
}

bool limb_bits_ok(int bits) { return bits >= 8 && bits <= 16; }

}  // namespace

std::size_t secure_sum_length(const Schema& schema, int limb_bits) {
  if (!limb_bits_ok(limb_bits)) return 0;
  return additive_count(schema) * static_cast<std::size_t>(limbs_per_value(limb_bits));
}

int secure_limb_bits(std::uint32_t cohort) {
  for (int bits = 16; bits >= 8; --bits) {
    // SecAgg+ bounds each coordinate by ceil(clip) + 1 = 2^bits.
    if (static_cast<double>(cohort) * std::ldexp(1.0, bits) <= 2147483647.0) return bits;
  }
  return 0;
}

Result<std::vector<float>> encode_secure_sum(const TableStatistics& s, const Schema& schema,
                                             int limb_bits) {
  if (!limb_bits_ok(limb_bits))
    return make_error(ErrorCode::invalid_argument, "statistics: limb bits must be in [8, 16]");
  if (s.columns.size() != schema.features.size())
    return make_error(ErrorCode::invalid_argument, "statistics: not this schema's");
  const std::vector<double> values = additive_values(s, schema);
  const int limbs = limbs_per_value(limb_bits);
  const unsigned __int128 mask = (static_cast<unsigned __int128>(1) << limb_bits) - 1;
  std::vector<float> out;
  out.reserve(values.size() * static_cast<std::size_t>(limbs));
  for (double v : values) {
    const double scaled = std::ldexp(v, kSecureFractionBits);
    // |value| < 2^86 leaves a cohort of 2^40 sites room before the 128-bit sum could wrap.
    if (!std::isfinite(scaled) || std::abs(v) >= std::ldexp(1.0, 86))
      return make_error(
          ErrorCode::invalid_argument,
          "statistics: a value too large for the secure sum (" + std::to_string(v) + ")");
    const auto q = static_cast<__int128>(std::nearbyint(scaled));
    auto u = static_cast<unsigned __int128>(q);  // two's complement
    for (int k = 0; k < limbs; ++k) {
      out.push_back(static_cast<float>(static_cast<std::uint32_t>(u & mask)));
      u >>= limb_bits;
    }
  }
  return out;
}

Result<TableStatistics> decode_secure_sum(std::span<const double> limb_sums, const Schema& schema,
                                          int limb_bits) {
  if (!limb_bits_ok(limb_bits) || limb_sums.size() != secure_sum_length(schema, limb_bits))
    return make_error(ErrorCode::invalid_argument,
                      "statistics: a secure sum of " + std::to_string(limb_sums.size()) +
                          " values, expected " +
                          std::to_string(secure_sum_length(schema, limb_bits)));
  const int limbs = limbs_per_value(limb_bits);
  std::vector<double> values;
  for (std::size_t i = 0; i < limb_sums.size(); i += static_cast<std::size_t>(limbs)) {
    unsigned __int128 total = 0;  // arithmetic mod 2^128 recovers the signed sum
    for (int k = 0; k < limbs; ++k) {
      const double d = limb_sums[i + static_cast<std::size_t>(k)];
      if (!(d >= 0) || d != std::floor(d) || d > 9.0e15)
        return make_error(ErrorCode::invalid_argument,
                          "statistics: a secure limb sum is not a small non-negative integer");
      total += static_cast<unsigned __int128>(static_cast<std::uint64_t>(d)) << (limb_bits * k);
    }
    values.push_back(
        std::ldexp(static_cast<double>(static_cast<__int128>(total)), -kSecureFractionBits));
  }
  TableStatistics s = empty_statistics(schema);
  s.has_extremes = false;
  std::size_t p = 0;
  s.rows = values[p++];
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    if (schema.features[j].type == ColumnType::numeric) {
      auto& n = s.columns[j].numeric;
      n.count = values[p++];
      n.sum = values[p++];
      n.sum_sq = values[p++];
    } else {
      for (auto& c : s.columns[j].category_counts) c = values[p++];
    }
  }
  if (schema.task == TaskType::regression) {
    s.label.count = values[p++];
    s.label.sum = values[p++];
    s.label.sum_sq = values[p++];
  }
  return s;
}

Result<Standardization> make_standardization(const TableStatistics& total, const Schema& schema) {
  if (total.columns.size() != schema.features.size())
    return make_error(ErrorCode::invalid_argument, "standardization: not this schema's statistics");
  Standardization z;
  z.mean.assign(schema.features.size(), 0.0);
  z.std.assign(schema.features.size(), 1.0);
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    if (schema.features[j].type != ColumnType::numeric) continue;
    const auto& n = total.columns[j].numeric;
    if (!(n.count > 0))
      return make_error(
          ErrorCode::failed_precondition,
          "standardization: column '" + schema.features[j].name + "' has no value at any site");
    const double mean = n.sum / n.count;
    const double var = std::max(0.0, n.sum_sq / n.count - mean * mean);
    const double sd = std::sqrt(var);
    z.mean[j] = mean;
    // A constant column (up to rounding of the sums) is centred but not scaled.
    z.std[j] = sd > 1e-9 * std::max(1.0, std::abs(mean)) ? sd : 1.0;
  }
  return z;
}

std::string standardization_to_json(const Standardization& z, const Schema& schema) {
  json::array columns;
  for (std::size_t j = 0; j < schema.features.size() && j < z.mean.size(); ++j) {
    if (schema.features[j].type != ColumnType::numeric) continue;
    columns.emplace_back(
        json::object{{"name", schema.features[j].name}, {"mean", z.mean[j]}, {"std", z.std[j]}});
  }
  return json::serialize(json::object{{"columns", std::move(columns)}});
}

Result<Standardization> standardization_from_json(std::string_view text, const Schema& schema) {
  boost::system::error_code ec;
  const json::value root = json::parse(text, ec);
  const json::value* cols =
      !ec && root.is_object() ? root.get_object().if_contains("columns") : nullptr;
  if (cols == nullptr || !cols->is_array())
    return make_error(ErrorCode::invalid_argument,
                      "standardization: expected {\"columns\": [...]}");
  Standardization z;
  z.mean.assign(schema.features.size(), 0.0);
  z.std.assign(schema.features.size(), 1.0);
  std::size_t next = 0;
  for (const auto& c : cols->get_array()) {
    while (next < schema.features.size() && schema.features[next].type != ColumnType::numeric)
      ++next;
    if (next == schema.features.size() || !c.is_object())
      return make_error(ErrorCode::invalid_argument,
                        "standardization: more columns than the schema's numeric ones");
    const auto& o = c.get_object();
    const auto* name = o.if_contains("name");
    if (name == nullptr || !name->is_string() || name->get_string() != schema.features[next].name)
      return make_error(ErrorCode::invalid_argument,
                        "standardization: expected column '" + schema.features[next].name + "'");
    auto mean = number(o, "mean"), sd = number(o, "std");
    if (!mean) return mean.error();
    if (!sd) return sd.error();
    if (!(*sd > 0))
      return make_error(ErrorCode::invalid_argument, "standardization: a std is not positive");
    z.mean[next] = *mean;
    z.std[next] = *sd;
    ++next;
  }
  while (next < schema.features.size() && schema.features[next].type != ColumnType::numeric) ++next;
  if (next != schema.features.size())
    return make_error(ErrorCode::invalid_argument,
                      "standardization: fewer columns than the schema's numeric ones");
  return z;
}

namespace {

Status transform(Dataset& data, const Schema& schema, const Standardization& z, bool scale) {
  if (data.features != schema.input_width() || z.mean.size() != schema.features.size() ||
      z.std.size() != schema.features.size())
    return make_error(ErrorCode::invalid_argument,
                      "standardize: the data or the figures do not fit the schema");
  const auto offsets = schema.offsets();
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    if (schema.features[j].type != ColumnType::numeric) continue;
    const auto mean = static_cast<float>(z.mean[j]);
    const auto inv = scale ? static_cast<float>(1.0 / z.std[j]) : 1.0f;
    const float shift = scale ? mean : 0.0f;
    for (std::size_t r = 0; r < data.rows; ++r) {
      float& v = data.x[r * data.features + offsets[j]];
      if (std::isnan(v)) v = mean;
      v = (v - shift) * inv;
    }
  }
  return Status::success();
}

}  // namespace

Status standardize(Dataset& data, const Schema& schema, const Standardization& z) {
  return transform(data, schema, z, true);
}

Status impute_means(Dataset& data, const Schema& schema, const Standardization& z) {
  return transform(data, schema, z, false);
}

}  // namespace federa

namespace federa {

Status check_statistics(const TableStatistics& s, const Schema& schema) {
  const auto bad = [](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, "statistics: " + why);
  };
  if (s.columns.size() != schema.features.size()) return bad("not this schema's columns");
  if (!(s.rows >= 0) || s.rows != std::floor(s.rows)) return bad("a row count that is no count");
  const auto summary_ok = [&](const NumericSummary& n, const std::string& name) -> Status {
    if (!(n.count >= 0 && n.count <= s.rows) || n.count != std::floor(n.count))
      return bad("column '" + name + "': a count outside [0, rows]");
    if (!(n.sum_sq >= 0)) return bad("column '" + name + "': a negative sum of squares");
    // Cauchy-Schwarz: sum^2 <= count * sum_sq, up to the rounding of the sums.
    if (n.count > 0 && n.sum * n.sum > n.count * n.sum_sq * (1 + 1e-9) + 1e-9)
      return bad("column '" + name + "': a sum of squares below sum^2 / count");
    if (s.has_extremes && n.count > 0 &&
        !(n.min <= n.max && n.min * n.count <= n.sum + 1e-9 * std::abs(n.sum) + 1e-9 &&
          n.max * n.count >= n.sum - 1e-9 * std::abs(n.sum) - 1e-9))
      return bad("column '" + name + "': min, max and sum do not agree");
    return Status::success();
  };
  for (std::size_t j = 0; j < schema.features.size(); ++j) {
    const auto& c = s.columns[j];
    const std::string& name = schema.features[j].name;
    if (schema.features[j].type == ColumnType::numeric) {
      if (Status st = summary_ok(c.numeric, name); !st) return st;
      continue;
    }
    double total = 0;
    for (double v : c.category_counts) {
      if (!(v >= 0) || v != std::floor(v)) return bad("column '" + name + "': a negative count");
      total += v;
    }
    if (total != s.rows)
      return bad("column '" + name + "': category counts do not sum to the rows");
  }
  if (schema.task == TaskType::regression) return summary_ok(s.label, schema.label);
  return Status::success();
}

}  // namespace federa
