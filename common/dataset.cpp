#include "common/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>

#include "common/csv.hpp"

namespace federa {

namespace {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist/";

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

struct Idx {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> bytes;  // header, then the data from `data_offset`
  std::size_t data_offset = 0;
};

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Appends up to `n` bytes of the (decompressed) stream to `out`, growing it only as data arrives:
// a file that promises more than it holds costs what it holds. Returns the bytes read.
Result<std::size_t> read_up_to(gzFile f, std::vector<std::uint8_t>& out, std::size_t n,
                               const std::string& path) {
  std::size_t got = 0;
  while (got < n) {
    const std::size_t want = std::min<std::size_t>(n - got, std::size_t{1} << 20);
    const std::size_t at = out.size();
    out.resize(at + want);
    const int r = gzread(f, out.data() + at, static_cast<unsigned>(want));
    if (r < 0) {
      int code = 0;
      return make_error(path + ": read error: " + gzerror(f, &code));
    }
    out.resize(at + static_cast<std::size_t>(r));
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

// IDX: 0x00 0x00 type ndims, then ndims big-endian uint32 sizes, then the data. Only unsigned
// bytes (type 0x08) are accepted: that is what the image and label files use. gzread reads plain
// files transparently, so one path serves both .gz and raw files; the stream is read only as far
// as the header declares (plus one byte to see that nothing follows), so a small .gz that
// inflates without bound costs no more than the data it claims to hold.
Result<Idx> read_idx(const std::string& path, std::uint32_t expected_magic) {
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) return make_error(path + ": cannot open: " + std::strerror(errno));
  gzbuffer(f.get(), 1 << 17);
  Idx idx;
  auto& b = idx.bytes;
  auto got = read_up_to(f.get(), b, 4, path);
  if (!got) return got.error();
  if (*got < 4) return make_error(path + ": too short for an IDX header");
  const std::uint32_t magic = be32(b.data());
  if (magic != expected_magic) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ": bad IDX magic 0x%08x (expected 0x%08x)", magic,
                  expected_magic);
    return make_error(path + buf);
  }
  const std::size_t ndims = magic & 0xff;
  got = read_up_to(f.get(), b, 4 * ndims, path);
  if (!got) return got.error();
  if (*got < 4 * ndims) return make_error(path + ": truncated IDX header");
  std::size_t count = 1;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::uint32_t d = be32(b.data() + 4 + 4 * i);
    if (d == 0) return make_error(path + ": IDX dimension " + std::to_string(i) + " is zero");
    idx.dims.push_back(d);
    if (count > (std::size_t{1} << 40) / d) return make_error(path + ": IDX dimensions too large");
    count *= d;
  }
  idx.data_offset = 4 + 4 * ndims;
  got = read_up_to(f.get(), b, count, path);
  if (!got) return got.error();
  if (*got < count) {
    return make_error(path + ": truncated IDX data: header promises " + std::to_string(count) +
                      " bytes, file has " + std::to_string(*got));
  }
  std::vector<std::uint8_t> extra;
  got = read_up_to(f.get(), extra, 1, path);
  if (!got) return got.error();
  if (*got > 0) {
    return make_error(path + ": unexpected trailing bytes after the " + std::to_string(count) +
                      " bytes of IDX data its header declares");
  }
  // A truncated gzip stream reads as a short file plus Z_BUF_ERROR at the end.
  int code = Z_OK;
  const std::string msg = gzerror(f.get(), &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    return make_error(path + ": corrupt or truncated gzip stream: " + msg);
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

// A file read through its own schema: what one file alone can say (federa-sim, --eval-data).
// Clients of a federation read their file through the federation's schema instead (csv.hpp).
Result<Dataset> load_csv_alone(std::string_view spec) {
  auto source = parse_csv_spec(spec);
  if (!source) return source.error();
  auto scan = scan_csv(*source);
  if (!scan) return scan.error();
  auto schema = local_schema(*scan, {});
  if (!schema) return schema.error();
  return load_csv(*source, *schema);
}

}  // namespace

Result<Dataset> select_rows(const Dataset& d, std::span<const std::size_t> indices) {
  Dataset out;
  out.rows = indices.size();
  out.features = d.features;
  out.num_classes = d.num_classes;  // kept even if some class has no row left
  out.x.resize(out.rows * out.features);
  if (!d.labels.empty()) out.labels.resize(out.rows);
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= d.rows) {
      return make_error("select_rows: index " + std::to_string(indices[i]) +
                        " is outside the dataset (" + std::to_string(d.rows) + " rows)");
    }
    std::copy_n(d.row(indices[i]), d.features, out.x.data() + i * out.features);
    if (!d.labels.empty()) out.labels[i] = d.labels[indices[i]];
    if (!d.targets.empty()) out.targets.push_back(d.targets[indices[i]]);
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
  if (spec.starts_with("csv:")) return load_csv_alone(spec);
  return make_error("unknown dataset spec '" + std::string(spec) +
                    "' (expected fashion-mnist, idx:IMAGES,LABELS or csv:FILE:label=COLUMN)");
}

}  // namespace federa
