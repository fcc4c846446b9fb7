// The model a federation starts from: a built-in spec (initialised from the seed, trainable by
// the built-in trainers) or any safetensors file (`--model safetensors:FILE`: any tensor names,
// shapes and dtypes; its float tensors are averaged, its integer tensors carried).
//
//   auto m = load_initial_model("safetensors:resnet18.safetensors", seed);   // or "mlp:784,128,10"
//   if (!m) refuse(m.error().message);      // malformed file, F64 tensors, too large to travel...
//   Orchestrator orch(..., std::move(m->model), ...);  options.train.model = m->wire_spec;
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "common/model.hpp"
#include "common/nn.hpp"
#include "common/result.hpp"

namespace federa {

struct InitialModel {
  Model model;
  // What the tasks' TrainConfig.model says: the built-in spec, or for a file
  // "safetensors:NAME" (its file name only: the coordinator's folders are not the clients'
  // business). A file the coordinator committed itself names the built-in spec it was made
  // from (metadata federa.model), so built-in clients can go on training it.
  std::string wire_spec;
  // The built-in network (for --eval-data); null for a model from a file that is not one.
  std::unique_ptr<Network> network;
  std::string description;  // for the log: "3 tensors (2 BF16, 1 I64), 1234 parameters"
};

Result<InitialModel> load_initial_model(const std::string& spec, std::uint64_t seed);

// A --config file's "model": a safetensors:FILE relative to the file; built-in specs stay.
std::string resolve_model_spec(const std::string& spec, const std::filesystem::path& config_dir);

}  // namespace federa
