// CSV files as agencies export them, read through a federation's schema (common/csv.hpp): the
// label mapping across sites, and each bad input of issue 11 either read correctly or refused
// with FILE:LINE:COLUMN and the reason.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/csv.hpp"
#include "tests/common/temp_dir.hpp"

using namespace federa;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

CsvSource source(const std::string& path, const std::string& label = "y", char sep = ',') {
  return CsvSource{path, label, sep};
}

Schema local(const CsvSource& src, TaskType task = TaskType::classification, bool impute = false) {
  auto scan = scan_csv(src);
  REQUIRE_MESSAGE(scan.ok(), (scan.ok() ? "" : scan.error().message));
  LocalSchemaOptions o;
  o.task = task;
  o.impute = impute;
  auto s = local_schema(*scan, o);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  return *s;
}

Dataset load(const CsvSource& src, const Schema& schema, bool impute = false) {
  CsvLoadOptions o;
  o.impute = impute;
  auto d = load_csv(src, schema, o);
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.error().message));
  return *d;
}

// The error of loading `src` through `schema`, which must fail.
std::string load_error(const CsvSource& src, const Schema& schema, bool impute = false) {
  CsvLoadOptions o;
  o.impute = impute;
  auto d = load_csv(src, schema, o);
  REQUIRE_FALSE(d.ok());
  return d.error().message;
}

std::string local_error(const CsvSource& src, TaskType task = TaskType::classification) {
  auto scan = scan_csv(src);
  if (!scan) return scan.error().message;
  LocalSchemaOptions o;
  o.task = task;
  auto s = local_schema(*scan, o);
  REQUIRE_FALSE(s.ok());
  return s.error().message;
}

#define CHECK_HAS(text, part) CHECK_MESSAGE((text).find(part) != std::string::npos, (text))

constexpr const char* kFederation = R"({"label": "y", "task": "classification",
  "classes": ["cat", "dog", "emu"],
  "features": [{"name": "age", "type": "numeric"},
               {"name": "sex", "type": "categorical", "categories": ["F", "M"]}]})";

Schema federation() { return *schema_from_json(kFederation); }

}  // namespace

TEST_CASE("csv: sites with disjoint label sets map through the federation's class list") {
  TempDir dir;
  const auto a = source(dir.write("a.csv", "age,sex,y\n1,F,cat\n2,M,cat\n"));
  const auto b = source(dir.write("b.csv", "y,sex,age\nemu,M,3\ndog,F,4\nemu,F,5\n"));
  // Each site reports the values it holds; the union, sorted, is the federation's list.
  const Schema la = local(a), lb = local(b);
  CHECK(la.classes == std::vector<std::string>{"cat"});
  CHECK(lb.classes == std::vector<std::string>{"dog", "emu"});
  auto fed = merge_schemas(la, lb);
  REQUIRE(fed.ok());
  CHECK(fed->classes == std::vector<std::string>{"cat", "dog", "emu"});
  CHECK(fed->features[1].categories == std::vector<std::string>{"F", "M"});
  CHECK(check_compatible(*fed, la).ok());
  CHECK(check_compatible(*fed, lb).ok());

  const Dataset da = load(a, *fed), db = load(b, *fed);
  CHECK(da.num_classes == 3);
  CHECK(da.labels == std::vector<std::int32_t>{0, 0});  // a one-class site: still 'cat' = 0
  CHECK(db.labels == std::vector<std::int32_t>{2, 1, 2});
  // Columns follow the schema's order whatever the file's: age, then sex one-hot + empty slot.
  REQUIRE(db.features == 4);
  CHECK(db.x == std::vector<float>{3, 0, 1, 0, 4, 1, 0, 0, 5, 1, 0, 0});

  // The file alone (the old behaviour) would call b's 'dog' class 0, as a's 'cat': the bug.
  auto alone = load_dataset("csv:" + b.path + ":label=y", Split::train);
  REQUIRE(alone.ok());
  CHECK(alone->labels == std::vector<std::int32_t>{1, 0, 1});
}

TEST_CASE("csv: a one-class site maps to the federation's index, not to 0") {
  TempDir dir;
  const auto only_emu = source(dir.write("emu.csv", "age,sex,y\n1,F,emu\n2,M,emu\n"));
  const Dataset d = load(only_emu, federation());
  CHECK(d.labels == std::vector<std::int32_t>{2, 2});
  CHECK(d.num_classes == 3);
  // Numeric labels written differently by two sites ("1" and "1.0") are one class.
  const Schema numeric = *schema_from_json(R"({"label": "y", "task": "classification",
      "classes": ["0", "1"], "features": [{"name": "x", "type": "numeric"}]})");
  const auto site = source(dir.write("n.csv", "x,y\n5,1.0\n6,0\n"));
  CHECK(load(site, numeric).labels == std::vector<std::int32_t>{1, 0});
}

TEST_CASE("csv: bad cells are refused with FILE:LINE:COLUMN and the reason") {
  TempDir dir;
  const Schema fed = federation();
  const auto unknown = source(dir.write("u.csv", "age,sex,y\n1,F,cat\n2,M,cow\n"));
  std::string e = load_error(unknown, fed);
  CHECK_HAS(e, unknown.path + ":3:3: label 'cow' is not in the federation's class list");

  const auto category = source(dir.write("c.csv", "age,sex,y\n1,F,cat\n2,X,dog\n"));
  e = load_error(category, fed);
  CHECK_HAS(e, category.path + ":3:2: 'X' is not one of column 'sex''s categories ['F', 'M']");

  const auto text = source(dir.write("t.csv", "age,sex,y\n1,F,cat\nold,M,dog\n"));
  e = load_error(text, fed);
  CHECK_HAS(e, text.path + ":3:1: column 'age' is numeric, but 'old' is not a finite number");
  // The scan says so too, before any schema is known: a column of numbers with one text cell.
  const auto typo = source(dir.write("typo.csv", "age,y\n1,cat\n2,dog\n3x,cat\n4,dog\n"));
  e = local_error(typo);
  CHECK_HAS(e, typo.path + ":4:1: column 'age' holds numbers, but '3x' is not a number");

  const auto empty = source(dir.write("e.csv", "age,sex,y\n1,F,cat\n,M,dog\n2,,dog\n"));
  e = load_error(empty, fed);
  CHECK_HAS(e, empty.path + ":3:1: column 'age': empty cell; pass --missing impute");
  e = local_error(empty);
  CHECK_HAS(e, empty.path + ":3:1: column 'age': empty cell");

  const auto no_label = source(dir.write("nl.csv", "age,sex,y\n1,F,cat\n2,M,nan\n"));
  e = load_error(no_label, fed);
  CHECK_HAS(e, no_label.path + ":3:3: the label 'y' is missing");
  CHECK_HAS(local_error(no_label), no_label.path + ":3:3: the label 'y' is missing");

  const auto mismatch = source(dir.write("m.csv", "sex,y,height\nF,cat,1\n"));
  e = load_error(mismatch, fed);
  CHECK_HAS(e, mismatch.path + ":1: column 'age' missing");
  const auto extra = source(dir.write("x.csv", "age,sex,zip,y\n1,F,9,cat\n"));
  e = load_error(extra, fed);
  CHECK_HAS(e, extra.path + ":1:3: 3 features, the federation's schema has 2: column 'zip'");

  const auto ragged = source(dir.write("r.csv", "age,sex,y\n1,F,cat\n2,M\n"));
  CHECK_HAS(load_error(ragged, fed), ragged.path + ":3: expected 3 fields, found 2");

  const auto regression = *schema_from_json(
      R"({"label": "y", "task": "regression", "features": [{"name": "x", "type": "numeric"}]})");
  const auto word = source(dir.write("w.csv", "x,y\n1,2.5\n2,high\n"));
  CHECK_HAS(load_error(word, regression), word.path + ":3:2: the label 'y' is a regression target");
  CHECK_HAS(local_error(word, TaskType::regression), word.path + ":3:2:");
}

TEST_CASE("csv: empty cells under --missing impute: NaN for numbers, the reserved slot") {
  TempDir dir;
  const auto src = source(dir.write("i.csv", "age,sex,y\n1,F,cat\nNA,M,dog\n2,,dog\n"));
  const Dataset d = load(src, federation(), true);
  REQUIRE(d.rows == 3);
  CHECK(std::isnan(d.row(1)[0]));
  CHECK(d.row(2)[0] == 2.0f);
  CHECK(std::vector<float>(d.row(2) + 1, d.row(2) + 4) == std::vector<float>{0, 0, 1});
  const Schema s = local(src, TaskType::classification, true);
  CHECK(s.features[0].type == ColumnType::numeric);
  CHECK(s.features[1].categories == std::vector<std::string>{"F", "M"});
}

TEST_CASE("csv: BOM, CRLF, quoted fields and blank lines are read as meant") {
  TempDir dir;
  const auto src = source(dir.write("q.csv",
                                    "\xEF\xBB\xBF"
                                    "age,\"sex\",y\r\n"
                                    "1,\"F\",cat\r\n"
                                    "\r\n"
                                    "  2 ,M,\"d\"\"og\"\r\n"
                                    "3,\"M\",\"multi\nline\"\r\n"
                                    "4,F,\"x,y\"\r\n"
                                    "5,Q\r\n"));
  auto scan = scan_csv(src);
  REQUIRE_FALSE(scan.ok());
  // Line numbers count physical lines: the quoted line break moved the last record to line 8.
  CHECK_HAS(scan.error().message, src.path + ":8: expected 3 fields, found 2");

  const auto good = source(dir.write("g.csv",
                                     "\xEF\xBB\xBF"
                                     "age,\"sex\",y\r\n1,\"F\",cat\r\n\r\n  2 ,M,\"d\"\"og\"\r\n"
                                     "3,\"M\",\"multi\nline\"\r\n4,F,\"x,y\""));
  const Schema s = local(good);
  CHECK(s.features[0].name == "age");  // the BOM is not part of the first name
  CHECK(s.classes == std::vector<std::string>{"cat", "d\"og", "multi\nline", "x,y"});
  const Dataset d = load(good, s);
  CHECK(d.labels == std::vector<std::int32_t>{0, 1, 2, 3});
  CHECK(d.row(1)[0] == 2.0f);  // spaces around an unquoted number are trimmed

  const auto open_quote = source(dir.write("o.csv", "age,y\n1,\"cat\n2,dog\n"));
  CHECK_HAS(scan_csv(open_quote).error().message, open_quote.path + ":2:2: unterminated quoted");
  const auto utf16 = source(dir.write("u16.csv", std::string("\xFF\xFE"
                                                             "a\0,\0y\0",
                                                             8)));
  CHECK_HAS(scan_csv(utf16).error().message, "UTF-16");
}

TEST_CASE("csv: a semicolon file is named as such, and reads with sep=;") {
  TempDir dir;
  const std::string path = dir.write("s.csv", "age;sex;y\n1,5;F;cat\n2;M;dog\n");
  auto scan = scan_csv(source(path));
  REQUIRE_FALSE(scan.ok());
  CHECK_HAS(scan.error().message, path + ":1:1: the header is one column that contains ';'");
  CHECK_HAS(scan.error().message, ":sep=;");

  auto spec = parse_csv_spec("csv:" + path + ":label=y:sep=;");
  REQUIRE(spec.ok());
  CHECK(spec->separator == ';');
  CHECK(spec->path == path);
  const Schema s = local(*spec);
  const Dataset d = load(*spec, s);
  CHECK(d.row(0)[0] == 1.5f);  // a decimal comma under ';'
  CHECK(d.labels == std::vector<std::int32_t>{0, 1});

  CHECK_FALSE(parse_csv_spec("csv:" + path + ":label=y:sep=|").ok());
  CHECK_FALSE(parse_csv_spec("csv:" + path).ok());
  CHECK(parse_csv_spec("csv:a:b.csv:label=y")->path == "a:b.csv");
}

TEST_CASE("csv: inference: numbers numeric, text categorical, free text refused") {
  TempDir dir;
  std::string text = "id,grade,y\n";
  for (int i = 0; i < 1100; ++i) {
    text += 'p';
    text += std::to_string(i);
    text += i % 2 ? ",high," : ",low,";
    text += std::to_string(i % 3);
    text += '\n';
  }
  const auto ids = source(dir.write("ids.csv", text));
  auto e = local_error(ids);
  CHECK_HAS(e, "column 'id' holds more than 1024 distinct values");

  const auto fine = source(dir.write("f.csv", "n,grade,y\n1.5,high,0\n2,low,1\n3,mid,1\n"));
  const Schema s = local(fine);
  CHECK(s.features[0].type == ColumnType::numeric);
  CHECK(s.features[1].categories == std::vector<std::string>{"high", "low", "mid"});
  CHECK(s.classes == std::vector<std::string>{"0", "1"});
  // Given the federation's schema, its types win: a numeric-looking code column is categorical.
  const Schema fed = *schema_from_json(R"({"label": "y", "task": "classification",
      "classes": ["0", "1"], "features": [{"name": "n", "type": "categorical",
      "categories": ["1.5", "2", "3"]}, {"name": "grade", "type": "categorical",
      "categories": ["high", "low", "mid"]}]})");
  auto scan = scan_csv(fine);
  LocalSchemaOptions o;
  o.federation = &fed;
  auto typed = local_schema(*scan, o);
  REQUIRE(typed.ok());
  CHECK(typed->features[0].type == ColumnType::categorical);
  CHECK(check_compatible(fed, *typed).ok());
  // A regression label with more distinct values than a class list may hold.
  std::string reg = "x,y\n";
  for (int i = 0; i < 1500; ++i) reg += std::to_string(i) + "," + std::to_string(i * 0.5) + "\n";
  const auto target = source(dir.write("reg.csv", reg));
  CHECK_HAS(local_error(target), "a regression target?");
  CHECK(local(target, TaskType::regression).classes.empty());
}

TEST_CASE("csv: structural errors of the header") {
  TempDir dir;
  const auto dup = source(dir.write("d.csv", "a,a,y\n1,2,3\n"));
  CHECK_HAS(scan_csv(dup).error().message, dup.path + ":1:2: column 'a' appears twice");
  const auto unnamed = source(dir.write("n.csv", "a,,y\n1,2,3\n"));
  CHECK_HAS(scan_csv(unnamed).error().message, unnamed.path + ":1:2: column 2 has no name");
  const auto no_label = source(dir.write("l.csv", "a,b\n1,2\n"));
  CHECK_HAS(scan_csv(no_label).error().message,
            "no column named 'y' in the header (it has 'a', 'b')");
  const auto header_only = source(dir.write("h.csv", "a,y\n"));
  CHECK_HAS(scan_csv(header_only).error().message, "no data rows");
  const auto nothing = source(dir.write("z.csv", ""));
  CHECK_HAS(scan_csv(nothing).error().message, "empty file");
  CHECK(scan_csv(source(dir.path.string() + "/none.csv")).error().code == ErrorCode::not_found);
  const auto binary = source(dir.write("b.csv", std::string("a,y\n1,\0\n", 8)));
  CHECK_HAS(scan_csv(binary).error().message, "NUL byte");
}
