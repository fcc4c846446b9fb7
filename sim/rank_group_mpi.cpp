// Built only when CMake found MPI (FEDERA_MPI); rank_group_nompi.cpp stands in otherwise.
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <cstdlib>

#include "sim/rank_group.hpp"

namespace federa {

namespace {

// Sizes travel as 64-bit; payloads go in pieces under INT_MAX bytes, MPI's count type.
constexpr std::size_t kPiece = std::size_t(1) << 30;

std::string mpi_error(int code, const std::string& what) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string("MPI ") + what + ": " + std::string(text, static_cast<std::size_t>(len));
}

class MpiGroup final : public RankGroup {
 public:
  MpiGroup() = default;
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  Status init() {
    int provided = 0;
    if (int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        rc != MPI_SUCCESS)
      return make_error(mpi_error(rc, "init"));
    // Errors come back as codes rather than aborting, so they can be reported by rank.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<std::size_t>(len));
    if (auto comma = v.find(','); comma != std::string::npos) v.resize(comma);
    library_ = v;
    return {};
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override {
    return "mpi (" + library_ + ", " + std::to_string(size_) + " ranks)";
  }

  Status broadcast(std::string& bytes) override {
    std::uint64_t n = bytes.size();
    if (int rc = MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD); rc != MPI_SUCCESS)
      return make_error(mpi_error(rc, "broadcast"));
    if (rank_ != 0) bytes.resize(n);
    for (std::size_t at = 0; at < n; at += kPiece) {
      int count = static_cast<int>(std::min<std::size_t>(kPiece, n - at));
      if (int rc = MPI_Bcast(bytes.data() + at, count, MPI_BYTE, 0, MPI_COMM_WORLD);
          rc != MPI_SUCCESS)
        return make_error(mpi_error(rc, "broadcast"));
    }
    return {};
  }

  Status gather(const std::string& mine, std::vector<std::string>& at_root) override {
    // Point to point rather than MPI_Gatherv: results can exceed Gatherv's int displacements.
    at_root.clear();
    if (rank_ != 0) {
      std::uint64_t n = mine.size();
      if (int rc = MPI_Send(&n, 1, MPI_UINT64_T, 0, 1, MPI_COMM_WORLD); rc != MPI_SUCCESS)
        return make_error(mpi_error(rc, "send"));
      for (std::size_t at = 0; at < n; at += kPiece) {
        int count = static_cast<int>(std::min<std::size_t>(kPiece, n - at));
        if (int rc = MPI_Send(mine.data() + at, count, MPI_BYTE, 0, 2, MPI_COMM_WORLD);
            rc != MPI_SUCCESS)
          return make_error(mpi_error(rc, "send"));
      }
      return {};
    }
    at_root.resize(static_cast<std::size_t>(size_));
    at_root[0] = mine;
    for (int r = 1; r < size_; ++r) {
      std::uint64_t n = 0;
      if (int rc = MPI_Recv(&n, 1, MPI_UINT64_T, r, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          rc != MPI_SUCCESS)
        return make_error(mpi_error(rc, "receive from rank " + std::to_string(r)));
      auto& s = at_root[static_cast<std::size_t>(r)];
      s.resize(n);
      for (std::size_t at = 0; at < n; at += kPiece) {
        int count = static_cast<int>(std::min<std::size_t>(kPiece, n - at));
        if (int rc =
                MPI_Recv(s.data() + at, count, MPI_BYTE, r, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            rc != MPI_SUCCESS)
          return make_error(mpi_error(rc, "receive from rank " + std::to_string(r)));
      }
    }
    return {};
  }

 private:
  int rank_ = 0;
  int size_ = 1;
  std::string library_;
};

// Set by Open MPI's mpirun, MPICH/Hydra, PMIx launchers and Slurm's srun.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  const char* tasks = std::getenv("SLURM_NTASKS");
  return tasks && std::strtol(tasks, nullptr, 10) > 1 && std::getenv("SLURM_PROCID");
}

}  // namespace

bool mpi_built() { return true; }

Result<std::unique_ptr<RankGroup>> make_rank_group() {
  if (!launched_by_mpi()) return make_local_group();
  auto g = std::make_unique<MpiGroup>();
  if (Status s = g->init(); !s) return s.error();
  std::unique_ptr<RankGroup> out = std::move(g);
  return out;
}

}  // namespace federa
