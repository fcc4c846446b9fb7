#include "coordinator/initial_model.hpp"

#include <fmt/format.h>

#include <map>

#include "common/options.hpp"
#include "common/safetensors.hpp"
#include "common/wire.hpp"

namespace federa {

namespace {

constexpr std::string_view kFilePrefix = "safetensors:";

std::string describe(const Model& m) {
  std::map<std::string_view, std::size_t> by_dtype;
  for (const auto& t : m.layout.tensors()) ++by_dtype[dtype_name(t.dtype)];
  std::string kinds;
  for (const auto& [name, n] : by_dtype)
    kinds += fmt::format("{}{} {}", kinds.empty() ? "" : ", ", n, name);
  std::string out = fmt::format("{} tensors ({}), {} parameters", m.layout.tensors().size(), kinds,
                                m.data.size());
  if (m.layout.carried_bytes() > 0)
    out += fmt::format(", {} bytes of integer tensors carried", m.layout.carried_bytes());
  return out;
}

Result<InitialModel> from_file(const std::string& path) {
  auto file = load_safetensors(path);
  if (!file) return make_error(ErrorCode::invalid_argument, file.error().message);
  if (Status s = check_wire_layout(file->model.layout); !s)
    return make_error(ErrorCode::invalid_argument, path + ": " + s.message());
  InitialModel out;
  out.model = std::move(file->model);
  out.wire_spec = std::string(kFilePrefix) + std::filesystem::path(path).filename().string();
  // A model this coordinator (or another federa run) committed names the built-in spec it came
  // from; when the layout still matches, built-in trainers can take it.
  if (auto spec = file->metadata.find("federa.model"); spec != file->metadata.end()) {
    if (auto net = make_network(spec->second); net && (*net)->layout() == out.model.layout) {
      out.wire_spec = spec->second;
      out.network = std::move(*net);
    }
  }
  out.description = describe(out.model);
  return out;
}

}  // namespace

Result<InitialModel> load_initial_model(const std::string& spec, std::uint64_t seed) {
  if (spec.starts_with(kFilePrefix)) {
    const std::string path = spec.substr(kFilePrefix.size());
    if (path.empty())
      return make_error(ErrorCode::invalid_argument, "safetensors: needs a file name");
    return from_file(path);
  }
  auto net = make_network(spec);
  if (!net) return net.error();
  InitialModel out;
  out.model = Model((*net)->layout());
  (*net)->init(out.model.data, seed);
  out.wire_spec = spec;
  out.network = std::move(*net);
  out.description = describe(out.model);
  return out;
}

std::string resolve_model_spec(const std::string& spec, const std::filesystem::path& config_dir) {
  if (!spec.starts_with(kFilePrefix)) return spec;
  return std::string(kFilePrefix) + resolve_path(spec.substr(kFilePrefix.size()), config_dir);
}

}  // namespace federa
