#include "client/tabular_data.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cmath>
#include <numeric>

#include "common/nn.hpp"

namespace federa {

Result<std::unique_ptr<TabularData>> TabularData::open(CsvSource source,
                                                       std::vector<std::size_t> rows,
                                                       std::size_t train_rows, Options options) {
  auto scan = scan_csv(source);
  if (!scan) return scan.error();
  if (Status s = check_table(*scan, options.impute); !s) return s.error();
  for (std::size_t r : rows) {
    if (r >= scan->rows)
      return make_error(ErrorCode::invalid_argument, source.path + ": row " + std::to_string(r) +
                                                         " is outside the file (" +
                                                         std::to_string(scan->rows) + " rows)");
  }
  if (train_rows > rows.size())
    return make_error(ErrorCode::invalid_argument, "more training rows than rows");
  return std::unique_ptr<TabularData>(
      new TabularData(std::move(source), std::move(*scan), std::move(rows), train_rows, options));
}

TabularData::TabularData(CsvSource source, CsvScan scan, std::vector<std::size_t> rows,
                         std::size_t train_rows, Options options)
    : source_(std::move(source)),
      scan_(std::move(scan)),
      rows_(std::move(rows)),
      train_rows_(train_rows),
      options_(options) {}

Result<Schema> TabularData::local_schema(TaskType task, const Schema* federation) const {
  LocalSchemaOptions o;
  o.task = task;
  o.impute = options_.impute;
  o.federation = federation;
  return federa::local_schema(scan_, o);
}

TabularData::Report TabularData::report(const std::string& federation_json) const {
  Report r;
  // A whole schema, or only the task ({"task": "regression"}) while the sites' reports are
  // still being merged.
  auto full = schema_from_json(federation_json);
  TaskType task = full ? full->task : TaskType::classification;
  if (!full) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(federation_json, ec);
    const auto* t = !ec && v.is_object() ? v.get_object().if_contains("task") : nullptr;
    if (t == nullptr || !t->is_string() ||
        (t->get_string() != "regression" && t->get_string() != "classification")) {
      r.refusal = "the coordinator's table description names no task";
      return r;
    }
    if (t->get_string() == "regression") task = TaskType::regression;
  }
  auto mine = local_schema(task, full ? &*full : nullptr);
  if (!mine) {
    r.refusal = mine.error().message;
    return r;
  }
  r.schema_json = schema_to_json(*mine);
  if (full) {
    // Reading the file through the schema names the first cell that does not fit (a report
    // changes nothing here: a task of an older connection may still be using this data).
    CsvLoadOptions o;
    o.impute = options_.impute;
    auto located = load_csv(source_, *full, o);
    if (!located) {
      r.refusal = located.error().message;
    } else if (Status s = check_compatible(*full, *mine); !s) {
      r.refusal = s.message();
    }
  }
  return r;
}

Result<Schema> TabularData::schema_for(const TrainConfig& config) const {
  if (auto it = config.extra.find(kConfigSchema); it != config.extra.end()) {
    auto s = schema_from_json(it->second);
    if (!s) return make_error(ErrorCode::invalid_argument, "the task's " + s.error().message);
    return s;
  }
  // No federation schema: this file's own, for the task the model spec implies.
  auto net = make_network(config.model);
  const TaskType task =
      net && (*net)->regression() ? TaskType::regression : TaskType::classification;
  return local_schema(task);
}

Status TabularData::encode(const Schema& schema) {
  CsvLoadOptions o;
  o.impute = options_.impute;
  auto all = load_csv(source_, schema, o);
  if (!all) return all.error();
  auto mine = select_rows(*all, rows_);
  if (!mine) return mine.error();
  raw_ = std::make_shared<Dataset>(std::move(*mine));
  schema_ = schema;
  return Status::success();
}

Status TabularData::encode_for(const TrainConfig& config) {
  auto schema = schema_for(config);
  if (!schema) return schema.error();
  std::string json = schema_to_json(*schema);
  if (raw_ && json == schema_json_) return Status::success();
  if (Status s = encode(*schema); !s) return s;
  schema_json_ = std::move(json);
  ready_.reset();
  if (config.extra.count(kConfigSchema) == 0)
    spdlog::warn(
        "{}: the task carries no federation schema: labels are numbered by this "
        "file's own values",
        source_.path);
  return Status::success();
}

Result<std::shared_ptr<const Dataset>> TabularData::dataset(const TrainConfig& config) {
  if (Status s = encode_for(config); !s) return s.error();
  const auto figures = config.extra.find(kConfigStandardization);
  const std::string scaling = figures == config.extra.end() ? "" : figures->second;
  if (ready_ && scaling == scaling_json_) return ready_;

  auto d = std::make_shared<Dataset>(*raw_);
  Result<Standardization> z = Standardization{};
  if (!scaling.empty()) {
    z = standardization_from_json(scaling, schema_);
    if (!z) return make_error(ErrorCode::invalid_argument, "the task's " + z.error().message);
  } else {
    if (options_.standardize)
      spdlog::warn("{}: the task carries no feature statistics: features are used unscaled",
                   source_.path);
    if (options_.impute) {
      // Without the federation's means, empty cells take this site's own.
      auto local = compute_statistics(*raw_, schema_);
      if (!local) return local.error();
      z = make_standardization(*local, schema_);
      if (!z) return z.error();
    }
  }
  if (z->mean.size() == schema_.features.size()) {
    const bool scale = options_.standardize && !scaling.empty();
    if (Status s = scale ? standardize(*d, schema_, *z) : impute_means(*d, schema_, *z); !s)
      return s.error();
  }
  ready_ = d;
  scaling_json_ = scaling;
  return ready_;
}

Result<TableStatistics> TabularData::statistics(const TrainConfig& config) {
  if (Status s = encode_for(config); !s) return s.error();
  std::vector<std::size_t> train(train_rows_);
  std::iota(train.begin(), train.end(), std::size_t{0});
  if (train.empty())
    return make_error(ErrorCode::failed_precondition, "no training rows for statistics");
  return compute_statistics(*raw_, schema_, train);
}

namespace {

class TableTrainer final : public Trainer {
 public:
  TableTrainer(std::unique_ptr<Trainer> inner, std::unique_ptr<TabularData> table)
      : inner_(std::move(inner)), table_(std::move(table)) {}
  Result<FitResult> fit(const Model& global, const TrainConfig& config) override {
    return inner_->fit(global, config);
  }
  Result<EvaluateResult> evaluate(const Model& model, const TrainConfig& config) override {
    return inner_->evaluate(model, config);
  }
  std::uint64_t num_train_examples() const override { return table_->train_rows(); }
  std::uint64_t num_test_examples() const override { return inner_->num_test_examples(); }
  bool can_evaluate() const override { return inner_->can_evaluate(); }
  void begin_task(std::uint64_t round, std::uint32_t attempt) override {
    inner_->begin_task(round, attempt);
  }
  TabularData* table() override { return table_.get(); }

 private:
  std::unique_ptr<Trainer> inner_;
  std::unique_ptr<TabularData> table_;
};

}  // namespace

std::unique_ptr<Trainer> with_table(std::unique_ptr<Trainer> trainer,
                                    std::unique_ptr<TabularData> table) {
  return std::make_unique<TableTrainer>(std::move(trainer), std::move(table));
}

}  // namespace federa
