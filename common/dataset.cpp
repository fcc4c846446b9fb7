#include "common/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>

namespace federa {

namespace {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist/";

// gzread reads plain files transparently, so one path serves both .gz and raw IDX files.
Result<std::vector<std::uint8_t>> read_maybe_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return make_error(path + ": cannot open: " + std::strerror(errno));
  gzbuffer(f, 1 << 20);
  std::vector<std::uint8_t> out;
  std::size_t used = 0;
  out.resize(1 << 20);
  for (;;) {
    if (used == out.size()) out.resize(out.size() * 2);
    const std::size_t want = std::min<std::size_t>(out.size() - used, 1u << 30);
    const int n = gzread(f, out.data() + used, static_cast<unsigned>(want));
    if (n < 0) {
      int code = 0;
      std::string msg = gzerror(f, &code);
      gzclose(f);
      return make_error(path + ": read error: " + msg);
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  // A truncated gzip stream reads as a short file plus Z_BUF_ERROR at the end.
  int code = Z_OK;
  std::string msg = gzerror(f, &code);
  gzclose(f);
  if (code != Z_OK && code != Z_STREAM_END) {
    return make_error(path + ": corrupt or truncated gzip stream: " + msg);
  }
  out.resize(used);
  return out;
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

struct Idx {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> bytes;  // whole file; data starts at `data_offset`
  std::size_t data_offset = 0;
};

// IDX: 0x00 0x00 type ndims, then ndims big-endian uint32 sizes, then the data. Only unsigned
// bytes (type 0x08) are accepted: that is what the image and label files use.
Result<Idx> read_idx(const std::string& path, std::uint32_t expected_magic) {
  auto bytes = read_maybe_gzip(path);
  if (!bytes) return bytes.error();
  Idx idx;
  idx.bytes = std::move(*bytes);
  const auto& b = idx.bytes;
  if (b.size() < 4) return make_error(path + ": too short for an IDX header");
  const std::uint32_t magic = be32(b.data());
  if (magic != expected_magic) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ": bad IDX magic 0x%08x (expected 0x%08x)", magic,
                  expected_magic);
    return make_error(path + buf);
  }
  const std::size_t ndims = magic & 0xff;
  if (b.size() < 4 + 4 * ndims) return make_error(path + ": truncated IDX header");
  std::size_t count = 1;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::uint32_t d = be32(b.data() + 4 + 4 * i);
    if (d == 0) return make_error(path + ": IDX dimension " + std::to_string(i) + " is zero");
    idx.dims.push_back(d);
    if (count > (std::size_t{1} << 40) / d) return make_error(path + ": IDX dimensions too large");
    count *= d;
  }
  idx.data_offset = 4 + 4 * ndims;
  const std::size_t have = b.size() - idx.data_offset;
  if (have < count) {
    return make_error(path + ": truncated IDX data: header promises " + std::to_string(count) +
                      " bytes, file has " + std::to_string(have));
  }
  if (have > count) {
    return make_error(path + ": " + std::to_string(have - count) +
                      " unexpected trailing bytes after IDX data");
  }
  return idx;
}

Result<Dataset> load_idx(const std::string& images_path, const std::string& labels_path,
                         int fixed_classes) {
  auto images = read_idx(images_path, 0x00000803);
  if (!images) return images.error();
  auto labels = read_idx(labels_path, 0x00000801);
  if (!labels) return labels.error();
  if (images->dims[0] != labels->dims[0]) {
    return make_error(images_path + " has " + std::to_string(images->dims[0]) + " images but " +
                      labels_path + " has " + std::to_string(labels->dims[0]) + " labels");
  }
  Dataset d;
  d.rows = images->dims[0];
  d.features = std::size_t{images->dims[1]} * images->dims[2];
  d.x.resize(d.rows * d.features);
  const std::uint8_t* px = images->bytes.data() + images->data_offset;
  // A table avoids a division per pixel; 47M pixels load in well under a second.
  float scale[256];
  for (int i = 0; i < 256; ++i) scale[i] = static_cast<float>(i) / 255.0f;
  for (std::size_t i = 0; i < d.x.size(); ++i) d.x[i] = scale[px[i]];
  images->bytes = {};

  const std::uint8_t* lb = labels->bytes.data() + labels->data_offset;
  d.labels.resize(d.rows);
  int max_label = -1;
  for (std::size_t i = 0; i < d.rows; ++i) {
    d.labels[i] = lb[i];
    max_label = std::max(max_label, static_cast<int>(lb[i]));
  }
  d.num_classes = fixed_classes > 0 ? fixed_classes : max_label + 1;
  if (max_label >= d.num_classes) {
    return make_error(labels_path + ": label " + std::to_string(max_label) + " out of range [0, " +
                      std::to_string(d.num_classes) + ")");
  }
  return d;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

void split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(trim(line.substr(start)));
      return;
    }
    out.push_back(trim(line.substr(start, comma - start)));
    start = comma + 1;
  }
}

std::optional<double> parse_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Labels are mapped to 0..C-1 in numeric order when they are all numbers (so "0".."9" keep
// their values), otherwise in lexicographic order of the strings. Train and test files with the
// same label set therefore get the same mapping.
void assign_label_indices(const std::vector<std::string>& raw_labels, Dataset& d) {
  bool numeric = true;
  for (const auto& l : raw_labels) {
    if (!parse_number(l)) {
      numeric = false;
      break;
    }
  }
  std::vector<std::string> distinct = raw_labels;
  if (numeric) {
    std::sort(distinct.begin(), distinct.end(), [](const std::string& a, const std::string& b) {
      return *parse_number(a) < *parse_number(b);
    });
    distinct.erase(std::unique(distinct.begin(), distinct.end(),
                               [](const std::string& a, const std::string& b) {
                                 return *parse_number(a) == *parse_number(b);
                               }),
                   distinct.end());
  } else {
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  }
  d.num_classes = static_cast<int>(distinct.size());
  d.labels.resize(d.rows);
  for (std::size_t i = 0; i < d.rows; ++i) {
    std::size_t k;
    if (numeric) {
      const double v = *parse_number(raw_labels[i]);
      k = static_cast<std::size_t>(
          std::lower_bound(distinct.begin(), distinct.end(), v,
                           [](const std::string& a, double b) { return *parse_number(a) < b; }) -
          distinct.begin());
    } else {
      k = static_cast<std::size_t>(
          std::lower_bound(distinct.begin(), distinct.end(), raw_labels[i]) - distinct.begin());
    }
    d.labels[i] = static_cast<std::int32_t>(k);
  }
}

// A header row naming the columns, then one row per example; every column but the label is a
// finite number. Labels are mapped by assign_label_indices.
Result<Dataset> load_csv(const std::string& path, const std::string& label_column) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open: " + std::strerror(errno));
  std::string line;
  std::size_t line_no = 0;
  std::vector<std::string_view> fields;
  std::size_t label_col = 0;
  std::size_t columns = 0;
  // Header: the first non-empty line.
  for (;;) {
    if (!std::getline(in, line)) return make_error(path + ": empty file, expected a header row");
    ++line_no;
    if (line_no == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) {
      line.erase(0, 3);
    }
    if (!trim(line).empty()) break;
  }
  split_fields(line, fields);
  columns = fields.size();
  {
    auto it = std::find(fields.begin(), fields.end(), std::string_view(label_column));
    if (it == fields.end()) {
      return make_error(path + ":" + std::to_string(line_no) + ": no column named '" +
                        label_column + "' in the header");
    }
    label_col = static_cast<std::size_t>(it - fields.begin());
  }
  if (columns < 2) return make_error(path + ": need at least one feature column besides the label");

  Dataset d;
  d.features = columns - 1;
  std::vector<std::string> raw_labels;
  while (std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty()) continue;
    split_fields(line, fields);
    if (fields.size() != columns) {
      return make_error(path + ":" + std::to_string(line_no) + ": expected " +
                        std::to_string(columns) + " fields, found " +
                        std::to_string(fields.size()));
    }
    for (std::size_t c = 0; c < columns; ++c) {
      if (c == label_col) {
        if (fields[c].empty()) {
          return make_error(path + ":" + std::to_string(line_no) + ": empty label");
        }
        raw_labels.emplace_back(fields[c]);
        continue;
      }
      auto v = parse_number(fields[c]);
      if (!v || !std::isfinite(*v)) {
        return make_error(path + ":" + std::to_string(line_no) + ": column " +
                          std::to_string(c + 1) + ": '" + std::string(fields[c]) +
                          "' is not a finite number");
      }
      d.x.push_back(static_cast<float>(*v));
    }
  }
  d.rows = raw_labels.size();
  if (d.rows == 0) return make_error(path + ": no data rows after the header");

  assign_label_indices(raw_labels, d);
  return d;
}

}  // namespace

Result<Dataset> select_rows(const Dataset& d, std::span<const std::size_t> indices) {
  Dataset out;
  out.rows = indices.size();
  out.features = d.features;
  out.num_classes = d.num_classes;  // kept even if some class has no row left
  out.x.resize(out.rows * out.features);
  out.labels.resize(out.rows);
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= d.rows) {
      return make_error("select_rows: index " + std::to_string(indices[i]) +
                        " is outside the dataset (" + std::to_string(d.rows) + " rows)");
    }
    std::copy_n(d.row(indices[i]), d.features, out.x.data() + i * out.features);
    out.labels[i] = d.labels[indices[i]];
  }
  return out;
}

Result<Dataset> load_dataset(std::string_view spec, Split split) {
  if (spec == "fashion-mnist") {
    const std::string dir = kFashionMnistDir;
    const std::string prefix = split == Split::train ? "train" : "t10k";
    return load_idx(dir + prefix + "-images-idx3-ubyte.gz", dir + prefix + "-labels-idx1-ubyte.gz",
                    10);
  }
  if (spec.starts_with("idx:")) {
    const std::string_view rest = spec.substr(4);
    const auto comma = rest.find(',');
    if (comma == std::string_view::npos || comma == 0 || comma + 1 == rest.size()) {
      return make_error("dataset spec '" + std::string(spec) + "': expected idx:IMAGES,LABELS");
    }
    return load_idx(std::string(rest.substr(0, comma)), std::string(rest.substr(comma + 1)), 0);
  }
  if (spec.starts_with("csv:")) {
    const std::string_view rest = spec.substr(4);
    const auto pos = rest.rfind(":label=");
    if (pos == std::string_view::npos || pos == 0 || pos + 7 == rest.size()) {
      return make_error("dataset spec '" + std::string(spec) + "': expected csv:FILE:label=COLUMN");
    }
    return load_csv(std::string(rest.substr(0, pos)), std::string(rest.substr(pos + 7)));
  }
  return make_error("unknown dataset spec '" + std::string(spec) +
                    "' (expected fashion-mnist, idx:IMAGES,LABELS or csv:FILE:label=COLUMN)");
}

}  // namespace federa
