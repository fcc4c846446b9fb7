// Feature statistics (common/statistics.hpp): per-site sums against a pooled computation, the
// secure-sum encoding through SecAgg+'s own quantisation against the plain sum, and the
// standardisation every site applies with the federation's figures.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "common/secagg.hpp"
#include "common/statistics.hpp"

using namespace federa;

namespace {

// age: numeric, large scale; ratio: numeric, small scale; kind: categorical (3 + empty slot).
Schema site_schema(TaskType task = TaskType::classification) {
  Schema s;
  s.label = "y";
  s.task = task;
  if (task == TaskType::classification) s.classes = {"no", "yes"};
  s.features = {{"area", ColumnType::numeric, {}},
                {"ratio", ColumnType::numeric, {}},
                {"kind", ColumnType::categorical, {"a", "b", "c"}}};
  return s;
}

// `rows` encoded rows of site_schema(); every 7th area cell empty (NaN), every 11th kind too.
Dataset site_data(std::size_t rows, std::uint64_t seed, double area_mean) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> area(area_mean, 300.0), ratio(0.05, 0.01), target(150, 40);
  Dataset d;
  d.rows = rows;
  d.features = 6;
  d.num_classes = 2;
  for (std::size_t i = 0; i < rows; ++i) {
    d.x.push_back(i % 7 == 3 ? std::numeric_limits<float>::quiet_NaN()
                             : static_cast<float>(area(rng)));
    d.x.push_back(static_cast<float>(ratio(rng)));
    float onehot[4] = {0, 0, 0, 0};
    onehot[i % 11 == 5 ? 3 : rng() % 3] = 1;
    d.x.insert(d.x.end(), onehot, onehot + 4);
    d.labels.push_back(static_cast<std::int32_t>(rng() % 2));
    d.targets.push_back(static_cast<float>(target(rng)));
  }
  return d;
}

Dataset concat(const std::vector<Dataset>& parts) {
  Dataset all = parts[0];
  for (std::size_t p = 1; p < parts.size(); ++p) {
    all.x.insert(all.x.end(), parts[p].x.begin(), parts[p].x.end());
    all.labels.insert(all.labels.end(), parts[p].labels.begin(), parts[p].labels.end());
    all.targets.insert(all.targets.end(), parts[p].targets.begin(), parts[p].targets.end());
    all.rows += parts[p].rows;
  }
  return all;
}

void check_close(const NumericSummary& a, const NumericSummary& b, double rel) {
  CHECK(a.count == b.count);
  CHECK(a.sum == doctest::Approx(b.sum).epsilon(rel));
  CHECK(a.sum_sq == doctest::Approx(b.sum_sq).epsilon(rel));
}

}  // namespace

TEST_CASE("statistics: per-site sums add up to the pooled statistics") {
  for (TaskType task : {TaskType::classification, TaskType::regression}) {
    const Schema schema = site_schema(task);
    const std::vector<Dataset> sites = {site_data(120, 1, 1000), site_data(45, 2, 2500),
                                        site_data(300, 3, 400)};
    TableStatistics total;
    for (std::size_t i = 0; i < sites.size(); ++i) {
      auto s = compute_statistics(sites[i], schema);
      REQUIRE(s.ok());
      if (i == 0) {
        total = *s;
      } else {
        REQUIRE(add_statistics(total, *s).ok());
      }
    }
    auto pooled = compute_statistics(concat(sites), schema);
    REQUIRE(pooled.ok());
    CHECK(total.rows == 465);
    CHECK(pooled->rows == 465);
    for (std::size_t j = 0; j < 2; ++j) {
      check_close(total.columns[j].numeric, pooled->columns[j].numeric, 1e-12);
      CHECK(total.columns[j].numeric.min == pooled->columns[j].numeric.min);
      CHECK(total.columns[j].numeric.max == pooled->columns[j].numeric.max);
    }
    // Every 7th area cell is empty: counted out, not as zero.
    double empty_area = 0, empty_kind = 0;
    for (const auto& d : sites) {
      for (std::size_t r = 0; r < d.rows; ++r) {
        empty_area += std::isnan(d.row(r)[0]) ? 1 : 0;
        empty_kind += d.row(r)[5];
      }
    }
    CHECK(empty_area > 60);
    CHECK(total.columns[0].numeric.count == 465 - empty_area);
    CHECK(total.columns[2].category_counts == pooled->columns[2].category_counts);
    CHECK(total.columns[2].category_counts[3] == empty_kind);  // the empty-cell slot
    if (task == TaskType::regression) check_close(total.label, pooled->label, 1e-12);

    // Only some rows: the training rows of a site.
    const std::vector<std::size_t> rows = {0, 5, 9};
    auto some = compute_statistics(sites[0], schema, rows);
    REQUIRE(some.ok());
    CHECK(some->rows == 3);
    CHECK(some->columns[1].numeric.sum ==
          doctest::Approx(double(sites[0].row(0)[1]) + sites[0].row(5)[1] + sites[0].row(9)[1]));
  }
}

TEST_CASE("statistics: JSON round trip; wrong shapes are refused") {
  const Schema schema = site_schema(TaskType::regression);
  auto s = compute_statistics(site_data(50, 4, 800), schema);
  REQUIRE(s.ok());
  auto back = statistics_from_json(statistics_to_json(*s, schema), schema);
  REQUIRE_MESSAGE(back.ok(), (back.ok() ? "" : back.error().message));
  CHECK(back->rows == s->rows);
  check_close(back->columns[0].numeric, s->columns[0].numeric, 1e-15);
  CHECK(back->columns[0].numeric.max == s->columns[0].numeric.max);
  CHECK(back->columns[2].category_counts == s->columns[2].category_counts);
  check_close(back->label, s->label, 1e-15);

  CHECK_FALSE(statistics_from_json("{}", schema).ok());
  CHECK_FALSE(statistics_from_json(R"({"rows": 1, "columns": []})", schema).ok());
  CHECK_FALSE(
      compute_statistics(site_data(5, 1, 1), site_schema(), std::vector<std::size_t>{9}).ok());
  Schema narrow = schema;
  narrow.features.pop_back();
  CHECK_FALSE(compute_statistics(site_data(5, 1, 1), narrow).ok());
  TableStatistics other = *compute_statistics(site_data(5, 1, 1), site_schema());
  TableStatistics mine = *compute_statistics(site_data(5, 1, 1), site_schema());
  other.columns[2].category_counts.pop_back();
  CHECK_FALSE(add_statistics(mine, other).ok());
}

TEST_CASE("statistics: the secure sum through SecAgg+ quantisation equals the plain sum") {
  const Schema schema = site_schema(TaskType::regression);
  const std::vector<Dataset> sites = {site_data(120, 5, 1e5), site_data(45, 6, 2500),
                                      site_data(300, 7, -4e5)};
  const auto n = static_cast<std::uint32_t>(sites.size());
  const int bits = secure_limb_bits(n);
  CHECK(bits == 16);
  CHECK(secure_limb_bits(40000) < 16);
  CHECK(secure_limb_bits(40000) >= 8);
  // Exactly what the SecAgg+ client does with an update: clip, weight 1, scale 1.
  auto q = secagg::make_quant_config(n, std::ldexp(1.0, bits) - 1, 1.0, 1.0);
  REQUIRE(q.ok());
  const std::size_t len = secure_sum_length(schema, bits);
  std::vector<std::uint32_t> ring(len + 1, 0);
  TableStatistics plain;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    auto s = compute_statistics(sites[i], schema);
    REQUIRE(s.ok());
    if (i == 0)
      plain = *s;
    else
      REQUIRE(add_statistics(plain, *s).ok());
    auto v = encode_secure_sum(*s, schema, bits);
    REQUIRE(v.ok());
    REQUIRE(v->size() == len);
    std::vector<std::uint32_t> words(len + 1);
    REQUIRE(secagg::quantize(*v, 1.0, *q, words).ok());
    for (std::size_t k = 0; k <= len; ++k) ring[k] += words[k];  // mod 2^32, as masks cancel
  }
  const secagg::Decoded decoded = secagg::dequantize(ring, *q);
  CHECK(decoded.total_weight == doctest::Approx(3.0));
  auto secure = decode_secure_sum(decoded.weighted_sum, schema, bits);
  REQUIRE_MESSAGE(secure.ok(), (secure.ok() ? "" : secure.error().message));
  CHECK_FALSE(secure->has_extremes);
  CHECK(secure->rows == plain.rows);
  // The only error is each site's rounding to 2^-40 per value.
  const double eps = 3 * std::ldexp(1.0, -kSecureFractionBits);
  for (std::size_t j = 0; j < 2; ++j) {
    const auto& a = secure->columns[j].numeric;
    const auto& b = plain.columns[j].numeric;
    CHECK(a.count == b.count);
    CHECK(std::abs(a.sum - b.sum) <= eps + 1e-14 * std::abs(b.sum));
    CHECK(std::abs(a.sum_sq - b.sum_sq) <= eps + 1e-14 * std::abs(b.sum_sq));
  }
  CHECK(secure->columns[2].category_counts == plain.columns[2].category_counts);
  CHECK(std::abs(secure->label.sum - plain.label.sum) <= eps + 1e-14 * std::abs(plain.label.sum));
  // Negative sums survive the two's complement limbs.
  CHECK(plain.columns[0].numeric.sum < 0);

  // Standardising with the secure figures matches the plain ones.
  auto zs = make_standardization(*secure, schema), zp = make_standardization(plain, schema);
  REQUIRE(zs.ok());
  REQUIRE(zp.ok());
  for (std::size_t j = 0; j < 2; ++j) {
    CHECK(zs->mean[j] == doctest::Approx(zp->mean[j]).epsilon(1e-12));
    CHECK(zs->std[j] == doctest::Approx(zp->std[j]).epsilon(1e-9));
  }

  CHECK_FALSE(decode_secure_sum(std::vector<double>(len - 1, 0.0), schema, bits).ok());
  CHECK_FALSE(decode_secure_sum(std::vector<double>(len, -1.0), schema, bits).ok());
  CHECK_FALSE(encode_secure_sum(plain, schema, 20).ok());
  TableStatistics huge = plain;
  huge.columns[0].numeric.sum_sq = 1e30;
  CHECK_FALSE(encode_secure_sum(huge, schema, bits).ok());
}

TEST_CASE("statistics: standardising every site with the global figures standardises the pool") {
  const Schema schema = site_schema();
  std::vector<Dataset> sites = {site_data(120, 8, 1000), site_data(45, 9, 2500),
                                site_data(300, 10, 400)};
  TableStatistics total = *compute_statistics(sites[0], schema);
  for (std::size_t i = 1; i < sites.size(); ++i)
    REQUIRE(add_statistics(total, *compute_statistics(sites[i], schema)).ok());
  auto z = make_standardization(total, schema);
  REQUIRE(z.ok());
  // Through the wire form, as a client receives it.
  auto received = standardization_from_json(standardization_to_json(*z, schema), schema);
  REQUIRE(received.ok());
  for (std::size_t j = 0; j < 3; ++j) {
    CHECK(received->mean[j] == doctest::Approx(z->mean[j]).epsilon(1e-15));
    CHECK(received->std[j] == doctest::Approx(z->std[j]).epsilon(1e-15));
  }
  for (auto& d : sites) REQUIRE(standardize(d, schema, *received).ok());
  const Dataset all = concat(sites);
  auto after = compute_statistics(all, schema);
  REQUIRE(after.ok());
  // Empty cells became the mean (0 after scaling): counted now, so the variance shrinks by
  // the share of empty cells.
  const double filled = total.columns[0].numeric.count / all.rows;
  for (std::size_t j = 0; j < 2; ++j) {
    const auto& s = after->columns[j].numeric;
    CHECK(s.count == all.rows);
    CHECK(s.sum / s.count == doctest::Approx(0.0).epsilon(1e-5).scale(1.0));
    const double var = s.sum_sq / s.count;
    CHECK(var == doctest::Approx(j == 0 ? filled : 1.0).epsilon(1e-4));
  }
  // One-hot columns stay 0/1.
  CHECK(after->columns[2].category_counts == total.columns[2].category_counts);
  for (std::size_t r = 0; r < all.rows; ++r) CHECK_FALSE(std::isnan(all.row(r)[0]));

  // A constant column is centred, not divided by zero.
  Dataset flat = site_data(10, 11, 0);
  for (std::size_t r = 0; r < flat.rows; ++r) flat.x[r * flat.features + 1] = 0.25f;
  auto fz = make_standardization(*compute_statistics(flat, schema), schema);
  REQUIRE(fz.ok());
  CHECK(fz->std[1] == 1.0);
  CHECK(standardization_from_json(R"({"columns": []})", schema).error().message.find("fewer") !=
        std::string::npos);
  Dataset wrong = flat;
  wrong.features = 5;
  CHECK_FALSE(standardize(wrong, schema, *fz).ok());
}
