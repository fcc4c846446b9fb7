// What the coordinator tells every client about one round of local training. Mirrors
// wire::TrainConfig; common/wire.hpp converts between the two.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace federa {

struct TrainConfig {
  std::string model = "mlp:784,128,10";  // built-in model spec, see common/nn.hpp
  std::uint32_t local_epochs = 1;
  std::uint32_t batch_size = 32;
  float lr = 0.05f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  float proximal_mu = 0.0f;  // FedProx proximal term, 0 = plain local SGD
  std::uint64_t seed = 0;    // per round; a trainer mixes in its own client seed
  std::map<std::string, std::string> extra;
};

}  // namespace federa
