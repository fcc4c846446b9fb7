// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header, then raw little-endian data. federa reads and writes float tensors in
// F32, F16 and BF16 (held as float32 in memory, converted back on write) and integer or boolean
// tensors (I64, I32, I16, I8, U8, BOOL, kept as bytes), in file order, so a file it writes has the
// names, shapes and dtypes it read and opens as it is in PyTorch (`safetensors.torch.load_file`,
// then `model.load_state_dict`) and NumPy.
//
//   std::string bytes = encode_safetensors(model, {{"round", "7"}});
//   Result<SafetensorsFile> f = decode_safetensors(bytes);   // strict: rejects anything odd
//   Status s = save_safetensors_atomic("global.safetensors", model, metadata);
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "common/fsutil.hpp"
#include "common/model.hpp"
#include "common/result.hpp"

namespace federa {

using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  Model model;  // tensors in file order (data offsets ascending)
  Metadata metadata;
};

std::string encode_safetensors(const Model& model, const Metadata& metadata = {});
// The same bytes, handed to `sink` in order without building the file in memory: the header,
// then each tensor's data straight from the model (F16 and BF16 converted a piece at a time).
Status write_safetensors(const Model& model, const Metadata& metadata, const ByteSink& sink);
// Rejects, saying why: short input, header length past the end, non-JSON header, dtypes federa
// can neither aggregate nor carry (F64, U16, U32, U64, F8_*), shapes that disagree with byte
// sizes, offsets that are not contiguous from 0 or run out of bounds, trailing bytes, duplicate
// names.
Result<SafetensorsFile> decode_safetensors(std::string_view bytes);

Status save_safetensors_atomic(const std::filesystem::path& path, const Model& model,
                               const Metadata& metadata = {});
Result<SafetensorsFile> load_safetensors(const std::filesystem::path& path);

}  // namespace federa
