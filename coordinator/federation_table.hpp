// The coordinator's side of a tabular federation, apart from the transport: the schema (given
// with --schema, or derived from the sites' reports at join), the privacy floor, the statistics
// phase's sums, and what every task then carries. The orchestrator calls it under its lock.
//
//   FederationTable table({.schema = given, .task = TaskType::classification,
//                          .min_examples = 10, .model = "softmax:30,2"});
//   Status s = table.admit("site-a", local_schema_json, train_rows);  // at join: the difference
//   Result<Schema> fixed = table.fix({"site-a", "site-b"});            // before round 1
//   table.add_statistics("site-a", statistics_json);   // or set_secure_sum(limb_sums, bits)
//   Status z = table.finish_statistics();                // global means and stds
//   table.fill(config);                                  // extra["schema"],
//   extra["standardization"]
//
// A derived schema is the sorted union of what the sites that are still connected at fix()
// hold; a site joining later must fit it. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/schema.hpp"
#include "common/statistics.hpp"
#include "common/train_config.hpp"

namespace federa {

class FederationTable {
 public:
  struct Options {
    std::optional<Schema> schema;              // --schema FILE; empty: derived at join
    TaskType task = TaskType::classification;  // from the schema, else from the model spec
    std::uint64_t min_examples = 10;           // --min-examples
    std::string model;                         // --model, checked against the schema's width
  };

  explicit FederationTable(Options options);

  // The task a model spec implies: regression for linreg and mlp ending in 1.
  static TaskType task_of_model(const std::string& model);
  // Whether `model` can take `schema`'s encoded rows (input width, classes, task); the error
  // says which spec would.
  static Status check_model(const Schema& schema, const std::string& model);

  TaskType task() const { return opt_.task; }
  bool fixed() const { return fixed_.has_value(); }
  // The given schema, or the derived one once fixed.
  const std::optional<Schema>& schema() const { return fixed_; }
  // What Welcome tells a site: the task, and the schema as JSON when it is known.
  std::string schema_json() const;

  // The privacy floor: refuses fewer than --min-examples training rows, saying why.
  Status check_rows(std::uint64_t train_rows) const;
  // A site's report at join: its local schema (common/schema.hpp JSON) or, when it found its file
  // does not fit the schema it was sent, that reason (`refusal`). Admitted sites count in the
  // derived schema; the error names every difference.
  Status admit(const std::string& client, std::string_view local_schema_json,
               std::string_view refusal = {});
  // Fixes a derived schema as the union of `clients`' reports (those still connected), checks
  // it has two classes and that the model takes it. For a given schema only the model check.
  Result<Schema> fix(const std::vector<std::string>& clients);

  // The statistics phase over the fixed schema.
  void begin_statistics();
  Status add_statistics(const std::string& client, std::string_view statistics_json);
  Status set_secure_sum(std::span<const double> limb_sums, int limb_bits);
  // The global standardisation from what was added, which then replaces the figures in force;
  // fails when nothing was, and the figures in force stay.
  Status finish_statistics();
  const std::optional<TableStatistics>& statistics() const { return total_; }
  const std::optional<Standardization>& standardization() const { return z_; }

  // The schema (once fixed) and the global figures (once computed) into a task's config.
  void fill(TrainConfig& config) const;

  // What --resume needs to go on with the same schema and figures: {"schema", "statistics",
  // "standardization"} as JSON; restore() takes it back (the schema must fit --schema if given).
  std::string to_json() const;
  Status restore(std::string_view json);

 private:
  Options opt_;
  std::optional<Schema> fixed_;
  std::map<std::string, Schema> reports_;   // derived mode, before fix()
  std::optional<TableStatistics> total_;    // the figures in force (finish_statistics)
  std::optional<TableStatistics> pending_;  // the statistics phase's sum so far
  std::optional<Standardization> z_;
};

}  // namespace federa
