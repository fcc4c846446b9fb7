// The coordinator's tabular bookkeeping (coordinator/federation_table.hpp): sites' reports at
// join, the derived schema, the privacy floor, the model check, the statistics phase, resume.
#include <doctest/doctest.h>

#include <cmath>

#include "common/statistics.hpp"
#include "coordinator/federation_table.hpp"

using namespace federa;

namespace {

std::string site(const std::vector<std::string>& classes, const std::string& extra_column = "",
                 const std::string& sex_type = "categorical") {
  Schema s;
  s.label = "y";
  s.classes = classes;
  s.features = {{"age", ColumnType::numeric, {}}};
  if (sex_type == "categorical")
    s.features.push_back({"sex", ColumnType::categorical, {"F"}});
  else
    s.features.push_back({"sex", ColumnType::numeric, {}});
  if (!extra_column.empty()) s.features.push_back({extra_column, ColumnType::numeric, {}});
  return schema_to_json(s);
}

#define CHECK_HAS(text, part) CHECK_MESSAGE((text).find(part) != std::string::npos, (text))

}  // namespace

TEST_CASE("federation table: a derived schema is the sorted union of the connected sites'") {
  FederationTable t({{}, TaskType::classification, 10, "softmax:3,3"});
  CHECK_FALSE(t.fixed());
  CHECK(t.schema_json() == R"({"task":"classification"})");
  REQUIRE(t.admit("a", site({"yes"})).ok());
  REQUIRE(t.admit("b", site({"maybe", "no"})).ok());
  // Columns must agree with the sites already admitted: the difference is named.
  Status s = t.admit("c", site({"no"}, "zip"));
  REQUIRE_FALSE(s.ok());
  CHECK_HAS(s.message(), "column 'zip' is not in the federation's schema");
  s = t.admit("d", site({"no"}, "", "numeric"));
  CHECK_HAS(s.message(), "column 'sex' is numeric here but categorical");
  CHECK_HAS(t.admit("e", "{oops").message(), "malformed");
  CHECK_HAS(t.admit("f", "", "site.csv:3:2: label 'x' is not in the class list").message(),
            "site.csv:3:2");
  Schema reg;
  reg.label = "y";
  reg.task = TaskType::regression;
  reg.features = {{"age", ColumnType::numeric, {}}};
  CHECK_HAS(t.admit("g", schema_to_json(reg)).message(), "read its data for regression");

  // 'b' left before round 1: its values are not in the federation's lists.
  auto fixed = t.fix({"a", "c"});
  REQUIRE_FALSE(fixed.ok());  // 'c' was refused, so only 'a': one class
  CHECK_HAS(fixed.error().message, "1 label value between them");
  REQUIRE(t.admit("h", site({"no"})).ok());
  fixed = t.fix({"a", "h"});
  REQUIRE_FALSE(fixed.ok());  // softmax:3,3 does not take 1 + (1 + 1) inputs and 2 classes
  CHECK_HAS(fixed.error().message, "use softmax:3,2");
  FederationTable u({{}, TaskType::classification, 10, "softmax:3,3"});
  for (const char* id : {"a", "b", "h"})
    REQUIRE(u.admit(id, site({id == std::string("b") ? "maybe" : "yes", "no"})).ok());
  fixed = u.fix({"a", "b", "h"});
  REQUIRE_MESSAGE(fixed.ok(), (fixed.ok() ? "" : fixed.error().message));
  CHECK(fixed->classes == std::vector<std::string>{"maybe", "no", "yes"});
  CHECK(u.fixed());
  // After the fix a site must fit: a new label value is refused.
  CHECK_HAS(u.admit("late", site({"never"})).message(), "label value 'never' not in");
  CHECK(u.admit("late", site({"no"})).ok());
  TrainConfig config;
  u.fill(config);
  CHECK(config.extra.count(kConfigSchema) == 1);
  CHECK(config.extra.count(kConfigStandardization) == 0);  // not before the statistics
}

TEST_CASE("federation table: the privacy floor and the model check of a given schema") {
  Schema given;
  given.label = "y";
  given.classes = {"a", "b"};
  given.features = {{"x", ColumnType::numeric, {}}, {"k", ColumnType::categorical, {"p", "q"}}};
  FederationTable t({given, TaskType::regression, 10, "softmax:4,2"});
  CHECK(t.task() == TaskType::classification);  // the schema's task wins
  CHECK(t.fixed());
  CHECK(t.schema_json() == schema_to_json(given));
  Status floor = t.check_rows(3);
  REQUIRE_FALSE(floor.ok());
  CHECK_HAS(floor.message(), "3 training rows; this federation needs at least 10");
  CHECK(t.check_rows(10).ok());
  CHECK(t.fix({}).ok());
  CHECK(FederationTable::check_model(given, "mlp:4,16,2").ok());
  CHECK_HAS(FederationTable::check_model(given, "linreg:4").message(), "(classification)");
  CHECK_HAS(FederationTable::check_model(given, "softmax:4,3").message(), "4 inputs and 2 classes");
  CHECK(FederationTable::check_model(given, "safetensors:model.safetensors").ok());
  CHECK(FederationTable::task_of_model("mlp:4,8,1") == TaskType::regression);
  CHECK(FederationTable::task_of_model("softmax:4,2") == TaskType::classification);
}

TEST_CASE("federation table: statistics are checked, summed, and survive a resume") {
  Schema given;
  given.label = "y";
  given.classes = {"a", "b"};
  given.features = {{"x", ColumnType::numeric, {}}, {"k", ColumnType::categorical, {"p", "q"}}};
  FederationTable t({given, TaskType::classification, 1, "softmax:4,2"});
  Dataset d;
  d.rows = 3;
  d.features = 4;
  d.num_classes = 2;
  d.x = {1, 1, 0, 0, 3, 0, 1, 0, 5, 1, 0, 0};
  d.labels = {0, 1, 0};
  auto part = compute_statistics(d, given);
  REQUIRE(part.ok());
  t.begin_statistics();
  CHECK_FALSE(t.finish_statistics().ok());
  REQUIRE(t.add_statistics("a", statistics_to_json(*part, given)).ok());
  REQUIRE(t.add_statistics("b", statistics_to_json(*part, given)).ok());
  // Figures no data could give are refused, naming the site.
  TableStatistics bad = *part;
  bad.columns[0].numeric.sum_sq = 1;  // below sum^2 / count = 27
  CHECK_HAS(t.add_statistics("c", statistics_to_json(bad, given)).message(), "from 'c'");
  bad = *part;
  bad.columns[1].category_counts = {5, 0, 0};
  CHECK_HAS(t.add_statistics("c", statistics_to_json(bad, given)).message(), "do not sum");
  bad = *part;
  bad.columns[0].numeric.max = 2;  // below the mean
  CHECK_FALSE(t.add_statistics("c", statistics_to_json(bad, given)).ok());
  CHECK_FALSE(t.add_statistics("c", "[]").ok());
  REQUIRE(t.finish_statistics().ok());
  REQUIRE(t.statistics().has_value());
  CHECK(t.statistics()->rows == 6);
  CHECK(t.standardization()->mean[0] == doctest::Approx(3.0));
  CHECK(t.standardization()->std[0] == doctest::Approx(std::sqrt(8.0 / 3.0)));
  TrainConfig config;
  t.fill(config);
  CHECK(config.extra.at(kConfigStandardization) ==
        standardization_to_json(*t.standardization(), given));

  // A phase run again that gathers nothing (too few answers) leaves the figures in force.
  const std::string in_force = t.to_json();
  t.begin_statistics();
  REQUIRE(t.add_statistics("a", statistics_to_json(*part, given)).ok());
  t.begin_statistics();
  CHECK_FALSE(t.finish_statistics().ok());
  CHECK(t.to_json() == in_force);
  CHECK(t.statistics()->rows == 6);

  // --resume: the same schema and figures; a different --schema is refused.
  FederationTable back({{}, TaskType::classification, 1, "softmax:4,2"});
  REQUIRE(back.restore(t.to_json()).ok());
  CHECK(back.fixed());
  CHECK(*back.schema() == given);
  CHECK(back.standardization()->mean == t.standardization()->mean);
  Schema other = given;
  other.classes = {"b", "a"};
  FederationTable changed({other, TaskType::classification, 1, "softmax:4,2"});
  CHECK_HAS(changed.restore(t.to_json()).message(), "keeps its schema");
  CHECK(back.restore("{}").ok());
  CHECK_FALSE(back.restore("nope").ok());

  // The secure sum replaces the plain one.
  const int bits = secure_limb_bits(2);
  auto limbs = encode_secure_sum(*part, given, bits);
  REQUIRE(limbs.ok());
  std::vector<double> twice(limbs->size());
  for (std::size_t i = 0; i < twice.size(); ++i) twice[i] = 2.0 * (*limbs)[i];
  t.begin_statistics();
  REQUIRE(t.set_secure_sum(twice, bits).ok());
  REQUIRE(t.finish_statistics().ok());
  CHECK(t.statistics()->rows == 6);
  CHECK_FALSE(t.statistics()->has_extremes);
  CHECK(t.standardization()->mean[0] == doctest::Approx(3.0));
}
