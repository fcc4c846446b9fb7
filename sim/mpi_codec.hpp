// What the ranks of an MPI simulation send each other, as byte strings for RankGroup's broadcast
// and gather: rank 0's work order for a round (the global model, the task config, the clients to
// train) and each rank's training outcomes. Decoding checks every length against what is left,
// so a truncated message is an error, never a read past the end.
//
//   std::string bytes = encode_order(order);      // rank 0
//   group.broadcast(bytes);
//   auto order = decode_order(bytes);              // every rank
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/train_config.hpp"

namespace federa {

// One virtual client's training, as a rank reports it.
struct TrainOutcome {
  std::size_t client = 0;
  bool ok = false;
  std::string error;
  std::uint64_t num_examples = 0;
  std::map<std::string, double> metrics;
  std::vector<float> weights;
};

// One round's work order from rank 0: stop, or train these clients from this model.
struct WorkOrder {
  bool stop = false;
  std::uint64_t round = 0;
  TrainConfig config;
  std::vector<float> global;
  std::vector<std::size_t> clients;  // all ranks' clients, in client order
};

std::string encode_order(const WorkOrder& order);
Result<WorkOrder> decode_order(const std::string& bytes);

std::string encode_outcomes(const std::vector<TrainOutcome>& outcomes);
Result<std::vector<TrainOutcome>> decode_outcomes(const std::string& bytes);

}  // namespace federa
