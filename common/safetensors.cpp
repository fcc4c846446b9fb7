#include "common/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "common/fsutil.hpp"

namespace federa {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian port needs byte swaps here");

namespace json = boost::json;

namespace {
// The 8-byte length and the JSON header, padded with spaces so the data starts 8-byte aligned,
// as the reference writer does.
std::string header_bytes(const Model& model, const Metadata& metadata) {
  json::object header;
  if (!metadata.empty()) {
    json::object meta;
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t at = 0;
  for (const auto& t : model.layout.tensors()) {
    json::array shape;
    for (auto d : t.shape) shape.push_back(d);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", std::move(shape)},
                      {"data_offsets", json::array{at, at + t.bytes()}}};
    at += t.bytes();
  }
  std::string h = json::serialize(header);
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::string out(8, '\0');
  std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  return out + h;
}

std::string_view as_chars(const void* p, std::size_t n) { return {static_cast<const char*>(p), n}; }
}  // namespace

Status write_safetensors(const Model& model, const Metadata& metadata, const ByteSink& sink) {
  if (Status s = sink(header_bytes(model, metadata)); !s) return s;
  constexpr std::size_t kPiece = 1 << 16;  // elements converted at a time for F16 and BF16
  std::vector<std::uint8_t> scratch;
  const auto& tensors = model.layout.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.bytes() == 0) continue;
    if (!is_float(t.dtype)) {
      if (Status s = sink(as_chars(model.carried_tensor(i).data(), t.bytes())); !s) return s;
    } else if (t.dtype == DType::f32) {  // already the file's bytes (little-endian)
      if (Status s = sink(as_chars(model.tensor(i).data(), t.bytes())); !s) return s;
    } else {
      const float* x = model.tensor(i).data();
      const std::size_t width = t.bytes() / t.elements();
      scratch.resize(std::min<std::size_t>(kPiece, t.elements()) * width);
      for (std::size_t done = 0; done < t.elements();) {
        const std::size_t n = std::min(kPiece, t.elements() - done);
        encode_floats(t.dtype, x + done, n, scratch.data());
        if (Status s = sink(as_chars(scratch.data(), n * width)); !s) return s;
        done += n;
      }
    }
  }
  return {};
}

std::string encode_safetensors(const Model& model, const Metadata& metadata) {
  std::string out;
  (void)write_safetensors(model, metadata, [&out](std::string_view part) -> Status {
    out.append(part);
    return {};
  });
  return out;
}

namespace {
Result<std::uint64_t> as_u64(const json::value& v, const std::string& what) {
  if (v.is_uint64()) return v.as_uint64();
  if (v.is_int64() && v.as_int64() >= 0) return static_cast<std::uint64_t>(v.as_int64());
  return make_error(what + " is not a non-negative integer");
}

struct Entry {
  std::uint64_t begin, end;
  TensorSpec spec;
};

// One tensor's header entry: a dtype federa takes, a shape whose byte size matches its in-bounds
// offsets.
Result<Entry> parse_entry(const std::string& name, const json::value& value,
                          std::size_t data_size) {
  if (!value.is_object()) return make_error("safetensors: entry '" + name + "' is not an object");
  const auto& o = value.as_object();
  auto dt = o.if_contains("dtype");
  if (!dt || !dt->is_string()) return make_error("safetensors: '" + name + "' has no dtype");
  const std::string dtype_text(dt->as_string());
  auto dtype = dtype_from_name(dtype_text);
  if (!dtype)
    return make_error("safetensors: '" + name + "' has dtype " + dtype_text +
                      ", which federa can neither aggregate nor carry (float tensors must be F32, "
                      "F16 or BF16; integer ones I64, I32, I16, I8, U8 or BOOL)");
  auto sh = o.if_contains("shape");
  auto off = o.if_contains("data_offsets");
  if (!sh || !sh->is_array()) return make_error("safetensors: '" + name + "' has no shape");
  if (!off || !off->is_array() || off->as_array().size() != 2)
    return make_error("safetensors: '" + name + "' needs data_offsets [begin, end]");
  Entry e;
  e.spec.name = name;
  e.spec.dtype = *dtype;
  std::uint64_t elems = 1;
  for (const auto& d : sh->as_array()) {
    auto v = as_u64(d, "safetensors: a dimension of '" + name + "'");
    if (!v) return v.error();
    if (*v != 0 && elems > std::numeric_limits<std::uint64_t>::max() / 8 / *v)
      return make_error("safetensors: '" + name + "' has an impossibly large shape");
    elems *= *v;
    e.spec.shape.push_back(*v);
  }
  auto b = as_u64(off->as_array()[0], "safetensors: data_offsets of '" + name + "'");
  auto en = as_u64(off->as_array()[1], "safetensors: data_offsets of '" + name + "'");
  if (!b) return b.error();
  if (!en) return en.error();
  e.begin = *b;
  e.end = *en;
  if (e.end < e.begin || e.end > data_size)
    return make_error("safetensors: data_offsets of '" + name + "' are out of bounds");
  if (e.end - e.begin != elems * dtype_size(*dtype))
    return make_error("safetensors: '" + name + "' shape does not match its byte size");
  return e;
}
}  // namespace

Result<SafetensorsFile> decode_safetensors(std::string_view bytes) {
  if (bytes.size() < 8)
    return make_error("safetensors: file shorter than its 8-byte header length");
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    return make_error("safetensors: header length runs past the end of the file");
  if (n > 100'000'000) return make_error("safetensors: header larger than 100 MB");
  boost::system::error_code ec;
  json::value header = json::parse(bytes.substr(8, n), ec);
  if (ec) return make_error("safetensors: header is not valid JSON: " + ec.message());
  if (!header.is_object()) return make_error("safetensors: header is not a JSON object");
  const std::string_view data = bytes.substr(8 + n);

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& kv : header.as_object()) {
    std::string name(kv.key());
    if (name == "__metadata__") {
      if (!kv.value().is_object()) return make_error("safetensors: __metadata__ is not an object");
      for (const auto& m : kv.value().as_object()) {
        if (!m.value().is_string())
          return make_error("safetensors: metadata value for '" + std::string(m.key()) +
                            "' is not a string");
        file.metadata[std::string(m.key())] = std::string(m.value().as_string());
      }
      continue;
    }
    auto e = parse_entry(name, kv.value(), data.size());
    if (!e) return e.error();
    entries.push_back(std::move(*e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  std::uint64_t expect = 0;
  std::vector<TensorSpec> specs;
  for (auto& e : entries) {
    if (e.begin != expect)
      return make_error("safetensors: tensor data is not contiguous at '" + e.spec.name + "'");
    expect = e.end;
    specs.push_back(std::move(e.spec));
  }
  if (expect != data.size()) return make_error("safetensors: bytes after the last tensor");
  file.model = Model(ModelLayout(std::move(specs)));
  const auto* src = reinterpret_cast<const std::uint8_t*>(data.data());
  const auto& tensors = file.model.layout.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (is_float(t.dtype)) {
      decode_floats(t.dtype, src, t.elements(), file.model.tensor(i).data());
    } else if (t.bytes() > 0) {
      std::memcpy(file.model.carried_tensor(i).data(), src, t.bytes());
    }
    src += t.bytes();
  }
  return file;
}

Status save_safetensors_atomic(const std::filesystem::path& path, const Model& model,
                               const Metadata& metadata) {
  return write_file_atomic(
      path, [&](const ByteSink& sink) { return write_safetensors(model, metadata, sink); });
}

Result<SafetensorsFile> load_safetensors(const std::filesystem::path& path) {
  auto bytes = read_file(path);
  if (!bytes) return bytes.error();
  auto f = decode_safetensors(*bytes);
  if (!f) return make_error(path.string() + ": " + f.error().message);
  return f;
}

}  // namespace federa
