#include "sim/rank_group.hpp"

namespace federa {

namespace {

class LocalGroup final : public RankGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "local"; }
  Status broadcast(std::string&) override { return {}; }
  Status gather(const std::string& mine, std::vector<std::string>& at_root) override {
    at_root.assign(1, mine);
    return {};
  }
};

}  // namespace

std::unique_ptr<RankGroup> make_local_group() { return std::make_unique<LocalGroup>(); }

}  // namespace federa
