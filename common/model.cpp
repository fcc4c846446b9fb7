#include "common/model.hpp"

namespace federa {

std::uint64_t TensorSpec::elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {
constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;
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
    offsets_.push_back(size_);
    size_ += t.elements();
    fnv_u64(hash_, t.name.size());
    fnv(hash_, t.name.data(), t.name.size());
    fnv_u64(hash_, t.shape.size());
    for (auto d : t.shape) fnv_u64(hash_, d);
  }
}

}  // namespace federa
