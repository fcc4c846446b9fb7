// A model is an ordered list of named tensors, each with a shape and a dtype. Float tensors (F32,
// F16, BF16) are what a federation aggregates: the Model keeps them as one contiguous float32
// buffer, whatever their stored dtype, so strategies and backends see plain float32 of O(model)
// size. Integer and boolean tensors (BatchNorm's num_batches_tracked, masks) are carried, never
// averaged: the Model keeps their raw little-endian bytes. Conversions to and from the stored
// dtype happen only at the edges (safetensors files, the wire).
//
//   ModelLayout layout{{{"fc.weight", {10, 784}, DType::bf16}, {"fc.bias", {10}},
//                       {"bn.num_batches_tracked", {}, DType::i64}}};
//   Model m(layout);                   // zero-filled: layout.size() floats, 8 carried bytes
//   std::span<float> w = m.tensor(0);  // float32 view of a BF16 tensor
//   round_to_dtypes(m);                // what a BF16 file or wire would hold, exactly
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace federa {

enum class DType : std::uint8_t { f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

// The safetensors spelling: "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL".
std::string_view dtype_name(DType dtype);
// nullopt for anything federa can neither aggregate nor carry (F64, U16, F8_E4M3, ...).
std::optional<DType> dtype_from_name(std::string_view name);
std::size_t dtype_size(DType dtype);
// Float dtypes are aggregated (in float32); the others are carried unchanged.
constexpr bool is_float(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

struct TensorSpec {
  std::string name;
  std::vector<std::uint64_t> shape;
  DType dtype = DType::f32;
  std::uint64_t elements() const;
  std::uint64_t bytes() const { return elements() * dtype_size(dtype); }
  bool operator==(const TensorSpec&) const = default;
};

// Consecutive float elements stored in one dtype: how the float buffer maps onto stored bytes.
struct DTypeRun {
  std::uint64_t elements = 0;
  DType dtype = DType::f32;
  bool operator==(const DTypeRun&) const = default;
};

class ModelLayout {
 public:
  ModelLayout() = default;
  explicit ModelLayout(std::vector<TensorSpec> tensors);

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  // Elements of the float tensors: the length of Model::data, of an update, of what is averaged.
  std::size_t size() const { return size_; }
  // A float tensor's first element in Model::data; a carried tensor's first byte in
  // Model::carried.
  std::size_t offset(std::size_t i) const { return offsets_[i]; }
  // Bytes of the carried (integer, boolean) tensors.
  std::size_t carried_bytes() const { return carried_bytes_; }
  // The float tensors' dtypes in element order, neighbours of one dtype merged (one F32 run for
  // a plain float32 model; none without float tensors).
  const std::vector<DTypeRun>& float_runs() const { return runs_; }
  // Bytes of the float tensors in their stored dtypes (what an update takes on the wire).
  std::uint64_t float_bytes() const { return float_bytes_; }
  // FNV-1a over names, ranks, dims and dtypes other than F32 (so an all-F32 layout keeps the
  // hash it had before dtypes existed); stable across platforms and runs.
  std::uint64_t hash() const { return hash_; }
  bool operator==(const ModelLayout& o) const { return tensors_ == o.tensors_; }

 private:
  std::vector<TensorSpec> tensors_;
  std::vector<std::size_t> offsets_;
  std::vector<DTypeRun> runs_;
  std::size_t size_ = 0;
  std::size_t carried_bytes_ = 0;
  std::uint64_t float_bytes_ = 0;
  std::uint64_t hash_ = 0;
};

struct Model {
  ModelLayout layout;
  std::vector<float> data;            // the float tensors as float32, in layout order
  std::vector<std::uint8_t> carried;  // the carried tensors' little-endian bytes, in layout order

  Model() = default;
  explicit Model(ModelLayout l)
      : layout(std::move(l)), data(layout.size(), 0.0f), carried(layout.carried_bytes(), 0) {}
  // Float tensor i (is_float(layout.tensors()[i].dtype)).
  std::span<float> tensor(std::size_t i) {
    return {data.data() + layout.offset(i), layout.tensors()[i].elements()};
  }
  std::span<const float> tensor(std::size_t i) const {
    return {data.data() + layout.offset(i), layout.tensors()[i].elements()};
  }
  // Carried tensor i (!is_float(layout.tensors()[i].dtype)): its raw bytes.
  std::span<std::uint8_t> carried_tensor(std::size_t i) {
    return {carried.data() + layout.offset(i), layout.tensors()[i].bytes()};
  }
  std::span<const std::uint8_t> carried_tensor(std::size_t i) const {
    return {carried.data() + layout.offset(i), layout.tensors()[i].bytes()};
  }
};

// n float values to and from `dtype` (F32, F16 or BF16), little-endian, round to nearest even
// (as PyTorch's .to(torch.bfloat16) does); NaN and Inf stay NaN and Inf. `out` need not be
// aligned.
void encode_floats(DType dtype, const float* in, std::size_t n, std::uint8_t* out);
void decode_floats(DType dtype, const std::uint8_t* in, std::size_t n, float* out);
// Rounds every float tensor stored narrower than F32 to the value its dtype holds, so the
// float32 view equals what a file or the wire carries. A no-op for an all-F32 model.
void round_to_dtypes(Model& model);

}  // namespace federa
