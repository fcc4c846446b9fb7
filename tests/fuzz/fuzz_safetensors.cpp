// Fuzz target: the safetensors parser (common/safetensors.cpp), which reads user models
// (--model safetensors:FILE) and the coordinator's own checkpoints on --resume. Whatever the
// bytes, decode_safetensors returns a model or an error; a model it returns must round-trip.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "common/safetensors.hpp"

namespace {

// Bit for bit, except that any NaN equals any NaN: an F16/BF16 NaN's payload need not survive
// the float32 round trip (found by this target: an F16 NaN came back with another payload).
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto f = federa::decode_safetensors({reinterpret_cast<const char*>(data), size});
  if (!f) return 0;
  // What it accepted must round-trip: same layout, same values, bit for bit.
  const std::string bytes = federa::encode_safetensors(f->model, f->metadata);
  auto again = federa::decode_safetensors(bytes);
  if (!again || !(again->model.layout == f->model.layout) ||
      !same_values(again->model.data, f->model.data) || again->metadata != f->metadata)
    std::abort();
  return 0;
}
