// Stands in for rank_group_mpi.cpp in builds without MPI: always one process.
#include <cstdlib>

#include "sim/rank_group.hpp"

namespace federa {

bool mpi_built() { return false; }

Result<std::unique_ptr<RankGroup>> make_rank_group() {
  if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n && std::atoi(n) > 1)
    return make_error("started by mpirun with " + std::string(n) +
                      " ranks, but this federa-sim was built without MPI (install libopenmpi-dev "
                      "and reconfigure with -DFEDERA_MPI=ON)");
  return make_local_group();
}

}  // namespace federa
