#include "common/model.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstring>

namespace federa {

namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
constexpr std::array<DTypeInfo, 9> kDTypes{{{DType::f32, "F32", 4},
                                            {DType::f16, "F16", 2},
                                            {DType::bf16, "BF16", 2},
                                            {DType::i64, "I64", 8},
                                            {DType::i32, "I32", 4},
                                            {DType::i16, "I16", 2},
                                            {DType::i8, "I8", 1},
                                            {DType::u8, "U8", 1},
                                            {DType::boolean, "BOOL", 1}}};

const DTypeInfo& info(DType d) { return kDTypes[static_cast<std::size_t>(d)]; }

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.dtype;
  return std::nullopt;
}

std::size_t dtype_size(DType dtype) { return info(dtype).size; }

std::uint64_t TensorSpec::elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {
constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;
constexpr std::uint64_t kDTypeTag = 0xFEDEull << 48;
void fnv(std::uint64_t& h, const void* p, std::size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= kFnvPrime;
  }
}
void fnv_u64(std::uint64_t& h, std::uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  fnv(h, b, 8);
}
}  // namespace

ModelLayout::ModelLayout(std::vector<TensorSpec> tensors) : tensors_(std::move(tensors)) {
  hash_ = kFnvOffset;
  offsets_.reserve(tensors_.size());
  for (const auto& t : tensors_) {
    const std::uint64_t n = t.elements();
    if (is_float(t.dtype)) {
      offsets_.push_back(size_);
      size_ += n;
      float_bytes_ += n * dtype_size(t.dtype);
      if (!runs_.empty() && runs_.back().dtype == t.dtype) {
        runs_.back().elements += n;
      } else if (n > 0) {
        runs_.push_back({n, t.dtype});
      }
    } else {
      offsets_.push_back(carried_bytes_);
      carried_bytes_ += t.bytes();
    }
    fnv_u64(hash_, t.name.size());
    fnv(hash_, t.name.data(), t.name.size());
    fnv_u64(hash_, t.shape.size());
    for (auto d : t.shape) fnv_u64(hash_, d);
    if (t.dtype != DType::f32) fnv_u64(hash_, kDTypeTag | static_cast<std::uint64_t>(t.dtype));
  }
}

void encode_floats(DType dtype, const float* in, std::size_t n, std::uint8_t* out) {
  switch (dtype) {
    case DType::f32:
      if (n > 0) std::memcpy(out, in, n * sizeof(float));  // an empty tensor's pointers may be null
      return;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        const auto bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(in[i]));
        std::memcpy(out + 2 * i, &bits, 2);
      }
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        const auto bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(in[i]));
        std::memcpy(out + 2 * i, &bits, 2);
      }
      return;
    default:
      return;  // not a float dtype: nothing to encode
  }
}

void decode_floats(DType dtype, const std::uint8_t* in, std::size_t n, float* out) {
  switch (dtype) {
    case DType::f32:
      if (n > 0) std::memcpy(out, in, n * sizeof(float));  // an empty tensor's pointers may be null
      return;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, in + 2 * i, 2);
        out[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
      }
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        // A bfloat16 is the high half of a float32.
        const std::uint32_t wide = std::uint32_t{in[2 * i]} << 16 | std::uint32_t{in[2 * i + 1]}
                                                                        << 24;
        std::memcpy(out + i, &wide, 4);
      }
      return;
    default:
      return;
  }
}

void round_to_dtypes(Model& model) {
  std::size_t at = 0;
  std::uint8_t buf[2 * 1024];
  for (const auto& run : model.layout.float_runs()) {
    if (run.dtype != DType::f32) {
      for (std::uint64_t done = 0; done < run.elements;) {
        const std::size_t n = std::min<std::uint64_t>(1024, run.elements - done);
        float* x = model.data.data() + at + done;
        encode_floats(run.dtype, x, n, buf);
        decode_floats(run.dtype, buf, n, x);
        done += n;
      }
    }
    at += run.elements;
  }
}

}  // namespace federa
