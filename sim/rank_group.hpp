// The processes a simulation runs on: one (a plain run) or an MPI communicator (`mpirun -np R`,
// Slurm's `srun`). Rank 0 runs the orchestrator; every rank trains a share of the selected
// clients and ships its results to rank 0, which feeds them to the orchestrator in client order.
//
//   auto group = make_rank_group();            // MPI when built with it and launched by mpirun
//   if (!group) return group.error();
//   std::string task = group_rank0_bytes();    // filled on rank 0 only
//   (*group)->broadcast(task);                 // every rank now holds rank 0's bytes
//   std::vector<std::string> all;
//   (*group)->gather(my_results, all);         // rank 0: one string per rank; others: empty
//
// Calls are collective: every rank makes the same calls in the same order.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace federa {

class RankGroup {
 public:
  virtual ~RankGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local" or e.g. "mpi (Open MPI v4.1.4, 2 ranks)".
  virtual std::string description() const = 0;
  // Replaces `bytes` on every rank but 0 with rank 0's.
  virtual Status broadcast(std::string& bytes) = 0;
  // Rank 0 receives every rank's `mine` in rank order (its own first); others get nothing.
  virtual Status gather(const std::string& mine, std::vector<std::string>& at_root) = 0;
};

// One process.
std::unique_ptr<RankGroup> make_local_group();

// MPI_COMM_WORLD when this binary was built with MPI (FEDERA_MPI) and the process was started
// by an MPI launcher (mpirun, mpiexec, srun); a local group otherwise. MPI is initialised here
// and finalised when the group is destroyed.
Result<std::unique_ptr<RankGroup>> make_rank_group();

// True when this binary was built with MPI support.
bool mpi_built();

}  // namespace federa
