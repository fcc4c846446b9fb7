// Virtual clients' local training, batched: a round's clients train on a pool of threads on every
// rank (rank r takes the clients at positions k = r mod ranks), with the agency client's own
// built-in trainer, and rank 0 gets every outcome back in client order. Training depends only on
// (seed, round, client), never on the thread or the rank.
//
//   ClientData cd{data, parts, seed};
//   auto outcomes = train_distributed(group, cd, layout, order, threads, &done);  // every rank
//   Status s = serve_worker_rank(group, cd, layout, threads);  // ranks > 0, until rank 0 stops
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "client/trainer.hpp"
#include "common/dataset.hpp"
#include "common/model.hpp"
#include "common/result.hpp"
#include "sim/mpi_codec.hpp"
#include "sim/rank_group.hpp"

namespace federa {

struct ClientData {
  std::shared_ptr<const Dataset> data;
  Partitions parts;  // each client's training rows
  Partitions tests;  // each client's held-out rows (empty without --test-fraction)
  std::uint64_t seed = 1;
};

// Trains `clients` from `global` on up to `threads` threads. A trainer is built for each client
// when it trains and dropped afterwards, so only the selected clients cost memory.
std::vector<TrainOutcome> train_clients(const ClientData& cd,
                                        const std::vector<std::size_t>& clients,
                                        const Model& global, const TrainConfig& config,
                                        unsigned threads, std::atomic<std::size_t>* done);

// Evaluates `model` on each client's held-out rows, on up to `threads` threads (rank 0 alone:
// evaluation is a forward pass, small next to training).
std::vector<Result<EvaluateResult>> evaluate_clients(const ClientData& cd,
                                                     const std::vector<std::size_t>& clients,
                                                     const Model& model, const TrainConfig& config,
                                                     unsigned threads);

// This rank's share of `clients`: the positions k with k mod size == rank.
std::vector<std::size_t> share_of(const std::vector<std::size_t>& clients, int rank, int size);

// Every rank: trains its share of `order` and sends the outcomes to rank 0, which returns all of
// them sorted by client (other ranks return none). Collective: every rank calls it.
Result<std::vector<TrainOutcome>> train_distributed(RankGroup& group, const ClientData& cd,
                                                    const ModelLayout& layout,
                                                    const WorkOrder& order, unsigned threads,
                                                    std::atomic<std::size_t>* done);

// Ranks other than 0: trains what rank 0 orders until it orders a stop.
Status serve_worker_rank(RankGroup& group, const ClientData& cd, const ModelLayout& layout,
                         unsigned threads);
// Rank 0: releases the workers (sends the stop order).
void stop_worker_ranks(RankGroup& group);

}  // namespace federa
