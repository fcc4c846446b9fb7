#include "client/exec_trainer_files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "common/schema.hpp"
#include "common/statistics.hpp"

namespace federa {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// No model of ours has a header anywhere near this; a larger one is not worth reading.
constexpr std::uint64_t kMaxHeaderBytes = 16u << 20;
constexpr std::uint64_t kMaxMetricsBytes = 1u << 20;
constexpr std::size_t kMaxMetrics = 256;
// F16/BF16 tensors are converted this many elements at a time (256 KiB of float32), so a
// narrow model needs no second full-size buffer on the way in or out.
constexpr std::size_t kBlockElements = 1u << 16;

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

struct File {
  int fd = -1;
  explicit File(int f) : fd(f) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() {
    if (fd >= 0) ::close(fd);
  }
};

Status write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, std::min<std::size_t>(n, 1u << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return make_error(ErrorCode::resource_exhausted, std::strerror(errno));
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

Status read_at(int fd, char* out, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    ssize_t r = ::pread(fd, out, std::min<std::size_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error(ErrorCode::internal, std::strerror(errno));
    if (r == 0) return make_error(ErrorCode::invalid_argument, "the file ended early");
    out += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return {};
}

// Opens a regular file the trainer wrote (never through a symlink), with its size.
Result<std::pair<int, std::uint64_t>> open_output(const fs::path& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT)
      return make_error(ErrorCode::invalid_argument, "the trainer wrote no " + what);
    return make_error(ErrorCode::invalid_argument,
                      what + " cannot be opened: " + std::strerror(errno) +
                          (errno == ELOOP ? " (a symbolic link; write a regular file)" : ""));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(ErrorCode::invalid_argument, what + " is not a regular file");
  }
  return std::make_pair(fd, static_cast<std::uint64_t>(st.st_size));
}

Result<std::uint64_t> as_u64(const json::value& v) {
  if (v.is_uint64()) return v.as_uint64();
  if (v.is_int64() && v.as_int64() >= 0) return static_cast<std::uint64_t>(v.as_int64());
  return make_error("not a non-negative integer");
}

struct Found {
  std::size_t index;  // in the expected layout
  std::uint64_t begin, end;
};

// One header entry against the expected layout.
Result<Found> check_entry(const std::string& name, const json::value& value,
                          const ModelLayout& expected,
                          const std::map<std::string, std::size_t>& index_of,
                          std::uint64_t data_size) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, "tensor '" + name + "' " + why);
  };
  auto it = index_of.find(name);
  if (it == index_of.end())
    return bad("is not in the global model (an extra tensor; return exactly the global's names)");
  const TensorSpec& spec = expected.tensors()[it->second];
  if (!value.is_object()) return bad("has a header entry that is not an object");
  const auto& o = value.as_object();
  const auto* dt = o.if_contains("dtype");
  const auto* sh = o.if_contains("shape");
  const auto* off = o.if_contains("data_offsets");
  if (!dt || !dt->is_string()) return bad("has no dtype");
  const std::string want = expected_dtype(expected, it->second);
  if (dt->as_string() != want)
    return bad("has dtype " + std::string(dt->as_string()) + ", the global model's is " + want);
  if (!sh || !sh->is_array()) return bad("has no shape");
  std::vector<std::uint64_t> shape;
  for (const auto& d : sh->as_array()) {
    auto v = as_u64(d);
    if (!v) return bad("has a shape that is not a list of non-negative integers");
    shape.push_back(*v);
  }
  if (shape != spec.shape)
    return bad("has shape " + shape_text(shape) + ", the global model's is " +
               shape_text(spec.shape));
  if (!off || !off->is_array() || off->as_array().size() != 2)
    return bad("needs data_offsets [begin, end]");
  auto b = as_u64(off->as_array()[0]);
  auto e = as_u64(off->as_array()[1]);
  if (!b || !e || *e < *b) return bad("has data_offsets that are not [begin, end]");
  if (*e > data_size)
    return bad(fmt::format("ends at byte {} of the data, which holds {}: the file is truncated", *e,
                           data_size));
  if (*e - *b != spec.bytes())
    return bad(fmt::format("has {} bytes of data, its shape needs {}", *e - *b, spec.bytes()));
  return Found{it->second, *b, *e};
}

// The header's entries, every one checked and all of expected's present, in data order.
Result<std::vector<Found>> check_header(const json::value& header, const ModelLayout& expected,
                                        std::uint64_t data_size) {
  if (!header.is_object())
    return make_error(ErrorCode::invalid_argument, "its header is not a JSON object");
  std::map<std::string, std::size_t> index_of;
  for (std::size_t i = 0; i < expected.tensors().size(); ++i)
    index_of[expected.tensors()[i].name] = i;
  std::vector<Found> found;
  std::set<std::size_t> seen;
  for (const auto& kv : header.as_object()) {
    std::string name(kv.key());
    if (name == "__metadata__") continue;
    auto f = check_entry(name, kv.value(), expected, index_of, data_size);
    if (!f) return f.error();
    if (!seen.insert(f->index).second)
      return make_error(ErrorCode::invalid_argument, "tensor '" + name + "' appears twice");
    found.push_back(*f);
  }
  if (found.size() != expected.tensors().size()) {
    std::vector<std::string> missing;
    for (std::size_t i = 0; i < expected.tensors().size(); ++i)
      if (!seen.count(i)) missing.push_back("'" + expected.tensors()[i].name + "'");
    const std::size_t shown = std::min<std::size_t>(missing.size(), 5);
    return make_error(ErrorCode::invalid_argument,
                      fmt::format("{} missing tensor{}: {}{}", missing.size(),
                                  missing.size() == 1 ? " is" : "s are",
                                  fmt::join(missing.begin(), missing.begin() + long(shown), ", "),
                                  missing.size() > shown ? ", ..." : ""));
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.begin < b.begin; });
  std::uint64_t expect = 0;
  for (const auto& f : found) {
    if (f.begin != expect)
      return make_error(ErrorCode::invalid_argument,
                        "tensor '" + expected.tensors()[f.index].name +
                            "' does not start where the previous one ends (gaps or overlaps)");
    expect = f.end;
  }
  return found;
}

// The first non-finite value, by tensor name and index.
Status check_finite(const std::vector<float>& w, const ModelLayout& layout) {
  for (std::size_t t = 0; t < layout.tensors().size(); ++t) {
    if (!is_float(layout.tensors()[t].dtype)) continue;  // integers are always finite
    const float* p = w.data() + layout.offset(t);
    const std::size_t n = layout.tensors()[t].elements();
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i]))
        return make_error(
            ErrorCode::invalid_argument,
            fmt::format("tensor '{}' holds {} at index {} (training diverged?)",
                        layout.tensors()[t].name, std::isnan(p[i]) ? "NaN" : "Inf", i));
  }
  return {};
}

bool plain_metric_name(std::string_view k) {
  return !k.empty() && k.size() <= 64 && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

}  // namespace

std::string expected_dtype(const ModelLayout& layout, std::size_t i) {
  return std::string(dtype_name(layout.tensors()[i].dtype));
}

Status write_model_file(const fs::path& path, const Model& model) {
  json::object header;
  const auto& tensors = model.layout.tensors();
  std::uint64_t begin = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    json::array shape;
    for (auto d : tensors[i].shape) shape.push_back(d);
    header[tensors[i].name] = {{"dtype", expected_dtype(model.layout, i)},
                               {"shape", std::move(shape)},
                               {"data_offsets", json::array{begin, begin + tensors[i].bytes()}}};
    begin += tensors[i].bytes();
  }
  std::string h = json::serialize(header);
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // data 8-byte aligned, as the format says
  std::string prefix(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(prefix.data(), &n, 8);
  prefix += h;
  File f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (f.fd < 0)
    return make_error(ErrorCode::internal,
                      path.string() + ": cannot create: " + std::strerror(errno));
  Status s = write_all(f.fd, prefix.data(), prefix.size());
  std::vector<std::uint8_t> narrow;  // one block of a F16/BF16 tensor at a time
  for (std::size_t i = 0; s && i < tensors.size(); ++i) {
    const DType dtype = tensors[i].dtype;
    if (!is_float(dtype)) {
      const auto bytes = model.carried_tensor(i);
      s = write_all(f.fd, reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else if (dtype == DType::f32) {
      const auto w = model.tensor(i);
      s = write_all(f.fd, reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
    } else {
      const auto w = model.tensor(i);
      for (std::size_t at = 0; s && at < w.size(); at += kBlockElements) {
        const std::size_t k = std::min(kBlockElements, w.size() - at);
        narrow.resize(k * dtype_size(dtype));
        encode_floats(dtype, w.data() + at, k, narrow.data());
        s = write_all(f.fd, reinterpret_cast<const char*>(narrow.data()), narrow.size());
      }
    }
  }
  if (!s) return make_error(s.code(), path.string() + ": cannot write: " + s.message());
  return {};
}

Result<std::vector<float>> read_trainer_model(const fs::path& path, const ModelLayout& expected) {
  const std::string what = "model (" + path.filename().string() + ")";
  auto opened = open_output(path, what);
  if (!opened) return opened.error();
  File f(opened->first);
  const std::uint64_t size = opened->second;
  std::uint64_t data_bytes = 0;
  for (const auto& t : expected.tensors()) data_bytes += t.bytes();
  auto fail = [&](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, path.filename().string() + ": " + why);
  };
  if (size < 8)
    return fail(fmt::format("truncated: {} bytes, not even the 8-byte header length", size));
  if (size > 8 + kMaxHeaderBytes + data_bytes)
    return fail(fmt::format("oversized: {} bytes for a model whose data is {} bytes; not read",
                            size, data_bytes));
  std::uint64_t n = 0;
  if (Status s = read_at(f.fd, reinterpret_cast<char*>(&n), 8, 0); !s) return fail(s.message());
  if (n > size - 8)
    return fail(fmt::format("truncated: its header says {} bytes, the file holds {}", n, size - 8));
  if (n > kMaxHeaderBytes)
    return fail(fmt::format("a header of {} bytes is not a safetensors header", n));
  std::string text(n, '\0');
  if (Status s = read_at(f.fd, text.data(), n, 8); !s) return fail(s.message());
  boost::system::error_code ec;
  json::value header = json::parse(text, ec);
  if (ec) return fail("its header is not JSON (" + ec.message() + "): not a safetensors file?");
  const std::uint64_t data_size = size - 8 - n;
  auto found = check_header(header, expected, data_size);  // names, dtypes, shapes first
  if (!found) return fail(found.error().message);
  if (data_size != data_bytes)
    return fail(fmt::format("{} bytes after the last tensor", data_size - data_bytes));
  std::vector<float> weights(expected.size());
  std::vector<std::uint8_t> narrow;  // one block of a F16/BF16 tensor at a time
  for (const auto& t : *found) {
    const DType dtype = expected.tensors()[t.index].dtype;
    float* out = weights.data() + expected.offset(t.index);
    const std::uint64_t at = 8 + n + t.begin;
    Status s;
    if (!is_float(dtype)) {
      continue;  // carried: checked above, never sent (the global keeps its own value)
    } else if (dtype == DType::f32) {
      s = read_at(f.fd, reinterpret_cast<char*>(out), t.end - t.begin, at);
    } else {
      const std::size_t size = dtype_size(dtype);
      const std::size_t count = (t.end - t.begin) / size;
      for (std::size_t i = 0; s && i < count; i += kBlockElements) {
        const std::size_t k = std::min(kBlockElements, count - i);
        narrow.resize(k * size);
        s = read_at(f.fd, reinterpret_cast<char*>(narrow.data()), narrow.size(), at + i * size);
        if (s) decode_floats(dtype, narrow.data(), k, out + i);
      }
    }
    if (!s) return fail(s.message());
  }
  if (Status s = check_finite(weights, expected); !s) return fail(s.message());
  return weights;
}

Result<TrainerMetrics> read_trainer_metrics(const fs::path& path, std::uint64_t max_examples) {
  auto opened = open_output(path, "metrics (" + path.filename().string() + ")");
  if (!opened) return opened.error();
  File f(opened->first);
  auto fail = [&](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, path.filename().string() + ": " + why);
  };
  if (opened->second > kMaxMetricsBytes)
    return fail(fmt::format("{} bytes; at most {} are read", opened->second, kMaxMetricsBytes));
  std::string text(opened->second, '\0');
  if (Status s = read_at(f.fd, text.data(), text.size(), 0); !s) return fail(s.message());
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec)
    return fail("not valid JSON (" + ec.message() +
                "); NaN and Infinity are not JSON: write null instead");
  if (!v.is_object())
    return fail("must hold a JSON object {\"num_examples\": N, \"metrics\": {...}}");
  const auto& o = v.as_object();
  const auto* n = o.if_contains("num_examples");
  if (!n) return fail("has no num_examples");
  TrainerMetrics out;
  if (n->is_double() && n->as_double() >= 0 && n->as_double() < 1.8e19 &&
      std::floor(n->as_double()) == n->as_double()) {
    out.num_examples = static_cast<std::uint64_t>(n->as_double());
  } else if (auto u = as_u64(*n)) {
    out.num_examples = *u;
  } else {
    return fail("num_examples is " + json::serialize(*n) + ", not a whole number");
  }
  if (out.num_examples == 0) return fail("num_examples is 0: a task must use at least one example");
  if (out.num_examples > max_examples)
    return fail(fmt::format("num_examples is {}, above this client's cap of {} (--max-examples)",
                            out.num_examples, max_examples));
  if (const auto* m = o.if_contains("metrics")) {
    if (!m->is_object()) return fail("metrics must be an object of numbers");
    for (const auto& kv : m->as_object()) {
      if (!kv.value().is_number()) continue;  // null (a non-finite value), text, lists
      if (!plain_metric_name(kv.key()))
        return fail("metric name '" + std::string(kv.key()).substr(0, 64) +
                    "' is not [A-Za-z0-9_.-]{1,64}");
      const double x = kv.value().to_number<double>();
      if (std::isfinite(x)) out.metrics[std::string(kv.key())] = x;
      if (out.metrics.size() > kMaxMetrics)
        return fail(fmt::format("more than {} metrics", kMaxMetrics));
    }
  }
  return out;
}

std::string task_json(const TaskFiles& files, const TrainConfig& c, const ModelLayout& layout) {
  json::object hp{{"local_epochs", c.local_epochs},
                  {"batch_size", c.batch_size},
                  {"lr", c.lr},
                  {"momentum", c.momentum},
                  {"weight_decay", c.weight_decay},
                  {"proximal_mu", c.proximal_mu}};
  // A tabular federation's schema and standardisation (JSON text in the config) go to the top
  // level as JSON (docs/tabular.md); other extras stay strings among the hyperparameters.
  json::object table;
  for (const auto& [k, v] : c.extra) {
    if (k == kConfigSchema || k == kConfigStandardization) {
      boost::system::error_code ec;
      json::value parsed = json::parse(v, ec);
      if (!ec) {
        table[k] = std::move(parsed);
        continue;
      }
    }
    hp[k] = v;
  }
  json::array tensors;
  for (std::size_t i = 0; i < layout.tensors().size(); ++i) {
    const auto& t = layout.tensors()[i];
    json::array shape;
    for (auto d : t.shape) shape.push_back(d);
    tensors.push_back(json::object{
        {"name", t.name}, {"shape", std::move(shape)}, {"dtype", expected_dtype(layout, i)}});
  }
  json::object task{{"version", 1},
                    {"task", std::string(task_kind_name(files.kind))},
                    {"round", files.round},
                    {"attempt", files.attempt},
                    {"seed", c.seed},
                    {"model", c.model},
                    {"hyperparameters", std::move(hp)},
                    {"tensors", std::move(tensors)},
                    {"input_model", files.input_model.string()},
                    {"output_model", files.output_model.string()},
                    {"metrics", files.metrics.string()},
                    {"work_dir", files.work_dir.string()},
                    {"max_examples", files.max_examples}};
  for (auto& [k, v] : table) task[k] = std::move(v);
  return json::serialize(task) + "\n";
}

}  // namespace federa
