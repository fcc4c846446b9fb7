// A client's CSV file as the built-in trainer sees it: encoded through the schema each task
// carries (so class i is the same label at every site, whatever this file happens to hold),
// with empty cells filled and features standardised by the federation's figures, and encoded
// again only when those change.
//
//   auto t = TabularData::open(*parse_csv_spec(spec), rows, n_train, {.impute = false});
//   Result<std::shared_ptr<const Dataset>> d = (*t)->dataset(config);  // rows [0, n_train) train
//   Result<TableStatistics> s = (*t)->statistics(config);              // raw, training rows
//
// The task's config carries the schema as JSON under kConfigSchema (common/schema.hpp) and the
// global means and stds under kConfigStandardization (common/statistics.hpp), in
// TrainConfig::extra. A task without a schema (an older
// coordinator) gets the file's own schema, labels numbered in its own sorted order, as before.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "client/trainer.hpp"
#include "common/csv.hpp"
#include "common/dataset.hpp"
#include "common/result.hpp"
#include "common/schema.hpp"
#include "common/statistics.hpp"
#include "common/train_config.hpp"

namespace federa {

class TabularData {
 public:
  struct Options {
    bool impute = false;      // --missing impute
    bool standardize = true;  // --standardize on|off
  };

  // Scans the file (structure, types, empty cells: FILE:LINE:COLUMN errors now, not at the
  // first task). `rows` are the data rows this client uses, training rows first: the first
  // `train_rows` of them train, the rest are held out for evaluation.
  static Result<std::unique_ptr<TabularData>> open(CsvSource source, std::vector<std::size_t> rows,
                                                   std::size_t train_rows, Options options);

  const CsvScan& scan() const { return scan_; }
  std::size_t train_rows() const { return train_rows_; }
  std::size_t test_rows() const { return rows_.size() - train_rows_; }
  // What this client tells the coordinator at join: column names and types, label values held
  // (classification), checked against `federation` when it is known.
  Result<Schema> local_schema(TaskType task, const Schema* federation = nullptr) const;

  // What this client answers a coordinator that runs a tabular federation, given what its
  // Welcome said (`federation_json`: {"task": ...} alone, or a whole schema once known): the
  // local schema as JSON, or, when the file does not fit the federation's schema, why, with
  // FILE:LINE:COLUMN (the file is then read through that schema once, as the first task will).
  struct Report {
    std::string schema_json;  // common/schema.hpp JSON of local_schema()
    std::string refusal;      // non-empty: the file does not fit
  };
  Report report(const std::string& federation_json) const;

  // This client's rows encoded (and standardised) for the task `config`.
  Result<std::shared_ptr<const Dataset>> dataset(const TrainConfig& config);
  // Per-feature statistics of the training rows, before standardisation (the statistics task).
  Result<TableStatistics> statistics(const TrainConfig& config);

 private:
  TabularData(CsvSource source, CsvScan scan, std::vector<std::size_t> rows, std::size_t train_rows,
              Options options);
  Result<Schema> schema_for(const TrainConfig& config) const;
  Status encode(const Schema& schema);
  // Encodes again when the config's schema differs from the last one.
  Status encode_for(const TrainConfig& config);

  CsvSource source_;
  CsvScan scan_;
  std::vector<std::size_t> rows_;
  std::size_t train_rows_ = 0;
  Options options_;
  // The encoded, not yet standardised rows of the last schema, and what was built from them.
  std::string schema_json_, scaling_json_;
  Schema schema_;
  std::shared_ptr<Dataset> raw_;
  std::shared_ptr<const Dataset> ready_;
};

// `trainer` (an external program reading its own copy of the file) with `table` as its
// Trainer::table(): the client reports the file's schema at join and answers statistics tasks
// from it; the table's training rows are the count announced in Hello.
std::unique_ptr<Trainer> with_table(std::unique_ptr<Trainer> trainer,
                                    std::unique_ptr<TabularData> table);

}  // namespace federa
