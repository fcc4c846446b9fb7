// The built-in trainer: minibatch SGD (momentum, weight decay, FedProx proximal term) on one of
// common/nn.hpp's networks, over index views into a dataset shared with other clients.
//
//   auto data = std::make_shared<const Dataset>(std::move(*load_dataset("fashion-mnist", ...)));
//   auto trainer = make_builtin_trainer(data, parts[i], {}, /*client_seed=*/i);
//   Result<FitResult> r = trainer->fit(global, config);
//   auto tabular = make_tabular_trainer(std::move(*TabularData::open(...)), client_seed);
//
// A trainer is not thread-safe (it owns the network's scratch buffers); give each thread its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "client/tabular_data.hpp"
#include "client/trainer.hpp"
#include "common/dataset.hpp"

namespace federa {

// `train_indices` and `test_indices` are rows of `data`. fit() is deterministic in
// (global, config, client_seed); its shuffles are seeded from config.seed and client_seed.
std::unique_ptr<Trainer> make_builtin_trainer(std::shared_ptr<const Dataset> data,
                                              std::vector<std::size_t> train_indices,
                                              std::vector<std::size_t> test_indices,
                                              std::uint64_t client_seed);

// The same trainer on a CSV file read through each task's schema and standardised with the
// federation's figures (client/tabular_data.hpp): its first train_rows() rows train, the rest
// evaluate. Regression models (linreg, mlp ending in 1) train on the label as a target.
std::unique_ptr<Trainer> make_tabular_trainer(std::unique_ptr<TabularData> data,
                                              std::uint64_t client_seed);

}  // namespace federa
