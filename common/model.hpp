// A model is an ordered list of named tensors over one contiguous float32 buffer.
// The layout hash ties every update to the layout it was made for.
//
//   ModelLayout layout{{{"fc1.weight", {128, 784}}, {"fc1.bias", {128}}}};
//   Model m(layout);              // zero-filled, layout.size() floats
//   std::span<float> w = m.tensor(0);
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace federa {

struct TensorSpec {
  std::string name;
  std::vector<std::uint64_t> shape;
  std::uint64_t elements() const;
  bool operator==(const TensorSpec&) const = default;
};

class ModelLayout {
 public:
  ModelLayout() = default;
  explicit ModelLayout(std::vector<TensorSpec> tensors);

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  std::size_t size() const { return size_; }  // total elements
  std::size_t offset(std::size_t i) const { return offsets_[i]; }
  // FNV-1a over names, ranks and dims; stable across platforms and runs.
  std::uint64_t hash() const { return hash_; }
  bool operator==(const ModelLayout& o) const { return tensors_ == o.tensors_; }

 private:
  std::vector<TensorSpec> tensors_;
  std::vector<std::size_t> offsets_;
  std::size_t size_ = 0;
  std::uint64_t hash_ = 0;
};

struct Model {
  ModelLayout layout;
  std::vector<float> data;

  Model() = default;
  explicit Model(ModelLayout l) : layout(std::move(l)), data(layout.size(), 0.0f) {}
  std::span<float> tensor(std::size_t i) {
    return {data.data() + layout.offset(i), layout.tensors()[i].elements()};
  }
  std::span<const float> tensor(std::size_t i) const {
    return {data.data() + layout.offset(i), layout.tensors()[i].elements()};
  }
};

}  // namespace federa
