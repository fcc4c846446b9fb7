#include "common/schema.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace federa {

namespace json = boost::json;

std::string_view column_type_name(ColumnType t) {
  return t == ColumnType::numeric ? "numeric" : "categorical";
}

std::string_view task_type_name(TaskType t) {
  return t == TaskType::classification ? "classification" : "regression";
}

std::size_t Schema::input_width() const {
  std::size_t w = 0;
  for (const auto& c : features) w += c.type == ColumnType::numeric ? 1 : c.categories.size() + 1;
  return w;
}

std::vector<std::size_t> Schema::offsets() const {
  std::vector<std::size_t> out;
  out.reserve(features.size());
  std::size_t w = 0;
  for (const auto& c : features) {
    out.push_back(w);
    w += c.type == ColumnType::numeric ? 1 : c.categories.size() + 1;
  }
  return out;
}

const Column* Schema::find(std::string_view name) const {
  for (const auto& c : features)
    if (c.name == name) return &c;
  return nullptr;
}

std::string Schema::model_spec(const std::vector<std::size_t>& hidden) const {
  const bool regression = task == TaskType::regression;
  std::string spec = hidden.empty() ? (regression ? "linreg:" : "softmax:") : "mlp:";
  spec += std::to_string(input_width());
  for (std::size_t h : hidden) {
    spec += ',';
    spec += std::to_string(h);
  }
  if (!regression || !hidden.empty()) {
    spec += ',';
    spec += std::to_string(regression ? 1 : classes.size());
  }
  return spec;
}

std::optional<double> parse_finite(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.front() == '+') return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::vector<std::string> canonical_order(std::vector<std::string> values) {
  const bool numeric = std::all_of(values.begin(), values.end(), [](const std::string& v) {
    return parse_finite(v).has_value();
  });
  if (numeric) {
    std::stable_sort(values.begin(), values.end(), [](const std::string& a, const std::string& b) {
      return *parse_finite(a) < *parse_finite(b);
    });
    // Number-equal spellings ("1", "1.0") are one value; the first spelling stays.
    values.erase(std::unique(values.begin(), values.end(),
                             [](const std::string& a, const std::string& b) {
                               return *parse_finite(a) == *parse_finite(b);
                             }),
                 values.end());
  } else {
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
  }
  return values;
}

ValueIndex::ValueIndex(const std::vector<std::string>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto k = static_cast<std::int32_t>(i);
    exact_.emplace(values[i], k);
    if (auto v = parse_finite(values[i])) numeric_.emplace(*v, k);
  }
}

std::optional<std::int32_t> ValueIndex::find(std::string_view value) const {
  if (auto it = exact_.find(std::string(value)); it != exact_.end()) return it->second;
  if (auto v = parse_finite(value)) {
    if (auto it = numeric_.find(*v); it != numeric_.end()) return it->second;
  }
  return std::nullopt;
}

namespace {

std::string quoted(std::string_view s) {
  std::string q(1, '\'');
  q += s;
  q += '\'';
  return q;
}

// At most `n` values, then how many more: error messages stay short for a 1,000-value list.
std::string list_values(const std::vector<std::string>& v, std::size_t n = 8) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + quoted(v[i]);
  if (v.size() > n) s += ", ... " + std::to_string(v.size() - n) + " more";
  return s + "]";
}

// 'x' for one value, ['x', 'y'] for more.
std::string one_or_list(const std::vector<std::string>& v, std::size_t n) {
  return v.size() == 1 ? quoted(v[0]) : list_values(v, n);
}

Result<std::string> json_name(const json::value& v, const std::string& what) {
  if (!v.is_string()) return make_error(ErrorCode::invalid_argument, what + " must be a string");
  const auto& s = v.get_string();
  if (s.empty()) return make_error(ErrorCode::invalid_argument, what + " is empty");
  if (s.size() > kMaxValueBytes)
    return make_error(ErrorCode::invalid_argument,
                      what + " is longer than " + std::to_string(kMaxValueBytes) + " bytes");
  return std::string(s);
}

// A list of distinct strings (numbers are taken as their JSON text, so [0, 1] works as classes).
Result<std::vector<std::string>> json_values(const json::value& v, const std::string& what,
                                             std::size_t limit) {
  if (!v.is_array()) return make_error(ErrorCode::invalid_argument, what + " must be an array");
  const auto& a = v.get_array();
  if (a.size() > limit)
    return make_error(ErrorCode::invalid_argument, what + " has " + std::to_string(a.size()) +
                                                       " values, at most " + std::to_string(limit) +
                                                       " are allowed");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& e : a) {
    std::string s;
    if (e.is_int64() || e.is_uint64() || e.is_double()) {
      s = json::serialize(e);
    } else {
      auto n = json_name(e, what + " value");
      if (!n) return n.error();
      s = std::move(*n);
    }
    if (!seen.insert(s).second)
      return make_error(ErrorCode::invalid_argument, what + " lists " + quoted(s) + " twice");
    out.push_back(std::move(s));
  }
  return out;
}

Result<Column> column_from_json(const json::value& v, std::size_t i) {
  const std::string where = "features[" + std::to_string(i) + "]";
  if (!v.is_object()) return make_error(ErrorCode::invalid_argument, where + " must be an object");
  const auto& o = v.get_object();
  Column c;
  const auto* name = o.if_contains("name");
  if (name == nullptr) return make_error(ErrorCode::invalid_argument, where + " has no \"name\"");
  auto n = json_name(*name, where + ".name");
  if (!n) return n.error();
  c.name = std::move(*n);
  const auto* type = o.if_contains("type");
  const std::string t = type != nullptr && type->is_string() ? std::string(type->get_string()) : "";
  if (t == "categorical") {
    c.type = ColumnType::categorical;
    const auto* cats = o.if_contains("categories");
    if (cats == nullptr)
      return make_error(ErrorCode::invalid_argument,
                        "column " + quoted(c.name) + " is categorical but lists no \"categories\"");
    auto values = json_values(*cats, "column " + quoted(c.name) + "'s categories", kMaxCategories);
    if (!values) return values.error();
    if (values->empty())
      return make_error(ErrorCode::invalid_argument,
                        "column " + quoted(c.name) + " is categorical with no categories");
    c.categories = std::move(*values);
  } else if (t != "numeric") {
    return make_error(
        ErrorCode::invalid_argument,
        "column " + quoted(c.name) + ": \"type\" must be \"numeric\" or \"categorical\"");
  }
  return c;
}

Result<Schema> schema_from_value(const json::value& root) {
  if (!root.is_object()) return make_error(ErrorCode::invalid_argument, "must be a JSON object");
  const auto& o = root.get_object();
  Schema s;
  const auto* label = o.if_contains("label");
  if (label == nullptr) return make_error(ErrorCode::invalid_argument, "has no \"label\" column");
  auto l = json_name(*label, "\"label\"");
  if (!l) return l.error();
  s.label = std::move(*l);
  const auto* task = o.if_contains("task");
  const std::string t = task != nullptr && task->is_string() ? std::string(task->get_string()) : "";
  if (t == "regression") {
    s.task = TaskType::regression;
  } else if (t != "classification") {
    return make_error(ErrorCode::invalid_argument,
                      "\"task\" must be \"classification\" or \"regression\"");
  }
  if (const auto* classes = o.if_contains("classes")) {
    auto values = json_values(*classes, "\"classes\"", kMaxClasses);
    if (!values) return values.error();
    s.classes = std::move(*values);
  }
  if (s.task == TaskType::regression && !s.classes.empty())
    return make_error(ErrorCode::invalid_argument, "a regression schema has no \"classes\"");
  const auto* features = o.if_contains("features");
  if (features == nullptr || !features->is_array())
    return make_error(ErrorCode::invalid_argument, "has no \"features\" array");
  const auto& a = features->get_array();
  if (a.empty() || a.size() > kMaxSchemaColumns)
    return make_error(
        ErrorCode::invalid_argument,
        "\"features\" must list 1 to " + std::to_string(kMaxSchemaColumns) + " columns");
  std::set<std::string> names;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto c = column_from_json(a[i], i);
    if (!c) return c.error();
    if (!names.insert(c->name).second)
      return make_error(ErrorCode::invalid_argument,
                        "column " + quoted(c->name) + " is listed twice");
    if (c->name == s.label)
      return make_error(ErrorCode::invalid_argument,
                        "the label " + quoted(s.label) + " is also listed as a feature");
    s.features.push_back(std::move(*c));
  }
  return s;
}

}  // namespace

Result<Schema> schema_from_json(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return make_error(ErrorCode::invalid_argument, "schema: not valid JSON: " + ec.message());
  auto s = schema_from_value(root);
  if (!s) return make_error(ErrorCode::invalid_argument, "schema: " + s.error().message);
  return s;
}

Result<Schema> read_schema_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, path + ": cannot open: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (std::size_t{64} << 20))
    return make_error(ErrorCode::invalid_argument, path + ": larger than 64 MiB");
  auto s = schema_from_json(ss.str());
  if (!s) return make_error(ErrorCode::invalid_argument, path + ": " + s.error().message);
  return s;
}

std::string schema_to_json(const Schema& schema) {
  json::object o;
  o["label"] = schema.label;
  o["task"] = task_type_name(schema.task);
  if (schema.task == TaskType::classification) {
    json::array classes;
    for (const auto& c : schema.classes) classes.emplace_back(c);
    o["classes"] = std::move(classes);
  }
  json::array features;
  for (const auto& c : schema.features) {
    json::object f;
    f["name"] = c.name;
    f["type"] = column_type_name(c.type);
    if (c.type == ColumnType::categorical) {
      json::array cats;
      for (const auto& v : c.categories) cats.emplace_back(v);
      f["categories"] = std::move(cats);
    }
    features.emplace_back(std::move(f));
  }
  o["features"] = std::move(features);
  return json::serialize(o);
}

namespace {

// Values of `local` not in `fed`'s list (by ValueIndex, so "1.0" matches "1").
std::vector<std::string> outside(const std::vector<std::string>& fed,
                                 const std::vector<std::string>& local) {
  const ValueIndex index(fed);
  std::vector<std::string> out;
  for (const auto& v : local)
    if (!index.find(v)) out.push_back(v);
  return out;
}

void column_differences(const Column& f, const Column& l, bool values,
                        std::vector<std::string>& out) {
  if (f.type != l.type) {
    out.push_back(
        "column " + quoted(f.name) + " is " + std::string(column_type_name(l.type)) + " here but " +
        std::string(column_type_name(f.type)) +
        (l.type == ColumnType::categorical
             ? " in the federation's schema (it holds text: " + list_values(l.categories, 3) + ")"
             : " in the federation's schema"));
    return;
  }
  if (values && f.type == ColumnType::categorical) {
    const auto extra = outside(f.categories, l.categories);
    if (!extra.empty())
      out.push_back("column " + quoted(f.name) + " holds " + one_or_list(extra, 4) +
                    ", not among its categories " + list_values(f.categories));
  }
}

// Every difference between the schemas; with `values`, also categories and label values of
// `local` outside `federation`'s lists (merging takes the union of those instead).
Status differences(const Schema& federation, const Schema& local, bool values) {
  std::vector<std::string> diffs;
  if (federation.label != local.label)
    diffs.push_back("the label column is " + quoted(local.label) + " here but " +
                    quoted(federation.label) + " in the federation's schema");
  if (federation.task != local.task)
    diffs.push_back("the data was read for " + std::string(task_type_name(local.task)) +
                    " but the federation does " + std::string(task_type_name(federation.task)));
  for (const auto& f : federation.features) {
    const Column* l = local.find(f.name);
    if (l == nullptr) {
      diffs.push_back("column " + quoted(f.name) + " missing");
      continue;
    }
    column_differences(f, *l, values, diffs);
  }
  for (const auto& l : local.features)
    if (federation.find(l.name) == nullptr)
      diffs.push_back("column " + quoted(l.name) + " is not in the federation's schema");
  if (values && federation.task == TaskType::classification) {
    const auto extra = outside(federation.classes, local.classes);
    if (!extra.empty())
      diffs.push_back("label value" + std::string(extra.size() > 1 ? "s " : " ") +
                      one_or_list(extra, 4) + " not in the federation's class list " +
                      list_values(federation.classes));
  }
  if (diffs.empty()) return Status::success();
  std::string msg;
  if (local.features.size() != federation.features.size())
    msg = std::to_string(local.features.size()) + " features, the federation's schema has " +
          std::to_string(federation.features.size()) + ": ";
  for (std::size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
  return make_error(ErrorCode::invalid_argument, msg);
}

std::vector<std::string> union_of(const std::vector<std::string>& a,
                                  const std::vector<std::string>& b) {
  auto all = a;
  all.insert(all.end(), b.begin(), b.end());
  return canonical_order(std::move(all));
}

}  // namespace

Status check_compatible(const Schema& federation, const Schema& local) {
  return differences(federation, local, true);
}

Result<Schema> merge_schemas(const Schema& a, const Schema& b) {
  if (Status s = differences(a, b, false); !s) return s.error();
  Schema out = a;
  for (auto& f : out.features) {
    if (f.type != ColumnType::categorical) continue;
    f.categories = union_of(f.categories, b.find(f.name)->categories);
    if (f.categories.size() > kMaxCategories)
      return make_error(ErrorCode::invalid_argument,
                        "column " + quoted(f.name) + " would have more than " +
                            std::to_string(kMaxCategories) + " categories");
  }
  out.classes = union_of(a.classes, b.classes);
  if (out.classes.size() > kMaxClasses)
    return make_error(ErrorCode::invalid_argument,
                      "the label would have more than " + std::to_string(kMaxClasses) + " classes");
  return out;
}

}  // namespace federa
