// Agencies' CSV files as they come: RFC 4180 records (quoted fields, "" escapes, line breaks
// inside quotes), a UTF-8 byte-order mark, CRLF line ends, ',' or a named separator (with a
// decimal comma under ';'), and errors that say FILE:LINE:COLUMN and why. COLUMN counts fields
// from 1, as a spreadsheet does, and the message names the column.
//
//   Result<CsvSource> src = parse_csv_spec("csv:site1.csv:label=diagnosis");
//   Result<CsvScan> scan = scan_csv(*src);                        // one pass, nothing kept
//   Result<Schema> mine = local_schema(*scan, {TaskType::classification});
//   Result<Dataset> d = load_csv(*src, federation_schema, {});     // encoded through the schema
//
// Loading through the federation's schema (never the file's own values) is what makes a label
// mean the same class at every site: a file holding only "benign" rows still maps them to the
// federation's index of "benign".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/dataset.hpp"
#include "common/result.hpp"
#include "common/schema.hpp"

namespace federa {

struct CsvSource {
  std::string path;
  std::string label;  // the label column's name
  char separator = ',';
};

// "csv:FILE:label=COLUMN[:sep=;|sep=tab|sep=,]".
Result<CsvSource> parse_csv_spec(std::string_view spec);

// Empty cells and the usual spellings of "no value" ("NA", "N/A", "NaN", "nan", "null", "NULL",
// "?") are missing; a categorical column whose schema lists one of them takes it as a category.
bool is_missing_marker(std::string_view cell);

struct CellRef {
  std::size_t line = 0;    // 1-based physical line where the record starts
  std::size_t column = 0;  // 1-based field position; 0: none recorded
};

// What one pass over a file learns about a column: no values are kept beyond the distinct ones
// of a column with at most kMaxCategories of them.
struct ColumnScan {
  std::string name;
  std::size_t numbers = 0;  // non-missing cells that are finite numbers
  std::size_t texts = 0;    // non-missing cells that are not
  std::size_t missing = 0;
  std::vector<std::string> values;  // distinct non-missing values while there are few
  bool too_many_values = false;     // more than kMaxCategories distinct values
  CellRef first_text, first_missing;
  std::string first_text_value, first_missing_value;
};

struct CsvScan {
  CsvSource source;
  std::vector<ColumnScan> columns;  // in file order, the label's included
  std::size_t label_index = 0;
  std::size_t rows = 0;
};

// Reads the file once: header, record structure, and per-column types and values. Fails on a
// structural error (missing label column, wrong field count, unterminated quote, a one-column
// header containing ';' or a tab, UTF-16, a line over 1 MiB) with FILE:LINE[:COLUMN].
Result<CsvScan> scan_csv(const CsvSource& source);

struct LocalSchemaOptions {
  TaskType task = TaskType::classification;
  bool impute = false;                 // --missing impute: empty cells are not errors
  const Schema* federation = nullptr;  // when known: its column types win over inference
};

// The schema of this file alone: its columns' names and types (numeric when every value is a
// number; categorical with the values held when text dominates), the label values it holds.
// Refuses, with FILE:LINE:COLUMN, a numeric column holding text, an empty cell (unless
// impute), a row without a label, a regression label that is not a number.
Result<Schema> local_schema(const CsvScan& scan, const LocalSchemaOptions& options);

// What any federation would refuse in this file, whatever its task and schema: a column that
// holds numbers and (less often) text, an empty cell (unless impute), a row without a label.
// Lets a client say so at startup, with FILE:LINE:COLUMN, before it joins.
Status check_table(const CsvScan& scan, bool impute);

struct CsvLoadOptions {
  bool impute = false;  // empty numeric cells become NaN (filled by standardize()), empty
                        // categorical cells the column's reserved slot
};

// The file encoded through `schema`: numeric columns as numbers, categorical ones one-hot in
// the schema's category order (plus the reserved slot), columns in the schema's order whatever
// the file's, labels as the schema's class indices (classification: num_classes = classes) or
// targets (regression: num_classes = 0). Any value outside the schema is refused with
// FILE:LINE:COLUMN: an unknown label, a category not listed, text in a numeric column.
Result<Dataset> load_csv(const CsvSource& source, const Schema& schema,
                         const CsvLoadOptions& options = {});

}  // namespace federa
