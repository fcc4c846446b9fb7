#include "common/csv.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace federa {

namespace {

constexpr std::size_t kMaxRecordBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxEncodedValues = std::size_t{1} << 30;  // 4 GiB of floats

std::string where(const std::string& path, std::size_t line, std::size_t column = 0) {
  std::string s = path + ":" + std::to_string(line);
  if (column > 0) s += ":" + std::to_string(column);
  return s + ": ";
}

Error at(const std::string& path, std::size_t line, std::size_t column, const std::string& why) {
  return make_error(ErrorCode::invalid_argument, where(path, line, column) + why);
}

std::string quoted(std::string_view s) {
  std::string q(1, '\'');
  q += s;
  q += '\'';
  return q;
}

// RFC 4180 records from a buffered stream. Unquoted fields are trimmed of spaces (and tabs,
// unless tab separates); a quoted field keeps what is inside its quotes, "" being one quote.
class RecordReader {
 public:
  RecordReader(std::istream& in, std::string path, char sep)
      : in_(in), path_(std::move(path)), sep_(sep), buf_(1 << 16) {}

  // The next non-blank record into `fields`; false at the end of the file.
  Result<bool> next(std::vector<std::string>& fields) {
    for (;;) {
      fields.clear();
      record_line_ = line_;
      std::size_t bytes = 0;
      bool any = false;  // a separator, a quote or a non-blank byte
      int c = peek();
      if (c == EOF) return false;
      for (;;) {
        std::string field;
        bool quoted = false;
        skip_blanks();
        if (peek() == '"') {
          quoted = any = true;
          const std::size_t open_line = line_;
          get();
          for (;;) {
            c = get();
            if (c == EOF)
              return at(path_, open_line, fields.size() + 1,
                        "unterminated quoted field (the quote opened here is never closed)");
            if (c == '"') {
              if (peek() != '"') break;
              get();
            }
            field.push_back(static_cast<char>(c));
            if (++bytes > kMaxRecordBytes) return too_long();
          }
          skip_blanks();
        }
        for (;;) {
          c = peek();
          if (c == EOF || c == sep_ || c == '\n' || c == '\r') break;
          if (quoted) return at(path_, line_, fields.size() + 1, "text after a closing quote");
          if (c == 0) return at(path_, line_, fields.size() + 1, "a NUL byte: not a text file");
          field.push_back(static_cast<char>(get()));
          any = true;
          if (++bytes > kMaxRecordBytes) return too_long();
        }
        if (!quoted) {
          while (!field.empty() && (field.back() == ' ' || (field.back() == '\t' && sep_ != '\t')))
            field.pop_back();
        }
        fields.push_back(std::move(field));
        c = get();
        if (c == sep_) {
          any = true;
          continue;
        }
        if (c == '\r' && peek() == '\n') get();
        break;  // end of line or of file
      }
      if (any) return true;  // else a blank line: read on
    }
  }

  std::size_t line() const { return record_line_; }
  // Called once before the first record: a UTF-8 BOM is skipped, UTF-16 is refused.
  Status skip_bom() {
    const int a = peek();
    if (a == 0xEF) {
      get();
      if (get() != 0xBB || get() != 0xBF) return at(path_, 1, 0, "not UTF-8 text");
    } else if (a == 0xFF || a == 0xFE) {
      return at(path_, 1, 0, "a UTF-16 file: save it as UTF-8 (CSV UTF-8 in a spreadsheet)");
    }
    return Status::success();
  }

 private:
  int peek() {
    if (pos_ == len_ && !fill()) return EOF;
    return static_cast<unsigned char>(buf_[pos_]);
  }
  int get() {
    const int c = peek();
    if (c == EOF) return EOF;
    ++pos_;
    // A lone CR (old Mac files) ends a line too; CRLF counts once, at its LF.
    if (c == '\n' || (c == '\r' && peek() != '\n')) ++line_;
    return c;
  }
  bool fill() {
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    len_ = static_cast<std::size_t>(in_.gcount());
    pos_ = 0;
    return len_ > 0;
  }
  void skip_blanks() {
    for (int c = peek(); c == ' ' || (c == '\t' && sep_ != '\t'); c = peek()) get();
  }
  Error too_long() const {
    return at(path_, record_line_, 0, "a record longer than 1 MiB: is this a CSV file?");
  }

  std::istream& in_;
  std::string path_;
  char sep_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, len_ = 0;
  std::size_t line_ = 1, record_line_ = 1;
};

// An open file positioned after its header, and the header's names.
struct Opened {
  std::unique_ptr<std::ifstream> file;
  std::unique_ptr<RecordReader> reader;
  std::vector<std::string> header;
  std::size_t label_index = 0;
};

std::string list_columns(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < 12; ++i) s += (i ? ", " : "") + quoted(names[i]);
  if (names.size() > 12) s += ", ...";
  return s;
}

Status check_header(const CsvSource& src, const std::vector<std::string>& header) {
  if (header.size() == 1) {
    for (const auto& [ch, name, spec] :
         {std::tuple{';', "';'", "sep=;"}, std::tuple{'\t', "a tab", "sep=tab"}}) {
      if (ch != src.separator && header[0].find(ch) != std::string::npos)
        return at(src.path, 1, 1,
                  std::string("the header is one column that contains ") + name +
                      ": a file separated by " + name + "? Name the separator: csv:" + src.path +
                      ":label=" + src.label + ":" + spec);
    }
  }
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i].empty())
      return at(src.path, 1, i + 1,
                "column " + std::to_string(i + 1) + " has no name in the header");
    if (header[i].size() > kMaxValueBytes)
      return at(src.path, 1, i + 1, "a column name longer than 256 bytes");
    if (auto [it, fresh] = seen.emplace(header[i], i); !fresh)
      return at(src.path, 1, i + 1,
                "column " + quoted(header[i]) + " appears twice (also column " +
                    std::to_string(it->second + 1) + ")");
  }
  return Status::success();
}

Result<Opened> open_csv(const CsvSource& src) {
  Opened o;
  o.file = std::make_unique<std::ifstream>(src.path, std::ios::binary);
  if (!*o.file)
    return make_error(ErrorCode::not_found, src.path + ": cannot open: " + std::strerror(errno));
  o.reader = std::make_unique<RecordReader>(*o.file, src.path, src.separator);
  if (Status s = o.reader->skip_bom(); !s) return s.error();
  auto got = o.reader->next(o.header);
  if (!got) return got.error();
  if (!*got)
    return make_error(ErrorCode::invalid_argument,
                      src.path + ": empty file, expected a header row");
  if (Status s = check_header(src, o.header); !s) return s.error();
  const auto it = std::find(o.header.begin(), o.header.end(), src.label);
  if (it == o.header.end())
    return at(src.path, o.reader->line(), 0,
              "no column named " + quoted(src.label) + " in the header (it has " +
                  list_columns(o.header) + ")");
  o.label_index = static_cast<std::size_t>(it - o.header.begin());
  if (o.header.size() < 2)
    return at(src.path, o.reader->line(), 0, "no feature column besides the label");
  return o;
}

// Numbers in C form; under a ';' or tab separator also with a decimal comma ("1,5").
std::optional<double> parse_cell(std::string_view cell, char sep) {
  if (auto v = parse_finite(cell)) return v;
  if (sep == ',') return std::nullopt;
  const auto comma = cell.find(',');
  if (comma == std::string_view::npos || cell.find(',', comma + 1) != std::string_view::npos ||
      cell.find('.') != std::string_view::npos)
    return std::nullopt;
  std::string dotted(cell);
  dotted[comma] = '.';
  return parse_finite(dotted);
}

Status check_fields(const CsvSource& src, std::size_t line, std::size_t have, std::size_t want) {
  if (have == want) return Status::success();
  return at(src.path, line, 0,
            "expected " + std::to_string(want) + " fields, found " + std::to_string(have) +
                (have == 1 && src.separator == ',' ? " (is this line separated by ';'?)" : ""));
}

}  // namespace

bool is_missing_marker(std::string_view cell) {
  for (const char* m : {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"})
    if (cell == m) return true;
  return false;
}

Result<CsvSource> parse_csv_spec(std::string_view spec) {
  const auto bad = [&] {
    return make_error(
        ErrorCode::invalid_argument,
        "dataset spec '" + std::string(spec) + "': expected csv:FILE:label=COLUMN[:sep=;|sep=tab]");
  };
  if (!spec.starts_with("csv:")) return bad();
  std::string_view rest = spec.substr(4);
  CsvSource src;
  if (const auto sep = rest.rfind(":sep=");
      sep != std::string_view::npos && sep > rest.rfind(":label=")) {
    const std::string_view s = rest.substr(sep + 5);
    if (s == ";")
      src.separator = ';';
    else if (s == "tab")
      src.separator = '\t';
    else if (s == ",")
      src.separator = ',';
    else
      return bad();
    rest = rest.substr(0, sep);
  }
  const auto pos = rest.rfind(":label=");
  if (pos == std::string_view::npos || pos == 0 || pos + 7 == rest.size()) return bad();
  src.path = std::string(rest.substr(0, pos));
  src.label = std::string(rest.substr(pos + 7));
  return src;
}

Result<CsvScan> scan_csv(const CsvSource& source) {
  auto opened = open_csv(source);
  if (!opened) return opened.error();
  CsvScan scan;
  scan.source = source;
  scan.label_index = opened->label_index;
  const std::size_t n = opened->header.size();
  scan.columns.resize(n);
  std::vector<std::unordered_set<std::string>> distinct(n);
  for (std::size_t c = 0; c < n; ++c) scan.columns[c].name = opened->header[c];
  std::vector<std::string> fields;
  for (;;) {
    auto got = opened->reader->next(fields);
    if (!got) return got.error();
    if (!*got) break;
    const std::size_t line = opened->reader->line();
    if (Status s = check_fields(source, line, fields.size(), n); !s) return s.error();
    ++scan.rows;
    for (std::size_t c = 0; c < n; ++c) {
      ColumnScan& col = scan.columns[c];
      const std::string& cell = fields[c];
      if (is_missing_marker(cell)) {
        if (col.missing++ == 0) {
          col.first_missing = {line, c + 1};
          col.first_missing_value = cell;
        }
      } else if (parse_cell(cell, source.separator)) {
        ++col.numbers;
      } else if (col.texts++ == 0) {
        col.first_text = {line, c + 1};
        col.first_text_value = cell;
      }
      if (!col.too_many_values && !is_missing_marker(cell) && distinct[c].insert(cell).second &&
          distinct[c].size() > kMaxCategories) {
        col.too_many_values = true;
        distinct[c] = {};
      }
    }
  }
  if (scan.rows == 0)
    return make_error(ErrorCode::invalid_argument, source.path + ": no data rows after the header");
  for (std::size_t c = 0; c < n; ++c)
    scan.columns[c].values.assign(distinct[c].begin(), distinct[c].end());
  return scan;
}

namespace {

Error at(const CsvScan& scan, CellRef ref, const std::string& why) {
  return at(scan.source.path, ref.line, ref.column, why);
}

Result<Column> feature_schema(const CsvScan& scan, const ColumnScan& col,
                              const LocalSchemaOptions& o) {
  const std::string name = "column " + quoted(col.name);
  if (col.missing > 0 && !o.impute)
    return at(scan, col.first_missing,
              name +
                  ": empty cell; pass --missing impute to fill empty cells (numeric: the "
                  "federation's mean, categorical: a reserved category)");
  const Column* hint = o.federation != nullptr ? o.federation->find(col.name) : nullptr;
  Column out{col.name, ColumnType::numeric, {}};
  if (hint != nullptr) {
    out.type = hint->type;
  } else if (col.numbers == 0 && col.texts == 0) {
    return make_error(ErrorCode::invalid_argument,
                      scan.source.path + ": " + name + " has no value in any row");
  } else if (col.texts > 0) {
    if (col.numbers >= col.texts)
      return at(scan, col.first_text,
                name + " holds numbers, but " + quoted(col.first_text_value) + " is not a number");
    out.type = ColumnType::categorical;
  }
  if (out.type == ColumnType::numeric && col.texts > 0)
    return at(scan, col.first_text,
              name + " is numeric in the federation's schema, but " + quoted(col.first_text_value) +
                  " is not a number");
  if (out.type == ColumnType::categorical) {
    if (col.too_many_values)
      return make_error(ErrorCode::invalid_argument,
                        scan.source.path + ": " + name + " holds more than " +
                            std::to_string(kMaxCategories) +
                            " distinct values: free text or an identifier cannot be a "
                            "categorical feature; remove the column");
    out.categories = canonical_order(col.values);
  }
  return out;
}

// Every row needs a label; in a column of numbers, 'inf' or 'nan' is no class but a broken value.
Status check_label(const CsvScan& scan, const ColumnScan& label) {
  if (label.missing > 0)
    return at(
        scan, label.first_missing,
        "the label " + quoted(label.name) + " is missing" +
            (label.first_missing_value.empty() ? ""
                                               : " (" + quoted(label.first_missing_value) + ")") +
            ": a row without a label cannot be used");
  if (label.numbers > 0 && label.texts > 0) {
    const std::string& v = label.first_text_value;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (!v.empty() && end == v.c_str() + v.size() && !std::isfinite(x))
      return at(scan, label.first_text,
                "the label " + quoted(label.name) + " holds numbers, but " + quoted(v) +
                    " is not a finite number");
  }
  return Status::success();
}

}  // namespace

Status check_table(const CsvScan& scan, bool impute) {
  LocalSchemaOptions o;
  o.impute = impute;
  for (std::size_t c = 0; c < scan.columns.size(); ++c) {
    if (c == scan.label_index) continue;
    if (auto col = feature_schema(scan, scan.columns[c], o); !col) return col.error();
  }
  return check_label(scan, scan.columns[scan.label_index]);
}

Result<Schema> local_schema(const CsvScan& scan, const LocalSchemaOptions& options) {
  Schema s;
  s.task = options.task;
  for (std::size_t c = 0; c < scan.columns.size(); ++c) {
    if (c == scan.label_index) continue;
    auto col = feature_schema(scan, scan.columns[c], options);
    if (!col) return col.error();
    s.features.push_back(std::move(*col));
  }
  const ColumnScan& label = scan.columns[scan.label_index];
  s.label = label.name;
  if (Status bad = check_label(scan, label); !bad) return bad.error();
  if (options.task == TaskType::regression) {
    if (label.texts > 0)
      return at(scan, label.first_text,
                "the label " + quoted(label.name) + " is a regression target, but " +
                    quoted(label.first_text_value) + " is not a number");
    return s;
  }
  if (label.too_many_values)
    return make_error(ErrorCode::invalid_argument,
                      scan.source.path + ": the label " + quoted(label.name) + " holds more than " +
                          std::to_string(kMaxClasses) +
                          " distinct values: a regression target? (this federation classifies)");
  s.classes = canonical_order(label.values);
  return s;
}

namespace {

// Where each schema column (and the label) is in the file, or why the header does not fit.
Result<std::vector<std::size_t>> map_columns(const CsvSource& src, const Opened& o,
                                             const Schema& schema) {
  std::vector<std::size_t> index;
  std::vector<std::string> missing;
  for (const auto& c : schema.features) {
    const auto it = std::find(o.header.begin(), o.header.end(), c.name);
    if (it == o.header.end()) missing.push_back(quoted(c.name));
    index.push_back(static_cast<std::size_t>(it - o.header.begin()));
  }
  const std::size_t file_features = o.header.size() - 1;
  std::string why;
  if (file_features != schema.features.size())
    why = std::to_string(file_features) + " features, the federation's schema has " +
          std::to_string(schema.features.size()) + ": ";
  if (!missing.empty()) {
    for (std::size_t i = 0; i < missing.size(); ++i) why += (i ? ", " : "column ") + missing[i];
    return at(src.path, 1, 0, why + " missing");
  }
  for (std::size_t i = 0; i < o.header.size(); ++i) {
    if (i != o.label_index && schema.find(o.header[i]) == nullptr)
      return at(src.path, 1, i + 1,
                why + "column " + quoted(o.header[i]) + " is not in the federation's schema");
  }
  if (schema.label != src.label)
    return at(src.path, 1, 0,
              "the label column is " + quoted(src.label) + " here but " + quoted(schema.label) +
                  " in the federation's schema");
  return index;
}

std::string short_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + quoted(v[i]);
  if (v.size() > 8) s += ", ...";
  return s + "]";
}

}  // namespace

namespace {

// Encodes the schema's columns of one record into `row` (width input_width(), zeroed).
class RowEncoder {
 public:
  RowEncoder(const CsvSource& src, const Schema& schema, std::vector<std::size_t> index,
             const CsvLoadOptions& options)
      : src_(src),
        schema_(schema),
        index_(std::move(index)),
        offsets_(schema.offsets()),
        options_(options),
        classes_(schema.classes) {
    for (const auto& c : schema.features) categories_.emplace_back(c.categories);
  }

  Status features(const std::vector<std::string>& fields, std::size_t line, float* row) const {
    for (std::size_t j = 0; j < schema_.features.size(); ++j) {
      const Column& col = schema_.features[j];
      const std::string& cell = fields[index_[j]];
      const std::size_t column = index_[j] + 1;
      if (col.type == ColumnType::categorical) {
        if (auto k = categories_[j].find(cell)) {
          row[offsets_[j] + static_cast<std::size_t>(*k)] = 1.0f;
          continue;
        }
      }
      if (is_missing_marker(cell)) {
        if (!options_.impute)
          return at(src_.path, line, column,
                    "column " + quoted(col.name) +
                        ": empty cell; pass --missing impute to fill empty cells (numeric: the "
                        "federation's mean, categorical: a reserved category)");
        row[offsets_[j] + (col.type == ColumnType::numeric ? 0 : col.categories.size())] =
            col.type == ColumnType::numeric ? std::numeric_limits<float>::quiet_NaN() : 1.0f;
        continue;
      }
      if (col.type == ColumnType::categorical)
        return at(src_.path, line, column,
                  quoted(cell) + " is not one of column " + quoted(col.name) + "'s categories " +
                      short_list(col.categories) + " in the federation's schema");
      const auto v = parse_cell(cell, src_.separator);
      if (!v || std::abs(*v) > std::numeric_limits<float>::max())
        return at(src_.path, line, column,
                  "column " + quoted(col.name) + " is numeric, but " + quoted(cell) +
                      " is not a finite number");
      row[offsets_[j]] = static_cast<float>(*v);
    }
    return Status::success();
  }

  Status label(const std::string& cell, std::size_t line, std::size_t column, Dataset& d) const {
    if (is_missing_marker(cell) && !classes_.find(cell))
      return at(src_.path, line, column,
                "the label " + quoted(schema_.label) +
                    " is missing: a row without a label cannot be used");
    if (schema_.task == TaskType::regression) {
      const auto v = parse_cell(cell, src_.separator);
      if (!v || std::abs(*v) > std::numeric_limits<float>::max())
        return at(src_.path, line, column,
                  "the label " + quoted(schema_.label) + " is a regression target, but " +
                      quoted(cell) + " is not a number");
      d.targets.push_back(static_cast<float>(*v));
      return Status::success();
    }
    const auto k = classes_.find(cell);
    if (!k)
      return at(src_.path, line, column,
                "label " + quoted(cell) + " is not in the federation's class list " +
                    short_list(schema_.classes));
    d.labels.push_back(*k);
    return Status::success();
  }

 private:
  const CsvSource& src_;
  const Schema& schema_;
  std::vector<std::size_t> index_;
  std::vector<std::size_t> offsets_;
  CsvLoadOptions options_;
  ValueIndex classes_;
  std::vector<ValueIndex> categories_;
};

}  // namespace

Result<Dataset> load_csv(const CsvSource& source, const Schema& schema,
                         const CsvLoadOptions& options) {
  if (schema.task == TaskType::classification && schema.classes.empty())
    return make_error(ErrorCode::failed_precondition, "the schema lists no classes");
  auto opened = open_csv(source);
  if (!opened) return opened.error();
  auto index = map_columns(source, *opened, schema);
  if (!index) return index.error();
  const RowEncoder encoder(source, schema, std::move(*index), options);
  Dataset d;
  d.features = schema.input_width();
  d.num_classes =
      schema.task == TaskType::classification ? static_cast<int>(schema.classes.size()) : 0;
  std::vector<std::string> fields;
  for (;;) {
    auto got = opened->reader->next(fields);
    if (!got) return got.error();
    if (!*got) break;
    const std::size_t line = opened->reader->line();
    if (Status s = check_fields(source, line, fields.size(), opened->header.size()); !s)
      return s.error();
    if (d.x.size() + d.features > kMaxEncodedValues)
      return make_error(ErrorCode::resource_exhausted,
                        where(source.path, line) + "more than 2^30 encoded values; split the file");
    d.x.resize(d.x.size() + d.features, 0.0f);
    if (Status s = encoder.features(fields, line, d.x.data() + d.rows * d.features); !s)
      return s.error();
    if (Status s = encoder.label(fields[opened->label_index], line, opened->label_index + 1, d); !s)
      return s.error();
    ++d.rows;
  }
  if (d.rows == 0)
    return make_error(ErrorCode::invalid_argument, source.path + ": no data rows after the header");
  return d;
}

}  // namespace federa
