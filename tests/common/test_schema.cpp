#include <doctest/doctest.h>

#include <string>

#include "common/schema.hpp"

using namespace federa;

namespace {

Schema schema_of(const std::string& json) {
  auto s = schema_from_json(json);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  return *s;
}

constexpr const char* kHospital = R"({
  "label": "diagnosis", "task": "classification", "classes": ["benign", "malignant"],
  "features": [
    {"name": "age", "type": "numeric"},
    {"name": "sex", "type": "categorical", "categories": ["F", "M"]},
    {"name": "area", "type": "numeric"}
  ]})";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("schema: JSON round trip, encoded width and offsets") {
  const Schema s = schema_of(kHospital);
  CHECK(s.label == "diagnosis");
  CHECK(s.task == TaskType::classification);
  CHECK(s.classes == std::vector<std::string>{"benign", "malignant"});
  REQUIRE(s.features.size() == 3);
  CHECK(s.features[1].type == ColumnType::categorical);
  // age 1, sex 2 categories + the reserved empty-cell slot, area 1.
  CHECK(s.input_width() == 5);
  CHECK(s.offsets() == std::vector<std::size_t>{0, 1, 4});
  CHECK(s.model_spec() == "softmax:5,2");
  CHECK(s.model_spec({16}) == "mlp:5,16,2");
  CHECK(schema_of(schema_to_json(s)) == s);

  const Schema r = schema_of(
      R"({"label": "y", "task": "regression", "features": [{"name": "x", "type": "numeric"}]})");
  CHECK(r.task == TaskType::regression);
  CHECK(r.model_spec() == "linreg:1");
  CHECK(r.model_spec({8, 4}) == "mlp:1,8,4,1");
  CHECK(schema_of(schema_to_json(r)) == r);

  // Numbers in a JSON list are taken as their text: [0, 1] works as a class list.
  CHECK(schema_of(R"({"label": "y", "task": "classification", "classes": [0, 1],
                      "features": [{"name": "x", "type": "numeric"}]})")
            .classes == std::vector<std::string>{"0", "1"});
}

TEST_CASE("schema: malformed files are refused with the reason") {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not valid JSON"},
      {"[]", "JSON object"},
      {R"({"task": "classification", "features": [{"name": "x", "type": "numeric"}]})", "label"},
      {R"({"label": "y", "task": "clustering", "features": [{"name": "x", "type": "numeric"}]})",
       "task"},
      {R"({"label": "y", "task": "regression"})", "features"},
      {R"({"label": "y", "task": "regression", "features": []})", "features"},
      {R"({"label": "y", "task": "regression", "features": [{"name": "x", "type": "text"}]})",
       "numeric"},
      {R"({"label": "y", "task": "regression", "features": [{"name": "x", "type": "categorical"}]})",
       "categories"},
      {R"({"label": "y", "task": "regression", "features": [{"name": "x", "type": "numeric"},
           {"name": "x", "type": "numeric"}]})",
       "twice"},
      {R"({"label": "y", "task": "regression", "features": [{"name": "y", "type": "numeric"}]})",
       "also listed"},
      {R"({"label": "y", "task": "classification", "classes": ["a", "a"],
           "features": [{"name": "x", "type": "numeric"}]})",
       "twice"},
      {R"({"label": "y", "task": "regression", "classes": ["a"],
           "features": [{"name": "x", "type": "numeric"}]})",
       "no \"classes\""},
  };
  for (const auto& c : cases) {
    const auto& json = c.first;
    const auto& why = c.second;
    CAPTURE(json);
    auto s = schema_from_json(json);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::invalid_argument);
    CHECK_MESSAGE(contains(s.error().message, why), s.error().message);
  }
  std::string many = R"({"label": "y", "task": "classification", "classes": [)";
  for (std::size_t i = 0; i <= kMaxClasses; ++i) many += (i ? "," : "") + std::to_string(i);
  many += R"(], "features": [{"name": "x", "type": "numeric"}]})";
  CHECK_FALSE(schema_from_json(many).ok());
  CHECK(read_schema_file("/nonexistent/schema.json").error().code == ErrorCode::not_found);
}

TEST_CASE("schema: a client's schema is compared with the federation's, naming each difference") {
  const Schema fed = schema_of(kHospital);
  Schema mine = fed;
  mine.classes = {"malignant"};  // a site holding one class fits
  CHECK(check_compatible(fed, mine).ok());
  std::swap(mine.features[0], mine.features[2]);  // any column order
  CHECK(check_compatible(fed, mine).ok());

  Schema missing = fed;
  missing.features.erase(missing.features.begin());
  auto s = check_compatible(fed, missing);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "2 features, the federation's schema has 3"));
  CHECK(contains(s.error().message, "column 'age' missing"));

  Schema extra = fed;
  extra.features.push_back({"zip", ColumnType::numeric, {}});
  s = check_compatible(fed, extra);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "4 features, the federation's schema has 3"));
  CHECK(contains(s.error().message, "column 'zip' is not in the federation's schema"));

  Schema typed = fed;
  typed.features[0] = {"age", ColumnType::categorical, {"old", "young"}};
  s = check_compatible(fed, typed);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "column 'age' is categorical here but numeric"));

  Schema category = fed;
  category.features[1].categories = {"F", "X"};
  s = check_compatible(fed, category);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "column 'sex' holds 'X', not among its categories ['F', 'M']"));

  Schema label = fed;
  label.classes = {"benign", "unknown"};
  s = check_compatible(fed, label);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "label value 'unknown' not in the federation's class list"));

  Schema other = fed;
  other.label = "outcome";
  CHECK(contains(check_compatible(fed, other).error().message, "the label column is 'outcome'"));
}

TEST_CASE("schema: merging takes the sorted union of classes and categories") {
  Schema a = schema_of(kHospital);
  Schema b = a;
  a.classes = {"malignant"};
  b.classes = {"benign"};
  a.features[1].categories = {"M"};
  b.features[1].categories = {"F", "M"};
  auto m = merge_schemas(a, b);
  REQUIRE(m.ok());
  CHECK(m->classes == std::vector<std::string>{"benign", "malignant"});
  CHECK(m->features[1].categories == std::vector<std::string>{"F", "M"});
  // Numeric labels sort by value, and "1.0" is the same class as "1".
  a.classes = {"10", "2"};
  b.classes = {"1", "2.0"};
  m = merge_schemas(a, b);
  REQUIRE(m.ok());
  CHECK(m->classes == std::vector<std::string>{"1", "2", "10"});
  // Different columns are not merged.
  b.features.pop_back();
  m = merge_schemas(a, b);
  REQUIRE_FALSE(m.ok());
  CHECK(contains(m.error().message, "column 'area' missing"));
}

TEST_CASE("schema: values are found exactly or as equal numbers") {
  const ValueIndex index({"1", "2", "yes"});
  CHECK(index.find("1") == 0);
  CHECK(index.find("1.0") == 0);
  CHECK(index.find("+2") == 1);
  CHECK(index.find("2e0") == 1);
  CHECK(index.find("yes") == 2);
  CHECK_FALSE(index.find("Yes").has_value());
  CHECK_FALSE(index.find("3").has_value());
  CHECK(canonical_order({"b", "a", "b"}) == std::vector<std::string>{"a", "b"});
  CHECK(canonical_order({"10", "9", "-1"}) == std::vector<std::string>{"-1", "9", "10"});
  CHECK_FALSE(parse_finite("nan").has_value());
  CHECK_FALSE(parse_finite("inf").has_value());
  CHECK_FALSE(parse_finite("1,5").has_value());
  CHECK(parse_finite("-1.5e3") == -1500.0);
}
