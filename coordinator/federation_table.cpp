#include "coordinator/federation_table.hpp"

#include <boost/json.hpp>

#include "common/nn.hpp"

namespace federa {

namespace json = boost::json;

FederationTable::FederationTable(Options options) : opt_(std::move(options)) {
  if (opt_.schema) {
    opt_.task = opt_.schema->task;
    fixed_ = opt_.schema;
  }
}

TaskType FederationTable::task_of_model(const std::string& model) {
  auto net = make_network(model);
  return net && (*net)->regression() ? TaskType::regression : TaskType::classification;
}

Status FederationTable::check_model(const Schema& schema, const std::string& model) {
  auto net = make_network(model);
  if (!net) return Status::success();  // a model from a file: its input is the user's business
  const std::size_t width = schema.input_width();
  const bool regression = schema.task == TaskType::regression;
  const std::size_t classes = schema.classes.size();
  const bool fits = (*net)->regression() == regression && (*net)->input_features() == width &&
                    (regression || static_cast<std::size_t>((*net)->num_classes()) == classes);
  if (fits) return Status::success();
  std::string has = std::to_string(width) + " inputs";
  if (!regression) has += " and " + std::to_string(classes) + " classes";
  return make_error(ErrorCode::failed_precondition,
                    "the federation's schema encodes " + has + " (" +
                        std::string(task_type_name(schema.task)) + "), but --model " + model +
                        " does not take that: use " + schema.model_spec() + " or " +
                        schema.model_spec({64}));
}

std::string FederationTable::schema_json() const {
  if (fixed_) return schema_to_json(*fixed_);
  // Not yet known: the task alone, so a site knows whether to report label values.
  return json::serialize(json::object{{"task", task_type_name(opt_.task)}});
}

Status FederationTable::check_rows(std::uint64_t train_rows) const {
  if (train_rows >= opt_.min_examples) return Status::success();
  return make_error(ErrorCode::failed_precondition,
                    std::to_string(train_rows) + " training rows; this federation needs at least " +
                        std::to_string(opt_.min_examples) +
                        " from each site (--min-examples), so that no update reveals a handful of "
                        "records");
}

Status FederationTable::admit(const std::string& client, std::string_view local_schema_json,
                              std::string_view refusal) {
  if (!refusal.empty())
    return make_error(ErrorCode::invalid_argument, std::string(refusal.substr(0, 4096)));
  auto local = schema_from_json(local_schema_json);
  if (!local)
    return make_error(ErrorCode::invalid_argument,
                      "the site's schema report is malformed: " + local.error().message);
  if (local->task != opt_.task)
    return make_error(ErrorCode::invalid_argument,
                      "the site read its data for " + std::string(task_type_name(local->task)) +
                          "; this federation does " + std::string(task_type_name(opt_.task)));
  if (fixed_) return check_compatible(*fixed_, *local);
  // Before the schema is fixed the columns must agree with every site admitted so far; values
  // (categories, labels) add to the union.
  for (const auto& [other, theirs] : reports_) {
    if (other == client) continue;
    if (auto merged = merge_schemas(theirs, *local); !merged) return merged.error();
    break;  // admitted sites agree with one another: one comparison is every comparison
  }
  reports_[client] = std::move(*local);
  return Status::success();
}

Result<Schema> FederationTable::fix(const std::vector<std::string>& clients) {
  if (!fixed_) {
    std::optional<Schema> merged;
    for (const auto& id : clients) {
      auto it = reports_.find(id);
      if (it == reports_.end()) continue;
      if (!merged) {
        merged = it->second;
        continue;
      }
      auto m = merge_schemas(*merged, it->second);
      if (!m)
        return make_error(ErrorCode::internal, "schema of '" + id + "': " + m.error().message);
      merged = std::move(*m);
    }
    if (!merged)
      return make_error(ErrorCode::failed_precondition, "no connected site reported its table");
    if (merged->task == TaskType::classification && merged->classes.size() < 2)
      return make_error(ErrorCode::failed_precondition,
                        "the sites hold " + std::to_string(merged->classes.size()) +
                            " label value between them; classification needs at least 2");
    if (Status s = check_model(*merged, opt_.model); !s) return s.error();
    fixed_ = std::move(merged);
    reports_.clear();
    return *fixed_;
  }
  if (Status s = check_model(*fixed_, opt_.model); !s) return s.error();
  return *fixed_;
}

void FederationTable::begin_statistics() { pending_.reset(); }

Status FederationTable::add_statistics(const std::string& client,
                                       std::string_view statistics_json) {
  if (!fixed_) return make_error(ErrorCode::failed_precondition, "statistics before the schema");
  auto part = statistics_from_json(statistics_json, *fixed_);
  if (!part) return part.error();
  if (Status s = check_statistics(*part, *fixed_); !s)
    return make_error(ErrorCode::invalid_argument, "from '" + client + "': " + s.message());
  if (!pending_) {
    pending_ = std::move(*part);
  } else if (Status s = ::federa::add_statistics(*pending_, *part); !s) {
    return s;
  }
  return Status::success();
}

Status FederationTable::set_secure_sum(std::span<const double> limb_sums, int limb_bits) {
  if (!fixed_) return make_error(ErrorCode::failed_precondition, "statistics before the schema");
  auto sum = decode_secure_sum(limb_sums, *fixed_, limb_bits);
  if (!sum) return sum.error();
  if (Status s = check_statistics(*sum, *fixed_); !s) return s;
  pending_ = std::move(*sum);
  return Status::success();
}

Status FederationTable::finish_statistics() {
  if (!fixed_ || !pending_ || !(pending_->rows > 0))
    return make_error(ErrorCode::failed_precondition, "no statistics were received");
  auto z = make_standardization(*pending_, *fixed_);
  if (!z) return z.error();
  z_ = std::move(*z);
  total_ = std::move(pending_);
  pending_.reset();
  return Status::success();
}

void FederationTable::fill(TrainConfig& config) const {
  if (fixed_) config.extra[kConfigSchema] = schema_to_json(*fixed_);
  if (fixed_ && z_) config.extra[kConfigStandardization] = standardization_to_json(*z_, *fixed_);
}

std::string FederationTable::to_json() const {
  json::object o;
  if (fixed_) o["schema"] = json::parse(schema_to_json(*fixed_));
  if (fixed_ && total_) o["statistics"] = json::parse(statistics_to_json(*total_, *fixed_));
  if (fixed_ && z_) o["standardization"] = json::parse(standardization_to_json(*z_, *fixed_));
  return json::serialize(o);
}

Status FederationTable::restore(std::string_view text) {
  boost::system::error_code ec;
  const json::value root = json::parse(text, ec);
  if (ec || !root.is_object())
    return make_error(ErrorCode::data_loss, "the committed table is not a JSON object");
  const auto& o = root.get_object();
  const auto* s = o.if_contains("schema");
  if (s == nullptr) return Status::success();  // committed before the schema was fixed
  auto schema = schema_from_json(json::serialize(*s));
  if (!schema) return make_error(ErrorCode::data_loss, "the committed " + schema.error().message);
  if (opt_.schema && !(*opt_.schema == *schema))
    return make_error(ErrorCode::failed_precondition,
                      "--schema differs from the schema this federation committed; a resumed "
                      "federation keeps its schema");
  if (schema->task != opt_.task)
    return make_error(ErrorCode::failed_precondition, "the committed schema's task differs");
  std::optional<TableStatistics> total;
  if (const auto* st = o.if_contains("statistics")) {
    auto t = statistics_from_json(json::serialize(*st), *schema);
    if (!t) return make_error(ErrorCode::data_loss, "the committed " + t.error().message);
    total = std::move(*t);
  }
  std::optional<Standardization> z;
  if (const auto* zs = o.if_contains("standardization")) {
    auto t = standardization_from_json(json::serialize(*zs), *schema);
    if (!t) return make_error(ErrorCode::data_loss, "the committed " + t.error().message);
    z = std::move(*t);
  }
  fixed_ = std::move(*schema);
  reports_.clear();
  total_ = std::move(total);
  pending_.reset();
  z_ = std::move(z);
  return Status::success();
}

}  // namespace federa
