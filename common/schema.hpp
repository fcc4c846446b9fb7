// The federation's table: which columns every client's CSV file must have, how each one is
// encoded for the model, and the label's vocabulary. One Schema is the contract all sites map
// their files through, so class 1 or one-hot position 7 means the same thing at every site.
//
//   Result<Schema> fed = read_schema_file("schema.json");         // federa-coordinator --schema
//   Result<CsvScan> scan = scan_csv({"site1.csv", "diagnosis"});  // common/csv.hpp
//   Result<Schema> mine = local_schema(*scan, fed->task);         // names, types, values held
//   if (Status s = check_compatible(*fed, *mine); !s) ...         // "column 'age' missing"
//   std::string wire = schema_to_json(*fed);                      // travels with every task
//
// A local schema (what one client's file holds) is a Schema too: its `classes` are the label
// values that file holds and its categories the values it holds, sorted, never counted. Merging
// the local schemas of every client (the sorted union) gives the federation's schema when the
// coordinator was given none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"

namespace federa {

enum class ColumnType { numeric, categorical };
enum class TaskType { classification, regression };

std::string_view column_type_name(ColumnType t);
std::string_view task_type_name(TaskType t);

// Where a task's config (TrainConfig::extra) carries the federation's schema, as JSON.
inline constexpr const char* kConfigSchema = "schema";

// Limits a schema is checked against (before anything is allocated from one).
inline constexpr std::size_t kMaxSchemaColumns = 4096;
inline constexpr std::size_t kMaxCategories = 1024;  // per categorical column
inline constexpr std::size_t kMaxClasses = 1024;
inline constexpr std::size_t kMaxValueBytes = 256;  // one column name, category or class

struct Column {
  std::string name;
  ColumnType type = ColumnType::numeric;
  // Categorical: the values, in one-hot order. Every categorical column also has one reserved
  // slot after them for an empty cell (filled under --missing impute), so the model's input
  // width never depends on a client's flags.
  std::vector<std::string> categories;
  bool operator==(const Column&) const = default;
};

struct Schema {
  std::vector<Column> features;  // the model's input order
  std::string label;
  TaskType task = TaskType::classification;
  std::vector<std::string> classes;  // classification: class i is classes[i]

  // Encoded width of one row: 1 per numeric column, categories + 1 per categorical one.
  std::size_t input_width() const;
  // Where each feature column's encoded values start (features.size() entries).
  std::vector<std::size_t> offsets() const;
  const Column* find(std::string_view name) const;
  // The model spec that fits this schema: "softmax:W,C" / "linreg:W" (hidden sizes give an mlp).
  std::string model_spec(const std::vector<std::size_t>& hidden = {}) const;
  bool operator==(const Schema&) const = default;
};

// Finds a value in a category or class list: an exact match first, then, when the value is a
// number, a number-equal entry ("1.0" finds "1"), so sites that export numbers differently agree.
class ValueIndex {
 public:
  ValueIndex() = default;
  explicit ValueIndex(const std::vector<std::string>& values);
  std::optional<std::int32_t> find(std::string_view value) const;

 private:
  std::unordered_map<std::string, std::int32_t> exact_;
  std::map<double, std::int32_t> numeric_;
};

// A finite number in C locale form (optional sign, digits, '.', exponent); nothing else.
std::optional<double> parse_finite(std::string_view s);
// Sorted and without duplicates: by numeric value when every value is a number, else by bytes.
// This is the order of a derived class list, so "2" comes before "10".
std::vector<std::string> canonical_order(std::vector<std::string> values);

// JSON: {"label": "y", "task": "classification", "classes": ["a", "b"],
//        "features": [{"name": "age", "type": "numeric"},
//                     {"name": "sex", "type": "categorical", "categories": ["F", "M"]}]}
// Reading checks the limits above, duplicate names, and a label that is also a feature.
Result<Schema> schema_from_json(std::string_view text);
Result<Schema> read_schema_file(const std::string& path);
std::string schema_to_json(const Schema& schema);

// Whether a client's local schema fits the federation's: the same feature columns (in any
// order) with the same types, categories and label values within the federation's lists. The
// error names every difference: "27 features, the federation's schema has 30: column 'age'
// missing, ...". A regression federation takes no class list from anyone.
Status check_compatible(const Schema& federation, const Schema& local);

// The union of two schemas with the same columns (types must agree): categories and classes
// become the canonical order of both sets. What the coordinator derives at join.
Result<Schema> merge_schemas(const Schema& a, const Schema& b);

}  // namespace federa
